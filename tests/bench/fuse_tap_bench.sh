#!/bin/bash
# Throughput of the FUSE tap against the raw backing file: ext4 on a loop
# device over MOUNT/disk.img (served by tideway-fuse-export) versus ext4 on a
# loop device over the backing file itself. Root only. Results: docs/taps.md.
#
#   tests/bench/fuse_tap_bench.sh BUILD_DIR [CACHE...]     (CACHE: direct page writeback raw)
#   LOOP_DIO=off  -> losetup --direct-io=off    SECONDS_PER_JOB=5 (default)
#   PGBENCH=1     -> also pgbench -i -s 1 then -c 4 -T 10 (PostgreSQL 15, as postgres)
set -euo pipefail
BUILD=${1:?usage: $0 BUILD_DIR [direct|page|writeback|raw ...]}
shift
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(raw direct page writeback)
BIN=$BUILD/agent/tideway-fuse-export
SECS=${SECONDS_PER_JOB:-5}
LOOP_DIO=${LOOP_DIO:-on}
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }

WORK=$(mktemp -d /tmp/tideway-fusebench.XXXXXX)
PID="" LOOP=""
cleanup() {
  set +e
  mountpoint -q "$WORK/ext4" && umount "$WORK/ext4"
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  [ -n "$PID" ] && kill "$PID" && wait "$PID"
  mountpoint -q "$WORK/fuse" && umount -l "$WORK/fuse"
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/fuse" "$WORK/ext4"

run_fio() {  # name, fio args...
  local name=$1; shift
  fio --name="$name" --directory="$WORK/ext4" --size=256M --runtime="$SECS" --time_based \
      --group_reporting --output-format=terse --terse-version=3 "$@" 2>/dev/null | grep "^3;" | tail -1
  rm -f "$WORK/ext4/$name".*  # 1 GiB volume: one job's file at a time
}
# terse v3: field 7 read KiB/s, 8 read IOPS, 48 write KiB/s, 49 write IOPS
report() {
  local mode=$1 job=$2 line=$3
  awk -F';' -v m="$mode" -v j="$job" \
    '{printf "%-10s %-22s read %8.1f MiB/s %7d IOPS   write %8.1f MiB/s %7d IOPS\n", m, j, $7/1024, $8, $48/1024, $49}' <<<"$line"
}

for mode in "${MODES[@]}"; do
  rm -f "$WORK/backing.img"
  truncate -s 1G "$WORK/backing.img"
  if [ "$mode" = raw ]; then
    dev_file=$WORK/backing.img
  else
    "$BIN" --cache "$mode" --log-level warn "$WORK/backing.img" "$WORK/fuse" >"$WORK/out" &
    PID=$!
    for _ in $(seq 100); do grep -q ready "$WORK/out" && break; sleep 0.1; done
    grep -q ready "$WORK/out" || { echo "export did not start" >&2; exit 1; }
    dev_file=$WORK/fuse/disk.img
  fi
  LOOP=$(losetup --find --show --direct-io="$LOOP_DIO" "$dev_file")
  mkfs.ext4 -q -F "$LOOP"
  mount "$LOOP" "$WORK/ext4"
  report "$mode" "seq-write-1M-direct" "$(run_fio sw --rw=write --bs=1M --direct=1 --ioengine=psync --end_fsync=1)"
  report "$mode" "seq-read-1M-direct" "$(run_fio sr --rw=read --bs=1M --direct=1 --ioengine=psync)"
  report "$mode" "rand-write-4k-fsync" "$(run_fio rw --rw=randwrite --bs=4k --ioengine=psync --fsync=1)"
  report "$mode" "rand-write-4k-qd16" "$(run_fio rq --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=16)"
  if [ "${PGBENCH:-0}" = 1 ]; then
    pg=/usr/lib/postgresql/15/bin
    chmod 755 "$WORK"; mkdir -m 700 "$WORK/ext4/pg"; chown postgres:postgres "$WORK/ext4/pg"
    runuser -u postgres -- $pg/initdb -A trust -D "$WORK/ext4/pg" >/dev/null
    runuser -u postgres -- $pg/pg_ctl -w -D "$WORK/ext4/pg" -l "$WORK/ext4/pg/log" \
      -o "-k $WORK/ext4/pg -p 5499 -c listen_addresses=''" start >/dev/null
    runuser -u postgres -- $pg/pgbench -h "$WORK/ext4/pg" -p 5499 -i -s 1 postgres >/dev/null 2>&1
    tps=$(runuser -u postgres -- $pg/pgbench -h "$WORK/ext4/pg" -p 5499 -c 4 -T 10 postgres 2>/dev/null |
          sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    runuser -u postgres -- $pg/pg_ctl -w -D "$WORK/ext4/pg" -m fast stop >/dev/null
    printf "%-10s %-22s tps %s\n" "$mode" "pgbench-c4-T10" "$tps"
  fi
  umount "$WORK/ext4"
  losetup -d "$LOOP"; LOOP=""
  if [ -n "$PID" ]; then kill "$PID"; wait "$PID"; PID=""; fi
done

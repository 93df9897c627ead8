#!/usr/bin/env bash
# The WAN codec on the replication stream (root): bytes the agent puts on
# the channel for a real workload with the codec on and off, and the CPU
# the codec costs per write at each end.
#
#   sudo tests/bench/codec_replication.sh [--build DIR] [--size 2G]
#        [--workload copy|pgbench] [--src DIR] [--seconds 30] [--json]
#
# For each setting (agent [codec] replication = true, then false): a
# replicator and an agent on loopback (TLS), one pipelined protection
# through the FUSE tap, ext4 on a loop device over it, then the workload:
#   copy     mkfs, cp -a SRC (default /usr/lib/python3) into it, sync
#   pgbench  initdb, pgbench -i -s 20, pgbench -c 4 -j 2 -T SECONDS
#            (PostgreSQL 15, as user postgres)
# and waits until the backup acknowledged every write. Reports guest bytes
# written, bytes the channel sent (frames and headers included), the
# ratio, the codec's records by encoding, and encoder/decoder CPU per
# encoded write. The workload is not bit-identical between the two runs
# (timestamps, UUIDs), so compare the totals, not single writes.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib/daemon_configs.sh"
BUILD="$HERE/../../build-rel" SIZE=2G WORKLOAD=copy SRC=/usr/lib/python3 SECS=30 JSON=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --workload) WORKLOAD="$2"; shift 2 ;;
    --src) SRC="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    --json) JSON=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "codec_replication: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$WORKLOAD" in
  copy) [ -d "$SRC" ] || { echo "codec_replication: --src $SRC is not a directory" >&2; exit 2; } ;;
  pgbench) PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"
           [ -x "$PGBIN/initdb" ] || { echo "codec_replication: PostgreSQL not installed" >&2; exit 2; } ;;
  *) echo "codec_replication: --workload must be copy or pgbench, not '$WORKLOAD'" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "codec_replication: must run as root (FUSE, loop, mount)" >&2; exit 1; }
BUILD="$(cd "$BUILD" && pwd)"
TW="$BUILD/agent/tideway"
W="$(mktemp -d /tmp/tw-codecbench.XXXXXX)"
RP="" AP="" LOOP=""
stop_all() {
  set +e
  if [ -n "${PGBIN:-}" ] && [ -d "$W/fs/data" ]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/fs/data" -m immediate -w stop >/dev/null 2>&1
  fi
  mountpoint -q "$W/fs" && umount -l "$W/fs"
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  LOOP=""
  mountpoint -q "$W/mnt" && { fusermount3 -u -z "$W/mnt" || umount -l "$W/mnt"; }
  [ -n "$AP" ] && kill "$AP" && wait "$AP"
  [ -n "$RP" ] && kill "$RP" && wait "$RP"
  AP="" RP=""
  set -e
}
cleanup() {
  stop_all
  rm -rf "$W"
}
trap cleanup EXIT
"$HERE/../../deploy/certs.sh" "$W/pki" primary backup >/dev/null

# run_one on|off -> one JSON line on stdout
run_one() {
  local codec="$1" d="$W/run-$1"
  mkdir -p "$d" "$W/mnt" "$W/fs"
  tw_replicator_toml "$d/r.toml" "$d/replicator" "$d/r.sock" 127.0.0.1 17398 "$W/pki"
  tw_agent_toml "$d/a.toml" "$d/agent" "$d/a.sock" 127.0.0.1 17398 "$W/pki"
  [ "$codec" = off ] && printf '[codec]\nreplication = false\n' >>"$d/a.toml"
  "$BUILD/replicator/tideway-replicator" -c "$d/r.toml" >"$d/r.log" 2>&1 & RP=$!
  "$BUILD/agent/tideway-agent" -c "$d/a.toml" >"$d/a.log" 2>&1 & AP=$!
  for _ in $(seq 200); do [ -S "$d/a.sock" ] && [ -S "$d/r.sock" ] && break; sleep 0.05; done
  "$TW" --socket "$d/a.sock" protect vol --volume "$d/primary.img" --size "$SIZE" --mount "$W/mnt" >/dev/null
  LOOP="$(losetup --find --show --direct-io=on "$W/mnt/disk.img")"
  local t0 t1
  t0=$(date +%s.%N)
  mkfs.ext4 -q -F "$LOOP"
  mount "$LOOP" "$W/fs"
  if [ "$WORKLOAD" = copy ]; then
    cp -a "$SRC" "$W/fs/"
  else
    chown postgres "$W/fs"
    runuser -u postgres -- "$PGBIN/initdb" -D "$W/fs/data" -A trust >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/fs/data" -l "$d/pg.log" -w \
      -o "-k $W/fs -c listen_addresses=''" start >/dev/null
    runuser -u postgres -- "$PGBIN/pgbench" -h "$W/fs" -i -s 20 -q postgres >/dev/null 2>&1
    runuser -u postgres -- "$PGBIN/pgbench" -h "$W/fs" -c 4 -j 2 -T "$SECS" postgres >"$d/pgbench.out" 2>&1
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/fs/data" -m fast -w stop >/dev/null
  fi
  sync
  umount "$W/fs"
  losetup -d "$LOOP"; LOOP=""
  t1=$(date +%s.%N)
  local st
  for _ in $(seq 600); do
    st=$("$TW" --socket "$d/a.sock" --json status)
    [ "$(jq '.protections[0].unacked_writes' <<<"$st")" = 0 ] && break
    sleep 0.1
  done
  local bst
  bst=$("$TW" --replicator-socket "$d/r.sock" --json backup-status)
  jq -c -n --arg codec "$codec" --argjson s "$st" --argjson b "$bst" --arg secs "$(echo "$t1 - $t0" | bc)" '
    ($s.protections[0]) as $p | ($b.volumes[0].codec // {}) as $dc | ($p.codec // {}) as $c | {
      codec: $codec, workload_s: ($secs | tonumber), writes: $p.committed,
      channel_bytes: $p.link.bytes_sent,
      guest_bytes: (($c.page_bytes // 0) + ($c.raw_bytes // 0)),
      encoded_writes: ($c.encoded_writes // 0), raw_writes: ($c.raw_writes // 0),
      ratio: ($c.ratio // 1), records: ($c.records_by_encoding // {}), sub_blocks: ($c.sub_blocks // {}),
      encode_us_per_write: ($c.cpu_us_per_write // 0), decode_us_per_write: ($dc.cpu_us_per_write // 0),
      decoder_failures: ($dc.failures // 0)}'
  stop_all
  mountpoint -q "$W/mnt" || true
}

on=$(run_one on)
off=$(run_one off)
if [ "$JSON" = 1 ]; then
  jq -n --argjson on "$on" --argjson off "$off" --arg w "$WORKLOAD" '{workload: $w, on: $on, off: $off,
    channel_ratio: ($off.channel_bytes / $on.channel_bytes)}'
else
  echo "| codec | workload | writes | guest bytes (encodable) | channel bytes | channel off/on | encode us/write | decode us/write |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for r in "$on" "$off"; do
    jq -r --argjson off "$off" --arg w "$WORKLOAD" '"| \(.codec) | \($w) | \(.writes) | \(.guest_bytes) | \(.channel_bytes) | \(($off.channel_bytes / .channel_bytes) * 100 | round / 100) | \(.encode_us_per_write * 10 | round / 10) | \(.decode_us_per_write * 10 | round / 10) |"' <<<"$r"
  done
  jq -r '"codec on: records \(.records), sub-blocks \(.sub_blocks), decoder failures \(.decoder_failures)"' <<<"$on"
fi

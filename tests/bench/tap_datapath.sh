#!/usr/bin/env bash
# Data path benchmark (root): 4 KiB sequential and random write bandwidth
# through each tap in pipelined mode, with the replicator on loopback (TLS),
# beside the same fio job on the raw backing file.
#
#   sudo tests/bench/tap_datapath.sh [--build DIR] [--size 512M] [--json]
#
# fio: bs 4k, io_uring (nbd engine for the NBD tap), iodepth 16, a flush
# (fsync / NBD_CMD_FLUSH) every 256 writes and at the end, so the figure
# includes durability. Target: each tap >= 0.8x raw.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/../lib/daemon_configs.sh"
BUILD="$HERE/../../build-rel" SIZE=512M JSON=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --size) SIZE="$2"; shift 2 ;;
    --json) JSON=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "tap_datapath: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "tap_datapath: must run as root (FUSE)" >&2; exit 1; }
BUILD="$(cd "$BUILD" && pwd)"
W="$(mktemp -d /tmp/tw-datapath.XXXXXX)"
RP="" AP=""
cleanup() {
  set +e
  mountpoint -q "$W/mnt" && { fusermount3 -u -z "$W/mnt" || umount -l "$W/mnt"; }
  [ -n "$AP" ] && kill "$AP" && wait "$AP"
  [ -n "$RP" ] && kill "$RP" && wait "$RP"
  rm -rf "$W"
}
trap cleanup EXIT
"$HERE/../../deploy/certs.sh" "$W/pki" primary backup >/dev/null
tw_replicator_toml "$W/r.toml" "$W/replicator" "$W/r.sock" 127.0.0.1 17399 "$W/pki"
tw_agent_toml "$W/a.toml" "$W/agent" "$W/a.sock" 127.0.0.1 17399 "$W/pki"
"$BUILD/replicator/tideway-replicator" -c "$W/r.toml" >"$W/r.log" 2>&1 & RP=$!
"$BUILD/agent/tideway-agent" -c "$W/a.toml" >"$W/a.log" 2>&1 & AP=$!
for _ in $(seq 100); do [ -S "$W/a.sock" ] && [ -S "$W/r.sock" ] && break; sleep 0.05; done
TW="$BUILD/agent/tideway"
mkdir -p "$W/mnt"
"$TW" --socket "$W/a.sock" protect nbdvol --volume "$W/nbd.img" --size "$SIZE" --nbd-socket "$W/nbd.sock" >/dev/null
"$TW" --socket "$W/a.sock" protect fusevol --volume "$W/fuse.img" --size "$SIZE" --mount "$W/mnt" >/dev/null
truncate -s "$SIZE" "$W/raw.img"

# fio_bw TARGET RW -> MiB/s
fio_bw() {
  local target="$1" rw="$2" args
  case "$target" in
    raw) args=(--ioengine=io_uring --filename="$W/raw.img") ;;
    fuse) args=(--ioengine=io_uring --filename="$W/mnt/disk.img") ;;
    nbd) args=(--ioengine=nbd --uri="nbd+unix:///nbdvol?socket=$W/nbd.sock") ;;
  esac
  fio --name=tw --rw="$rw" --bs=4k --size="$SIZE" --iodepth=16 --fsync=256 --end_fsync=1 \
    --randseed=42 --output-format=json --output="$W/fio.json" "${args[@]}" >"$W/fio.err" 2>&1 ||
    { cat "$W/fio.err" >&2; echo "tap_datapath: fio failed on $target" >&2; exit 1; }
  jq '.jobs[0].write.bw_bytes / 1048576 | . * 10 | round / 10' "$W/fio.json"
}

results="[]"
for rw in write randwrite; do
  raw=$(fio_bw raw "$rw")
  for tap in nbd fuse; do
    bw=$(fio_bw "$tap" "$rw")
    ratio=$(jq -n "$bw / $raw | . * 100 | round / 100")
    results=$(jq -c ". + [{\"tap\":\"$tap\",\"rw\":\"$rw\",\"mib_s\":$bw,\"raw_mib_s\":$raw,\"ratio\":$ratio}]" <<<"$results")
  done
done
# Everything shipped was acknowledged: the backup kept up.
status=$("$TW" --socket "$W/a.sock" --json status)
if [ "$JSON" = 1 ]; then
  jq -n --argjson r "$results" --argjson s "$status" '{results: $r, unacked_after: [$s.protections[] | {name, unacked_writes}]}'
else
  echo "| tap | pattern | MiB/s | raw MiB/s | ratio |"
  echo "| --- | --- | ---: | ---: | ---: |"
  jq -r '.[] | "| \(.tap) | \(.rw) 4k | \(.mib_s) | \(.raw_mib_s) | \(.ratio) |"' <<<"$results"
fi

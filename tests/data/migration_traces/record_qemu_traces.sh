#!/usr/bin/env bash
# Re-records the QEMU pre-copy traces that tests/wan/smart_stop_test.cpp
# replays (not run in CI: it needs root, QEMU and ~5 minutes).
#
# For each workload below it boots the test guest (docs/guest.md; QEMU 7.2
# TCG, -m 524280K) with memload at a set dirty rate, lets it run, and
# migrates it to `exec:cat > /dev/null` with max-bandwidth 100 Mbit/s and a
# 1 ms downtime limit (so QEMU's own stop rule never fires and the trace
# runs for PASSES passes; then the migration is cancelled). At every
# MIGRATION_PASS event it asks query-migrate and writes one CSV row of the
# raw counters. The test derives per-iteration statistics from them
# (tests/wan/stop_trace.h says how).
#
# Usage: record_qemu_traces.sh [--guest-dir DIR] [--out DIR] [--passes N] [--only NAME]
#   --guest-dir  where build-guest.sh builds the guest (default build-h3/guest)
#   --out        where the CSV files go (default: this directory)
#   --passes     MIGRATION_PASS events to record per trace (default 32)
#   --only       record one workload (qemu_d4, qemu_d16, qemu_wide)
#
# Uses namespace h3-trace-PID and QMP port 4613 inside it; the namespace and
# QEMU are removed on every exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../../../deploy/guest/guestlib.sh
source "$root/deploy/guest/guestlib.sh"
TWG_QMP_PORT=4613

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "record_qemu_traces: error: $*" >&2; exit 1; }
log() { echo "record_qemu_traces: $*" >&2; }

guest_dir=$root/build-h3/guest out=$here passes=32 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --guest-dir) guest_dir=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --passes) passes=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "record_qemu_traces: unknown option $1" >&2; usage ;;
  esac
done
twg_check_prereqs || exit 1
command -v jq >/dev/null || die "jq is missing (apt-get install jq)"
"$root/deploy/guest/build-guest.sh" "$guest_dir" >&2

run=$(mktemp -d /tmp/h3-trace.XXXXXX)
cleanup() { twg_cleanup; rm -rf "$run"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# name | memload arguments | what it shows
workloads=(
  "qemu_d4|tw.mem_mb=128 tw.dirty_mbps=4 tw.hot_pct=10 tw.hot_write_pct=80|converges: dirtying well below the link"
  "qemu_d16|tw.mem_mb=128 tw.dirty_mbps=16 tw.hot_pct=10 tw.hot_write_pct=80|dirtying above the link rate, small hot set"
  "qemu_wide|tw.mem_mb=256 tw.dirty_mbps=8 tw.hot_pct=50 tw.hot_write_pct=50|wide working set, slow convergence"
)

# record: reads QMP on fd 3, writes CSV rows to stdout. Pure bash until a
# query-migrate reply arrives: the query must follow the event quickly (at
# 100 Mbit/s a small pass is over in milliseconds). The test does not rely
# on "remaining" being read at the exact pass boundary (stop_trace.h).
record() {
  local n=0 line t0 now
  t0=$(twg_now_ms)
  while read -r -t 120 line <&3; do
    case "$line" in
      *'"MIGRATION_PASS"'*) printf '%s\n' '{"execute":"query-migrate"}' >&3 ;;
      *'"MIGRATION"'*'"cancelled"'*|*'"MIGRATION"'*'"failed"'*|*'"MIGRATION"'*'"completed"'*) return 0 ;;
      *'"return"'*'"ram"'*)
        now=$(twg_now_ms)
        jq -r --arg t "$((now - t0))" '.return | [$t, .ram["dirty-sync-count"], .ram.transferred, .ram.remaining,
          .ram.total, .ram.duplicate, .ram.normal, .ram["dirty-pages-rate"], .ram.mbps] | @csv' <<<"${line%$'\r'}" | tr -d '"'
        n=$((n + 1))
        if [ "$n" -ge "$passes" ]; then printf '%s\n' '{"execute":"migrate_cancel"}' >&3; fi ;;
    esac
  done
  echo "record_qemu_traces: QMP went quiet" >&2
  return 1
}

for w in "${workloads[@]}"; do
  IFS='|' read -r name args what <<<"$w"
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  log "$name: $args"
  twg_setup_ns "h3-trace-$$"
  twg_start_guest "$guest_dir" "$run" "$args tw.verify_mbps=4"
  twg_wait_serial '^TW-HB ' 90 >/dev/null
  sleep 5  # the workload's dirty set reaches its steady state
  hb0=$(twg_last_hb)
  csv=$out/$name.csv.tmp
  {
    echo "# QEMU $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}') TCG, -m $TWG_MEM, memload $args"
    echo "# $what; migrate to exec:cat > /dev/null, max-bandwidth 12500000 B/s, downtime-limit 1 ms"
    echo "# recorded $(date -u +%Y-%m-%dT%H:%MZ) by tests/data/migration_traces/record_qemu_traces.sh"
    echo "# one row per MIGRATION_PASS event: query-migrate right after it"
    echo "t_ms,dirty_sync_count,transferred,remaining,total,duplicate,normal,dirty_pages_rate,mbps"
  } >"$csv"
  ip netns exec "$TWG_NS" bash -c '
    set -euo pipefail
    exec 3<>"/dev/tcp/127.0.0.1/$1"
    read -r -t 10 _ <&3
    send() { printf "%s\n" "$1" >&3; while read -r -t 10 l <&3; do case "$l" in *\"return\"*) return 0 ;; *\"error\"*) echo "$l" >&2; return 1 ;; esac; done; return 1; }
    send "{\"execute\":\"qmp_capabilities\"}"
    send "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{\"capability\":\"events\",\"state\":true}]}}"
    send "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":12500000,\"downtime-limit\":1}}"
    send "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat > /dev/null\"}}"
    eval "$2"
    record
  ' _ "$TWG_QMP_PORT" "$(declare -f record twg_now_ms); passes=$passes" >>"$csv"
  hb1=$(twg_last_hb)
  echo "# memload heartbeats before/after: $hb0 / $hb1" >>"$csv"
  mv "$csv" "$out/$name.csv"
  log "$name: $(grep -vc '^#' "$out/$name.csv") lines -> $out/$name.csv"
  twg_cleanup
done

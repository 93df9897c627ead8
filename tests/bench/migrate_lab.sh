#!/usr/bin/env bash
# `tideway migrate` of the test guest (QEMU TCG, 512 MiB RAM, memload
# dirtying 4 MB/s of a 64 MiB set) between the lab's two sites, once per
# setting, reporting time, iterations, downtime and bytes on the wire
# (root):
#
#   sudo tests/bench/migrate_lab.sh [--build DIR] [--rate-mbit 100]
#        [--delay-ms 10] [--runs 1] [--json]
#
# Settings: the default (smart stop, CBR, deltas, zstd), --no-cbr
# --no-delta --no-zstd (pages raw, smart stop kept), and --no-smart-stop
# (QEMU's own stop rule, codec on). Each run is the migration phase of
# tests/lab/lab_qemu_migrate_test.sh (a fresh lab, agents, guest; RAM
# compared byte for byte, the guest's TCP heartbeat kept), so every figure
# comes from a checked migration. Builds with -DCMAKE_BUILD_TYPE=Release
# into DIR (default build-rel) when the binaries are missing.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$ROOT/build-rel" RATE=100 DELAY=10 RUNS=1 JSON=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --rate-mbit) RATE="$2"; shift 2 ;;
    --delay-ms) DELAY="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --json) JSON=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "migrate_lab: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "migrate_lab: run as root (namespaces, TAP)" >&2; exit 1; }
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "migrate_lab: --runs must be a positive integer" >&2; exit 2; }
if [ ! -x "$BUILD/agent/tideway-agent" ] || [ ! -x "$BUILD/wan/wanem/tideway-wanem" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$BUILD" tideway tideway-agent tideway-wanem >&2
fi

# The guest does not depend on the build type: reuse the test build's.
GUEST_DIR="${GUEST_DIR:-$ROOT/build/guest}"
settings=("" "--no-cbr --no-delta --no-zstd" "--no-smart-stop")
results=()
for args in "${settings[@]}"; do
  for run in $(seq 1 "$RUNS"); do
    echo "migrate_lab: run $run, flags '${args:-default}'" >&2
    out="$(ONLY_MIGRATE=1 MIGRATE_ARGS="$args" RATE_MBIT="$RATE" DELAY_MS="$DELAY" \
      TIDEWAY_BIN="$BUILD/agent/tideway" AGENT_BIN="$BUILD/agent/tideway-agent" \
      TIDEWAY_WANEM="$BUILD/wan/wanem/tideway-wanem" GUEST_DIR="$GUEST_DIR" \
      bash "$ROOT/tests/lab/lab_qemu_migrate_test.sh" 2>&1)" || { echo "$out" >&2; exit 1; }
    results+=("$(grep '^RESULT qemu_migrate:' <<<"$out")")
  done
done

# field LINE KEY: a key=value of a RESULT line (values may be quoted)
field() { sed -n "s/.* $2=\"\{0,1\}\([^\" ]*\).*/\1/p" <<<"$1"; }
if [ "$JSON" = 1 ]; then
  for r in "${results[@]}"; do
    jq -n --arg args "$(sed -n 's/.*args="\([^"]*\)".*/\1/p' <<<"$r")" \
      --argjson total "$(field "$r" total_ms)" --argjson it "$(field "$r" iterations)" \
      --argjson down "$(field "$r" downtime_ms)" --argjson sw "$(field "$r" switchover_ms)" \
      --argjson stream "$(field "$r" stream_bytes)" --argjson wire "$(field "$r" wire_bytes)" \
      --arg rate "$RATE" --arg delay "$DELAY" \
      '{flags: $args, rate_mbit: ($rate|tonumber), delay_ms: ($delay|tonumber), total_ms: $total,
        iterations: $it, downtime_ms: $down, switchover_ms: $sw, stream_bytes: $stream, wire_bytes: $wire}'
  done
else
  printf '%-30s %9s %6s %10s %12s %10s %10s\n' FLAGS TOTAL_S ITERS DOWNTIME SWITCHOVER STREAM_MB WIRE_MB
  for r in "${results[@]}"; do
    printf '%-30s %9.1f %6d %8s ms %9.0f ms %10.1f %10.1f\n' \
      "$(sed -n 's/.*args="\([^"]*\)".*/\1/p' <<<"$r" | sed 's/^$/default/')" \
      "$(awk "BEGIN{print $(field "$r" total_ms)/1000}")" "$(field "$r" iterations)" \
      "$(field "$r" downtime_ms)" "$(field "$r" switchover_ms)" \
      "$(awk "BEGIN{print $(field "$r" stream_bytes)/1e6}")" "$(awk "BEGIN{print $(field "$r" wire_bytes)/1e6}")"
  done
fi

#!/usr/bin/env bash
# Channel throughput benchmark (root): Tideway's channel beside iperf3 on the
# same path, on loopback and through the WAN emulator.
#
#   tests/bench/channel_bench.sh [--build DIR] [--seconds N]
#
#   loopback        iperf3 (one TCP flow), tideway-probe plaintext, tideway-probe TLS
#   lab 100M/50ms   iperf3; tideway-probe TLS with the channel's link limit at 95%
#                   of the WAN rate, and with no limit
#   lab 1G/50ms     the same at 1 Gbit/s
# tideway-probe reports bulk goodput (bytes the receiver got) and the RTT of
# control-class messages sent every 10 ms during the bulk transfer, minus the
# idle RTT: the queueing delay an ack sees behind bulk data.
# Use a release build (default build-rel). Prints Markdown on stdout.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD=$REPO_ROOT/build-rel
SECS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "channel_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "channel_bench: must run as root" >&2; exit 1; }
PROBE=$BUILD/wan/tideway-probe
export TIDEWAY_WANEM=$BUILD/wan/wanem/tideway-wanem
for b in "$PROBE" "$TIDEWAY_WANEM"; do
  [ -x "$b" ] || { echo "channel_bench: $b not built (ninja -C $BUILD tideway-probe tideway-wanem)" >&2; exit 1; }
done
LAB_SH=$REPO_ROOT/deploy/lab.sh
work=$(mktemp -d /tmp/tideway-bench.XXXXXX)
P=""
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -z "$P" ] || "$LAB_SH" down --prefix "$P" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
log() { echo "channel_bench: $*" >&2; }

"$REPO_ROOT/deploy/certs.sh" "$work/pki" primary backup >/dev/null
tls_a=(--ca "$work/pki/ca.pem" --cert "$work/pki/primary.pem" --key "$work/pki/primary.key")
tls_b=(--ca "$work/pki/ca.pem" --cert "$work/pki/backup.pem" --key "$work/pki/backup.key")

# run_iperf NS_CLIENT NS_SERVER ADDR -> Mbit/s (receiver, first 2 s omitted)
run_iperf() {
  local c=$1 s=$2 addr=$3
  $s iperf3 -s -1 -B "$addr" -p 5299 >/dev/null 2>&1 &
  sleep 0.5
  $c iperf3 -c "$addr" -p 5299 -t "$SECS" -O 2 -J | jq '.end.sum_received.bits_per_second / 1e6'
}
# run_probe NS_CLIENT NS_SERVER ADDR PORT MODE RATE -> JSON
run_probe() {
  local c=$1 s=$2 addr=$3 port=$4 mode=$5 rate=$6 srv cli
  if [ "$mode" = tls ]; then srv=("${tls_b[@]}"); cli=("${tls_a[@]}"); else srv=(--plaintext-for-tests); cli=(--plaintext-for-tests); fi
  $s "$PROBE" serve --listen "$addr:$port" "${srv[@]}" >/dev/null 2>&1 &
  local sp=$!
  pids+=("$sp")
  sleep 0.5
  $c "$PROBE" run --connect "$addr:$port" "${cli[@]}" --seconds "$SECS" --rate-mbit "$rate" --json 2>/dev/null
  kill "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
}
row() {  # label json configured_mbit
  local j=$2 cfg=$3
  local g; g=$(jq .bulk_goodput_mbit <<<"$j")
  local pct="-"
  [ "$cfg" = 0 ] || pct=$(awk -v g="$g" -v c="$cfg" 'BEGIN {printf "%.0f%%", 100 * g / c}')
  printf '| %s | %.0f | %s | %.2f | %.2f | %.2f |\n' "$1" "$g" "$pct" \
    "$(jq .idle_rtt_ms.p50 <<<"$j")" "$(jq .ack_queueing_ms.p50 <<<"$j")" "$(jq .ack_queueing_ms.p99 <<<"$j")"
}

echo "| path | Mbit/s | of configured | idle RTT p50 ms | ack queueing p50 ms | ack queueing p99 ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"

log "loopback"
echo "| loopback: iperf3 (1 TCP flow) | $(printf '%.0f' "$(run_iperf "" "" 127.0.0.1)") | - | - | - | - |"
row "loopback: channel, plaintext, no limit" "$(run_probe "" "" 127.0.0.1 7410 plain 0)" 0
row "loopback: channel, TLS 1.3, no limit" "$(run_probe "" "" 127.0.0.1 7411 tls 0)" 0

for rate in 100 1000; do
  P=cb$$-
  log "lab ${rate} Mbit/s, 50 ms RTT"
  "$LAB_SH" up --prefix "$P" --delay-ms 25 --rate-mbit "$rate" >/dev/null
  eval "$("$LAB_SH" env --prefix "$P")"
  A="ip netns exec $TW_LAB_NS_A"
  B="ip netns exec $TW_LAB_NS_B"
  ip_mbit=$(run_iperf "$A" "$B" "$TW_LAB_IP_B")
  echo "| ${rate}M/50ms: iperf3 (1 TCP flow) | $(printf '%.0f' "$ip_mbit") | $(awk -v g="$ip_mbit" -v c="$rate" 'BEGIN {printf "%.0f%%", 100 * g / c}') | - | - | - |"
  limit=$(awk -v r="$rate" 'BEGIN {print r * 0.95}')
  row "${rate}M/50ms: channel TLS, link limit ${limit}" "$(run_probe "$A" "$B" "$TW_LAB_IP_B" 7420 tls "$limit")" "$rate"
  row "${rate}M/50ms: channel TLS, no limit" "$(run_probe "$A" "$B" "$TW_LAB_IP_B" 7421 tls 0)" "$rate"
  "$LAB_SH" down --prefix "$P" >/dev/null
  P=""
done

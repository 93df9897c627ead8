#!/usr/bin/env bash
# Benchmark of tideway-wanem inside the two-site lab (root).
#
#   tests/bench/wanem_bench.sh [--wanem PATH] [--seconds N] [--matrix]
#
# Measures, each in a fresh lab (deploy/lab.sh, unique prefix, torn down at
# exit):
#   * ping RTT at 25 ms each way, idle (100 pings, 50 ms apart)
#   * one iperf3 TCP flow A->B at 100 Mbit/s and 1 Gbit/s with 50 ms RTT,
#     and at 1 Gbit/s with 0 ms delay: receiver goodput, % of the
#     configured rate, retransmits, and the emulator's CPU (utime+stime
#     from /proc/PID/stat over the run, in cores and cores per Gbit/s)
#   --matrix adds the 1 Gbit/s runs with --offload off and/or --threads 2.
# Goodput is measured after omitting the first 2 s (slow start), like the
# lab rate test. Use a non-sanitized build (build-wanem-rel) for numbers.
# Prints a Markdown report on stdout; progress goes to stderr.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAB_SH="$REPO_ROOT/deploy/lab.sh"
WANEM="${TIDEWAY_WANEM:-$REPO_ROOT/build-wanem-rel/wan/wanem/tideway-wanem}"
SECONDS_RUN=10
MATRIX=0
while [ $# -gt 0 ]; do
  case "$1" in
    --wanem) WANEM="$2"; shift 2 ;;
    --seconds) SECONDS_RUN="$2"; shift 2 ;;
    --matrix) MATRIX=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "wanem_bench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "wanem_bench: must run as root" >&2; exit 1; }
[ -x "$WANEM" ] || { echo "wanem_bench: emulator not found: $WANEM (build build-wanem-rel or pass --wanem)" >&2; exit 1; }
export TIDEWAY_WANEM="$WANEM"
CLK_TCK="$(getconf CLK_TCK)"
P=""

log() { printf 'wanem_bench: %s\n' "$*" >&2; }
teardown() { [ -z "$P" ] || "$LAB_SH" down --prefix "$P" >/dev/null 2>&1 || true; P=""; }
trap teardown EXIT

# lab TAG [lab.sh options]: a fresh lab; sets NS_A NS_B IP_B PID.
lab() {
  teardown
  P="wb$1$$-"; shift
  "$LAB_SH" up --prefix "$P" "$@" >/dev/null
  eval "$("$LAB_SH" env --prefix "$P")"
  NS_A="$TW_LAB_NS_A" NS_B="$TW_LAB_NS_B" IP_B="$TW_LAB_IP_B" PID="$TW_LAB_PID"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One TCP flow; prints: goodput_mbit retransmits emulator_cores
tcp_run() {
  ip netns exec "$NS_B" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
  for _ in $(seq 1 50); do
    ip netns exec "$NS_B" ss -ltn 2>/dev/null | grep -q ':5201 ' && break
    sleep 0.1
  done
  local t0 c0 t1 c1 out
  t0="$(date +%s.%N)"; c0="$(cpu_ticks "$PID")"
  out="$(ip netns exec "$NS_A" iperf3 -c "$IP_B" -p 5201 -t "$SECONDS_RUN" -O 2 -f m 2>&1)"
  t1="$(date +%s.%N)"; c1="$(cpu_ticks "$PID")"
  local mbit retr
  mbit="$(echo "$out" | awk '/receiver/ {for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i-1)}')"
  retr="$(echo "$out" | awk '/sender/ {print $(NF-1)}')"
  awk -v m="$mbit" -v r="$retr" -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v dt="$(awk "BEGIN{print $t1 - $t0}")" \
    'BEGIN {printf "%s %s %.2f\n", m, r, c / hz / dt}'
}

ROWS=()
tcp_case() {  # tag label rate_mbit delay_ms [lab options]
  local tag="$1" label="$2" rate="$3" delay="$4"; shift 4
  log "$label: $rate Mbit/s, $delay ms each way $*"
  lab "$tag" --rate-mbit "$rate" --delay-ms "$delay" "$@"
  read -r mbit retr cores <<<"$(tcp_run)"
  local pct per_gbit
  pct="$(awk "BEGIN {printf \"%.1f\", 100 * $mbit / $rate}")"
  per_gbit="$(awk "BEGIN {printf \"%.2f\", $cores / ($mbit / 1000)}")"
  ROWS+=("| $label | $rate | $((2 * delay)) | $mbit | $pct% | $retr | $cores | $per_gbit |")
  log "  -> $mbit Mbit/s ($pct%), retransmits $retr, emulator $cores cores"
}

log "idle RTT at 25 ms each way"
lab r --delay-ms 25 --rate-mbit 100
ip netns exec "$NS_A" ping -n -q -c 5 -i 0.05 "$IP_B" >/dev/null
RTT="$(ip netns exec "$NS_A" ping -n -c 100 -i 0.05 "$IP_B" |
  awk -F'time=' '/time=/ {split($2, a, " "); print a[1]}' | sort -n |
  awk '{v[NR] = $1; s += $1} END {printf "| %d | %.2f | %.2f | %.2f | %.2f | %.2f |", NR, v[1], v[int(NR/2)], s/NR, v[int(NR*0.99)], v[NR]}')"
LATE="$("$WANEM" ctl --control "$TW_LAB_CTL" stats | grep -o '"max_late_us":[0-9.]*' | cut -d: -f2 | sort -n | tail -1)"
log "  -> $RTT (emulator max lateness $LATE us)"

tcp_case a "TCP 100M/50ms (defaults: TSO, 1 thread)" 100 25
tcp_case b "TCP 1G/50ms (defaults)" 1000 25
tcp_case c "TCP 1G/0ms (defaults)" 1000 0
if [ "$MATRIX" = 1 ]; then
  tcp_case d "TCP 1G/50ms, 2 threads" 1000 25 --threads 2
  tcp_case e "TCP 1G/50ms, offload off" 1000 25 --offload off
  tcp_case f "TCP 1G/50ms, offload off, 2 threads" 1000 25 --offload off --threads 2
  tcp_case g "TCP 1G/0ms, 2 threads" 1000 0 --threads 2
  tcp_case h "TCP 1G/0ms, offload off" 1000 0 --offload off
  tcp_case i "TCP 1G/0ms, offload off, 2 threads" 1000 0 --offload off --threads 2
fi
teardown

cat <<EOF
Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r), load average at end $(cut -d' ' -f1-3 /proc/loadavg)
Date: $(date -u '+%Y-%m-%d %H:%M UTC')
Emulator: $WANEM

Idle RTT, 25 ms each way (ms; emulator's worst departure lateness $LATE us):

| pings | min | median | mean | p99 | max |
| --- | --- | --- | --- | --- | --- |
$RTT

One TCP flow (iperf3 -t $SECONDS_RUN -O 2, receiver goodput):

| case | rate Mbit/s | RTT ms | goodput Mbit/s | % of rate | retransmits | emulator cores | cores per Gbit/s |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${ROWS[@]}")
EOF

#!/usr/bin/env bash
# Side-by-side live migration benchmark (issue 5): the same guest (the test
# guest under QEMU TCG, 512 MiB RAM, memload dirtying DIRTY_MBPS MiB/s of a
# 64 MiB set, no disk) moved between the lab's two sites over the same
# emulated link, once per setting and link rate (root). DIRTY_MBPS (default
# 4) sets the guest's dirty rate, HB_MS (default 20) its heartbeat period,
# the resolution of the gaps measured:
#
#   sudo tests/bench/migrate_lab.sh [--build DIR] [--rates "100 1000"]
#        [--delay-ms 10] [--runs 1] [--only LABEL[,LABEL...]]
#        [--out FILE.jsonl] [--plot FILE.svg] [--json] [--from FILE.jsonl]
#
# Settings (LABEL: flags of `tideway migrate`):
#   qemu          --transport qemu --no-smart-stop   QEMU's own migration, defaults
#   qemu-xbzrle   the same with --xbzrle              QEMU's XBZRLE page deltas
#   tw-none       --no-cbr --no-delta --no-zstd --no-smart-stop  through the agents, no optimisation
#   tw-smartstop  --no-cbr --no-delta --no-zstd       smart stop alone
#   tw-cbr        --no-delta --no-zstd --no-smart-stop  CBR cache alone
#   tw-delta      --no-cbr --no-zstd --no-smart-stop  page deltas alone
#   tw-zstd       --no-cbr --no-delta --no-smart-stop zstd alone
#   tw-all        (none)                              everything (the default)
#
# Each run is the migration phase of tests/lab/lab_qemu_migrate_test.sh
# (ONLY_MIGRATE=1 NO_PAUSE=1 DISK_MB=0: a fresh lab, agents and guest; a
# client at site B holds one TCP connection to the guest's heartbeat; the
# guest's page verifier must be at 0 errors after the move), so every figure
# comes from a checked migration. Per run: total time (the source agent's,
# from the request to the destination's RESUMED), QEMU's
# downtime, the heartbeat gap the client saw across the switchover (from
# the last heartbeat before the source paused the VM to the first after)
# and the longest gap during the whole migration, iterations, bytes
# A -> B on the emulated link (IP level: TCP, TLS and framing included),
# the busiest second on the link, and QEMU's stream / the channel's bytes.
# --out keeps one JSON line per run, --plot draws link bytes, total time
# and QEMU's downtime per setting (gnuplot; the numbers stay in
# FILE.svg.dat); --from FILE.jsonl runs nothing and prints (and plots) the
# runs of an earlier --out.
# Builds with -DCMAKE_BUILD_TYPE=Release into DIR (default build-rel) when
# the binaries are missing; the guest comes from build/guest (GUEST_DIR).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$ROOT/build-rel" RATES="100 1000" DELAY=10 RUNS=1 JSON=0 ONLY="" OUT="" PLOT="" FROM=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --rates) RATES="$2"; shift 2 ;;
    --rate-mbit) RATES="$2"; shift 2 ;;
    --delay-ms) DELAY="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --plot) PLOT="$2"; shift 2 ;;
    --json) JSON=1; shift ;;
    --from) FROM="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "migrate_lab: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$FROM" ] || [ "$(id -u)" = 0 ] || { echo "migrate_lab: run as root (namespaces, TAP)" >&2; exit 1; }
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || { echo "migrate_lab: --runs must be a positive integer" >&2; exit 2; }
for r in $RATES; do
  [[ "$r" =~ ^[1-9][0-9]*$ ]] || { echo "migrate_lab: --rates takes Mbit/s as whole numbers, got '$r'" >&2; exit 2; }
done
if [ -z "$FROM" ] && { [ ! -x "$BUILD/agent/tideway-agent" ] || [ ! -x "$BUILD/wan/wanem/tideway-wanem" ]; }; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$BUILD" tideway tideway-agent tideway-wanem >&2
fi

declare -A FLAGS=(
  [qemu]="--transport qemu --no-smart-stop"
  [qemu-xbzrle]="--transport qemu --no-smart-stop --xbzrle"
  [tw-none]="--no-cbr --no-delta --no-zstd --no-smart-stop"
  [tw-smartstop]="--no-cbr --no-delta --no-zstd"
  [tw-cbr]="--no-delta --no-zstd --no-smart-stop"
  [tw-delta]="--no-cbr --no-zstd --no-smart-stop"
  [tw-zstd]="--no-cbr --no-delta --no-smart-stop"
  [tw-all]=""
)
ORDER=(qemu qemu-xbzrle tw-none tw-smartstop tw-cbr tw-delta tw-zstd tw-all)
if [ -n "$ONLY" ]; then
  IFS=, read -r -a ORDER <<<"$ONLY"
  for l in "${ORDER[@]}"; do
    [ -n "${FLAGS[$l]+x}" ] || { echo "migrate_lab: unknown setting '$l' (see --help)" >&2; exit 2; }
  done
fi

# The guest does not depend on the build type: reuse the test build's.
GUEST_DIR="${GUEST_DIR:-$ROOT/build/guest}"
TMP_OUT="$(mktemp)"
trap 'rm -f "$TMP_OUT"' EXIT
# field LINE KEY: a key=value of a RESULT line (values may be quoted)
field() { sed -n "s/.* $2=\"\{0,1\}\([^\" ]*\).*/\1/p" <<<"$1"; }
if [ -n "$FROM" ]; then
  [ -r "$FROM" ] || { echo "migrate_lab: cannot read $FROM" >&2; exit 2; }
  cp "$FROM" "$TMP_OUT"
  RATES="$(jq -r .rate_mbit "$FROM" | awk '!seen[$0]++' | tr '\n' ' ')"
  [ -n "$ONLY" ] || mapfile -t ORDER < <(jq -r .label "$FROM" | awk '!seen[$0]++')
  DELAY="$(jq -r .delay_ms "$FROM" | head -n 1)"
fi
[ -n "$FROM" ] || for rate in $RATES; do
  for label in "${ORDER[@]}"; do
    for run in $(seq 1 "$RUNS"); do
      echo "migrate_lab: $rate Mbit/s, ${DELAY} ms each way: $label (run $run)" >&2
      out="$(ONLY_MIGRATE=1 NO_PAUSE=1 DISK_MB=0 HB_MS="${HB_MS:-20}" MIGRATE_ARGS="${FLAGS[$label]}" RATE_MBIT="$rate" DELAY_MS="$DELAY" \
        TIDEWAY_BIN="$BUILD/agent/tideway" AGENT_BIN="$BUILD/agent/tideway-agent" \
        TIDEWAY_WANEM="$BUILD/wan/wanem/tideway-wanem" GUEST_DIR="$GUEST_DIR" \
        bash "$ROOT/tests/lab/lab_qemu_migrate_test.sh" 2>&1)" || { echo "$out" >&2; exit 1; }
      r="$(grep '^RESULT qemu_migrate:' <<<"$out")"
      jq -cn --arg lab "$label" --arg flags "${FLAGS[$label]}" --argjson rate "$rate" --argjson delay "$DELAY" \
        --argjson run "$run" --argjson dirty "${DIRTY_MBPS:-4}" --argjson hb "${HB_MS:-20}" \
        --arg date "$(date -u +%FT%TZ)" --arg load1 "$(cut -d' ' -f1 /proc/loadavg)" \
        --argjson total "$(field "$r" elapsed_ms)" --argjson it "$(field "$r" iterations)" \
        --argjson down "$(field "$r" downtime_ms)" --argjson sw "$(field "$r" switchover_ms)" \
        --argjson gap "$(field "$r" hb_gap_ms)" --argjson sgap "$(field "$r" hb_switch_gap_ms)" \
        --argjson link "$(field "$r" link_ab_bytes)" --argjson drops "$(field "$r" link_drops)" \
        --argjson back "$(field "$r" link_ba_bytes)" --argjson peak "$(field "$r" link_peak_mbit)" \
        --argjson stream "$(field "$r" stream_bytes)" --argjson wire "$(field "$r" wire_bytes)" \
        --arg stop "$(sed -n 's/.* stop="\([^"]*\)".*/\1/p' <<<"$r")" \
        '{"label": $lab, flags: $flags, rate_mbit: $rate, delay_ms: $delay, dirty_mbps: $dirty, hb_ms: $hb,
          run: $run, date: $date,
          load1: ($load1|tonumber), total_ms: $total, iterations: $it, downtime_ms: $down, switchover_ms: $sw,
          hb_switch_gap_ms: $sgap, hb_gap_ms: $gap, link_ab_bytes: $link, link_drops: $drops, link_ba_bytes: $back, link_peak_mbit: $peak,
          stream_bytes: $stream, wire_bytes: $wire, stop_reason: $stop}' >>"$TMP_OUT"
    done
  done
done
[ -z "$OUT" ] || cp "$TMP_OUT" "$OUT"

if [ "$JSON" = 1 ]; then
  cat "$TMP_OUT"
else
  printf '%6s %-13s %8s %6s %9s %9s %9s %10s %9s %10s\n' \
    MBIT SETTING TOTAL_S ITERS DOWNTIME SW_GAP MAX_GAP LINK_MB PEAK_MBIT QEMU_MB
  jq -r '[.rate_mbit, .label, (.total_ms/1000), .iterations, .downtime_ms, .hb_switch_gap_ms, .hb_gap_ms,
          (.link_ab_bytes/1e6), .link_peak_mbit, (.stream_bytes/1e6)] | @tsv' "$TMP_OUT" |
    while IFS=$'\t' read -r rate label total it down sgap gap link peak stream; do
      printf '%6s %-13s %8.1f %6s %6.0f ms %6.0f ms %6.0f ms %10.1f %9.1f %10.1f\n' \
        "$rate" "$label" "$total" "$it" "$down" "$sgap" "$gap" "$link" "$peak" "$stream"
    done
fi

if [ -n "$PLOT" ]; then
  command -v gnuplot >/dev/null || { echo "migrate_lab: gnuplot not installed (deploy/install-deps.sh)" >&2; exit 1; }
  # One row per setting, four columns per rate (means over runs): link MB,
  # total s, heartbeat gap across the switchover ms, QEMU's downtime ms.
  dat="$PLOT.dat"
  {
    printf '# setting'
    for r in $RATES; do printf '\tlink_mb_%s\ttotal_s_%s\tsw_gap_ms_%s\tdowntime_ms_%s' "$r" "$r" "$r" "$r"; done
    printf '\n'
    for label in "${ORDER[@]}"; do
      printf '%s' "$label"
      for r in $RATES; do
        jq -rs --arg l "$label" --argjson r "$r" '
          map(select(.label == $l and .rate_mbit == $r)) as $x | ($x | length) as $n
          | if $n == 0 then "NaN\tNaN\tNaN\tNaN" else
            [ ($x | map(.link_ab_bytes) | add / $n / 1e6), ($x | map(.total_ms) | add / $n / 1000),
              ($x | map(.hb_switch_gap_ms) | add / $n), ($x | map(.downtime_ms) | add / $n) ]
            | map(tostring) | join("\t") end' "$TMP_OUT" | sed 's/^/\t/' | tr -d '\n'
      done
      printf '\n'
    done
  } >"$dat"
  nr=$(wc -w <<<"$RATES")
  gp="set terminal svg size 1100,420 dynamic font 'sans,11'; set output '$PLOT';
set multiplot layout 1,3 title 'Live migration of the test guest, ${DELAY} ms each way: QEMU vs Tideway';
set style data histogram; set style histogram clustered gap 1; set style fill solid 0.85 border -1;
set xtics rotate by -45 scale 0; set grid ytics; set key top right; set yrange [0:*];
  set offsets graph 0, graph 0, graph 0.2, 0;"
  for panel in "1:link MB A->B (IP level)" "2:total time, s" "4:downtime (QEMU), ms"; do
    col="${panel%%:*}" title="${panel#*:}" plots="" i=0
    for r in $RATES; do
      c=$(( 1 + i * 4 + col ))
      plots+="${plots:+, }'$dat' using $c:xtic(1) title '$r Mbit/s'"
      i=$((i + 1))
    done
    gp+=" set title '$title'; plot $plots;"
  done
  gp+=" unset multiplot"
  gnuplot -e "$gp"
  echo "migrate_lab: plot in $PLOT (numbers in $dat, $nr rate(s))" >&2
fi

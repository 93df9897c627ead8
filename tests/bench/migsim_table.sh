#!/usr/bin/env bash
# The shape of seeds/004 Table 6.1 from the migration simulator: three
# simulated workloads (TPC-W, kernel compile, SPECjbb; 1 GiB, 100 Mbit/s,
# 20 ms RTT) x {Xen's default rule, smart stop, smart stop + CBR + page
# deltas}, each averaged over several seeds (the paper averaged four
# migrations), with the paper's figures beside ours. Writes:
#   OUT/results.md                 the table (markdown)
#   OUT/pages_per_iteration.svg    pages sent and dirtied per iteration,
#                                  default rule vs smart stop (like Fig. 6.10)
#
# Usage: migsim_table.sh [--build DIR] [--out DIR] [--runs DIR] [--seeds "1 2 3 4"] [--memory 1GiB]
#   --runs    keep every run's migsim --json as DIR/PROFILE-CONFIG-SEED.json
#             (default: a temporary directory, removed at exit)
#   --build   a build tree with migsim (default build-rel; TIDEWAY_BENCH on,
#             Release for speed: the numbers do not depend on it)
#   --out     default docs/migsim
# Configs: default = --rule xen --raw (every page raw, as Xen sent them);
# smart = --rule smart --raw; cloudnet = --rule smart --no-zstd (CBR + page
# deltas, zstd off as in the paper; the simulated pages are random bytes, so
# zstd would find nothing anyway).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

build=$root/build-rel out=$root/docs/migsim seeds="1 2 3 4" memory=1GiB runs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "migsim_table: unknown option $1" >&2; usage ;;
  esac
done
migsim=$build/tests/bench/migsim/migsim
[ -x "$migsim" ] || { echo "migsim_table: $migsim not built (ninja -C $build migsim)" >&2; exit 1; }
command -v jq >/dev/null || { echo "migsim_table: jq is missing" >&2; exit 1; }
tmp=$(mktemp -d /tmp/migsim-table.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
runs=${runs:-$tmp/runs}
mkdir -p "$out" "$runs"

declare -A opts=(
  [default]="--rule xen --raw"
  [smart]="--rule smart --raw"
  [cloudnet]="--rule smart --no-zstd"
)
configs="default smart cloudnet"
profiles="tpcw kernel specjbb"
# Table 6.1 (data GB, total s, pause s), section 6.5.6 (smart stop's
# iterations: "30 to an average of 9, 7, and 10") and Table 6.2 (MB of
# iteration 1 / iterations 2-30 without deltas = with deltas + savings).
declare -A paper=(
  [tpcw-default]="1.5|135|3.7|30|954 / 487" [tpcw-smart]="-|-|-|7|-" [tpcw-cloudnet]="0.9|78|2.3|-|-"
  [kernel-default]="1.5|133|5.9|30|877 / 581" [kernel-smart]="-|-|-|9|-" [kernel-cloudnet]="1.1|101|3.5|-|-"
  [specjbb-default]="1.2|112|7.8|30|932 / 290" [specjbb-smart]="-|-|-|10|-" [specjbb-cloudnet]="0.4|35|6.5|-|-"
)

for p in $profiles; do
  for c in $configs; do
    for s in $seeds; do
      # shellcheck disable=SC2086 # the options are words
      "$migsim" --profile "$p" --memory "$memory" --seed "$s" --verify --json ${opts[$c]} >"$runs/$p-$c-$s.json"
    done
  done
done

mean() {  # mean of a jq expression over PROFILE-CONFIG's runs
  jq -s "map($3) | add / length" "$runs/$1-$2-"*.json
}
{
  echo "Simulated guest, $memory, 100 Mbit/s, 20 ms RTT; mean of seeds $seeds; ours / paper."
  echo "Data on the link (TCP payload: codec output + channel and TLS framing) in GB = 10^9 bytes; per"
  echo "iteration in MiB (Table 6.2's MB: its 954 + 487 MB make Table 6.1's 1.5 GB). Iterations include"
  echo "the stop-and-copy."
  echo
  echo "| workload | config | data GB | total time s | pause s | iterations | MiB in iteration 1 / later |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  for p in $profiles; do
    for c in $configs; do
      IFS='|' read -r pd pt pp pi pl <<<"${paper[$p-$c]:--|-|-|-|-}"
      d=$(mean "$p" "$c" '.totals.data_bytes / 1e9')
      t=$(mean "$p" "$c" '.totals.total_time_s')
      ps=$(mean "$p" "$c" '.totals.pause_time_s')
      it=$(mean "$p" "$c" '.totals.iterations')
      d1=$(mean "$p" "$c" '.totals.data_iteration1_bytes / 1048576')
      dl=$(mean "$p" "$c" '.totals.data_later_bytes / 1048576')
      printf '| %s | %s | %.2f / %s | %.1f / %s | %.2f / %s | %.1f / %s | %.0f / %.0f (paper %s) |\n' \
        "$p" "$c" "$d" "$pd" "$t" "$pt" "$ps" "$pp" "$it" "$pi" "$d1" "$dl" "$pl"
    done
  done
  echo
  echo "Stop reasons (seed ${seeds%% *}):"
  echo
  for p in $profiles; do
    for c in smart cloudnet; do
      echo "* $p $c: $(jq -r '.totals.stop_reason' "$runs/$p-$c-${seeds%% *}.json")"
    done
  done
} >"$out/results.md"

# Pages sent (and skipped) and dirtied per iteration, first seed.
if command -v gnuplot >/dev/null; then
  s=${seeds%% *}
  for p in $profiles; do
    for c in default smart; do
      jq -r '.iterations[] | "\(.iteration) \(.pages_sent) \(.pages_dirtied) \(.pages_skipped)"' \
        "$runs/$p-$c-$s.json" >"$tmp/$p-$c.dat"
    done
  done
  {
    echo "set terminal svg size 1200,420 dynamic"
    echo "set output '$out/pages_per_iteration.svg'"
    echo "set multiplot layout 1,3 title 'Pages per iteration (seed $s): Xen default rule vs smart stop, raw pages'"
    echo "set logscale y; set xlabel 'iteration'; set ylabel 'pages'; set key top right font ',9'"
    for p in $profiles; do
      echo "set title '$p'"
      echo "plot '$tmp/$p-default.dat' using 1:2 with linespoints pt 7 ps 0.5 title 'sent (default)', \
        '$tmp/$p-default.dat' using 1:(\$3 > 0 ? \$3 : 1/0) with lines dt 2 title 'dirtied (default)', \
        '$tmp/$p-smart.dat' using 1:2 with linespoints pt 5 ps 0.6 lw 2 title 'sent (smart)', \
        '$tmp/$p-smart.dat' using 1:(\$3 > 0 ? \$3 : 1/0) with lines dt 3 lw 2 title 'dirtied (smart)'"
    done
    echo "unset multiplot"
  } | gnuplot || echo "migsim_table: gnuplot failed; the numbers are in $out/results.md" >&2
fi
cat "$out/results.md"

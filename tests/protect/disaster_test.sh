#!/usr/bin/env bash
# Jepsen-style disaster test: PostgreSQL on a protected (FUSE-tapped) volume
# in the two-site lab at 50 ms RTT; clients record every acknowledged
# insert; at a random moment the primary site is destroyed (WAN cut, agent
# and database SIGKILLed); the backup volume is promoted, PostgreSQL
# recovers on it, and lost = acknowledged ids missing at the backup.
#
# Requirement: lost = 0 in every pipelined and sync run. async must lose
# acknowledged inserts in most runs: that shows the checker can fail.
#
#   sudo BUILD=build-rel tests/protect/disaster_test.sh [--modes "pipelined sync async"]
#        [--iterations N] [--seed S] [--results FILE.jsonl]
set -euo pipefail
source "$(dirname "$0")/protect_lab.sh"

MODES="pipelined sync async"
ITER=2
SEED="${TIDEWAY_SEED:-$(( $(date +%s) % 100000 ))}"
RESULTS=""
THREADS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --modes) MODES="$2"; shift 2 ;;
    --iterations) ITER="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --results) RESULTS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    *) pdie "unknown option $1" ;;
  esac
done
RANDOM=$SEED
echo "disaster_test: seed $SEED (rerun with --seed $SEED), modes: $MODES, $ITER iteration(s) each"

trap protect_lab_down EXIT
protect_lab_up "twd$$-" --delay-ms 25 --rate-mbit 100
JEPSEN="$BUILD/tests/protect/tw-jepsen"
CONN="host=$APP_IP user=postgres dbname=postgres connect_timeout=10"

failures=0
declare -A lost_runs total_runs
for mode in $MODES; do
  lost_runs[$mode]=0; total_runs[$mode]=0
  for i in $(seq "$ITER"); do
    start_daemons
    start_primary_pg "$mode" 512M
    client "$JEPSEN" --mode setup --conninfo "$CONN" || pdie "cannot create the table"
    runuser -u postgres -- psql -h "$W/sock" -d postgres -qc "CHECKPOINT" >/dev/null
    acked="$W/acked-$mode-$i.txt"; : >"$acked"
    client "$JEPSEN" --conninfo "$CONN" --threads "$THREADS" --out "$acked" 2>"$W/jepsen.log" &
    jpid=$!
    # The disaster comes 3-8 s into the workload.
    ms=$(( 3000 + RANDOM % 5000 ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    status_json="$(tw_agent --json status || true)"
    disaster
    sleep 1
    kill -9 "$jpid" 2>/dev/null || true
    wait "$jpid" 2>/dev/null || true
    cleanup_primary
    present="$W/present-$mode-$i.txt"
    recover_at_backup "$present"
    n_acked=$(wc -l <"$acked")
    lost=$(comm -23 <(sort -u "$acked") <(sort -u "$present") | wc -l)
    extra=$(comm -13 <(sort -u "$acked") <(sort -u "$present") | wc -l)
    unacked=$(echo "$status_json" | jq '.protections[0].unacked_writes // 0')
    held=$(echo "$status_json" | jq '.protections[0].holder.held // 0')
    line=$(printf '{"mode":"%s","iteration":%d,"seed":%d,"kill_after_ms":%d,"acked":%d,"lost":%d,"committed_unacked_by_client":%d,"unacked_writes_before_kill":%s,"held_packets_before_kill":%s,"recovery":"%s"}' \
      "$mode" "$i" "$SEED" "$ms" "$n_acked" "$lost" "$extra" "$unacked" "$held" "$RECOVERY")
    echo "$line"
    [ -n "$RESULTS" ] && echo "$line" >>"$RESULTS"
    total_runs[$mode]=$(( total_runs[$mode] + 1 ))
    [ "$lost" -gt 0 ] && lost_runs[$mode]=$(( lost_runs[$mode] + 1 ))
    if [ "$n_acked" -lt 20 ]; then
      echo "FAIL: $mode run $i: only $n_acked acknowledged inserts - the workload did not run" >&2
      failures=$((failures + 1))
    fi
    if [ "$mode" != async ] && [ "$lost" -ne 0 ]; then
      echo "FAIL: $mode run $i lost $lost acknowledged inserts (seed $SEED)" >&2
      [ "$RECOVERY" = ok ] || echo "  the backup lost the database itself: $RECOVERY" >&2
      comm -23 <(sort -u "$acked") <(sort -u "$present") | head -5 >&2
      failures=$((failures + 1))
    fi
    stop_daemons
    "$LAB_SH" partition off --prefix "$P" >/dev/null
  done
done

for mode in $MODES; do
  echo "summary: $mode: ${lost_runs[$mode]} of ${total_runs[$mode]} runs lost acknowledged inserts"
done
if [[ " $MODES " == *" async "* ]]; then
  # The checker must be able to fail: async (no holding) loses inserts
  # that clients saw acknowledged in most runs.
  if [ $(( lost_runs[async] * 2 )) -lt "${total_runs[async]}" ]; then
    echo "FAIL: async lost acknowledged inserts in only ${lost_runs[async]} of ${total_runs[async]} runs: the checker shows no teeth" >&2
    failures=$((failures + 1))
  fi
fi
[ "$failures" -eq 0 ] || exit 1
echo "PASS"

#!/usr/bin/env bash
# pgbench against a protected PostgreSQL (root): Tideway's three modes and,
# as the alternative a user would pick, PostgreSQL's own synchronous
# streaming replication - all in one run on the same two-site lab.
#
#   sudo tests/bench/protect_pgbench.sh [--build DIR] [--seconds 30]
#        [--rtts "0 10 50 100"] [--clients "1 4 16 64"]
#        [--configs "async sync pipelined pgsync"] [--script tpcb|insert]
#        [--out DIR] [--json]
#
# Each config gets a fresh PostgreSQL (pgbench -i -s 1) whose clients run in a namespace beside the protected one (0 RTT
# to the database); the RTT is the WAN's, between primary and backup.
#   async, sync, pipelined  PostgreSQL on ext4 / loop / Tideway's FUSE tap
#   pgsync                  PostgreSQL on ext4 / loop / plain file, standby at
#                           the backup site over the same emulated WAN,
#                           synchronous_commit = on, synchronous_standby_names = '*'
# Scripts: tpcb (default) is pgbench's built-in TPC-B-like transaction: every
# transaction updates the one branch row (scale 1), so clients queue on its
# lock. insert is one INSERT per transaction into pgbench_history: no shared
# row, the serialized-inserts workload of the paper's 12x result.
# Writes OUT/results.jsonl (one line per run: TPS, p50/p99 latency), OUT/
# results.md and plots OUT/tps_vs_clients_rtt50.svg (or the largest RTT run),
# OUT/latency_vs_rtt.svg.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BUILD="${BUILD:-$HERE/../../build-rel}"
SECS=30 RTTS="0 10 50 100" CLIENTS="1 4 16 64" CONFIGS="async sync pipelined pgsync" OUT="" JSON=0 SCRIPT=tpcb
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD="$2"; shift 2 ;;
    --seconds) SECS="$2"; shift 2 ;;
    --rtts) RTTS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --configs) CONFIGS="$2"; shift 2 ;;
    --script) SCRIPT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --json) JSON=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "protect_pgbench: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$SCRIPT" in
  tpcb|insert) ;;
  *) echo "protect_pgbench: --script must be tpcb or insert, not '$SCRIPT'" >&2; exit 2 ;;
esac
BUILD="$(cd "$BUILD" && pwd)"
export BUILD
source "$HERE/../protect/protect_lab.sh"
OUT="${OUT:-$(mktemp -d /tmp/tw-pgbench.XXXXXX)}"
mkdir -p "$OUT"
: >"$OUT/results.jsonl"

trap protect_lab_down EXIT
protect_lab_up "twb$$-" --delay-ms 0 --rate-mbit 1000
# The backup site reaches the application subnet (for the pgsync standby).
ip -n "$NS_B" route add 10.77.0.0/16 via "$TW_LAB_IP_A"

# start_plain_pg: PostgreSQL on ext4 / loop / a plain file (no tap), with
# replication allowed from the backup site.
start_plain_pg() {
  mkdir -p "$W/pgfs"
  rm -f "$W/plain.img"
  truncate -s 1G "$W/plain.img"
  make_pg_cluster "$W/plain.img"
  nsenter --net="/run/netns/${P}a-app" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgfs/data" \
    -l "$W/log/pg-primary.log" -w -t 60 start >/dev/null
  PG_PID="$(head -1 "$W/pgfs/data/postmaster.pid")"
  # The standby at the backup site, streaming synchronously.
  rm -rf "$W/standby"; mkdir -p -m 0700 "$W/standby"; mkdir -p "$W/ssock"
  chown postgres:postgres "$W/standby" "$W/ssock"
  nsenter --net="/run/netns/$NS_B" runuser -u postgres -- pg_basebackup -h "$APP_IP" -U postgres \
    -D "$W/standby" -R -X stream >/dev/null
  nsenter --net="/run/netns/$NS_B" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/standby" \
    -l "$W/log/pg-standby.log" -w -t 60 -o "-c listen_addresses='' -c unix_socket_directories='$W/ssock'" start >/dev/null
  runuser -u postgres -- psql -h "$W/sock" -d postgres -qc "ALTER SYSTEM SET synchronous_standby_names = '*'" \
    -c "SELECT pg_reload_conf()" >/dev/null
  local i
  for i in $(seq 100); do
    [ "$(runuser -u postgres -- psql -h "$W/sock" -d postgres -Atc "SELECT sync_state FROM pg_stat_replication")" = sync ] && return 0
    sleep 0.2
  done
  pdie "the standby never became synchronous"
}

stop_plain_pg() {
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/standby" -m immediate stop >/dev/null 2>&1 || true
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgfs/data" -m immediate stop >/dev/null 2>&1 || true
  PG_PID=""
  umount "$W/pgfs" 2>/dev/null || umount -l "$W/pgfs"
  losetup -d "$LOOP"; LOOP=""
}

stop_protected_pg() {
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgfs/data" -m fast -w stop >/dev/null 2>&1 || true
  PG_PID=""
  umount "$W/pgfs" 2>/dev/null || umount -l "$W/pgfs"
  losetup -d "$LOOP"; LOOP=""
  tw_agent unprotect pg >/dev/null || true
  stop_daemons
}

# run_pgbench CONFIG RTT CLIENTS
run_pgbench() {
  local config="$1" rtt="$2" c="$3" j logdir out tps p50 p99
  j=$(( c < 4 ? c : 4 ))
  logdir="$W/pgb-$config-$rtt-$c"; rm -rf "$logdir"; mkdir -p "$logdir"
  local script=()
  if [ "$SCRIPT" = insert ]; then
    cat >"$logdir/insert.sql" <<'EOT'
\set aid random(1, 100000)
\set bid random(1, 1)
\set tid random(1, 10)
\set delta random(-5000, 5000)
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
EOT
    script=(-f "$logdir/insert.sql")
  fi
  out=$(cd "$logdir" && client pgbench -h "$APP_IP" -U postgres -c "$c" -j "$j" -T "$SECS" -l "${script[@]}" postgres 2>&1) ||
    { echo "$out" >&2; pdie "pgbench failed ($config rtt $rtt c $c)"; }
  tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
  read -r p50 p99 < <(cat "$logdir"/pgbench_log.* | awk '{print $3}' | sort -n |
    awk '{a[NR]=$1} END {if (NR==0) {print "0 0"} else {i=int(NR*0.5); if(i<1)i=1; k=int(NR*0.99); if(k<1)k=1; printf "%.2f %.2f\n", a[i]/1000, a[k]/1000}}')
  local line
  # The 1-minute load average at the end: async at RTT 0 is CPU-bound, so
  # other work on this 2-core machine shows in its figures.
  local load1
  load1=$(cut -d' ' -f1 /proc/loadavg)
  line=$(printf '{"config":"%s","script":"%s","rtt_ms":%d,"clients":%d,"seconds":%d,"tps":%s,"p50_ms":%s,"p99_ms":%s,"load1":%s}' \
    "$config" "$SCRIPT" "$rtt" "$c" "$SECS" "$tps" "$p50" "$p99" "$load1")
  echo "$line" >>"$OUT/results.jsonl"
  [ "$JSON" = 1 ] && echo "$line" || plog "$config ($SCRIPT) rtt=${rtt}ms clients=$c: $tps TPS, p50 $p50 ms, p99 $p99 ms"
}

for rtt in $RTTS; do
  "$LAB_SH" set --prefix "$P" --delay-ms $(( rtt / 2 )) >/dev/null
  for config in $CONFIGS; do
    if [ "$config" = pgsync ]; then
      start_plain_pg
    else
      start_daemons
      start_primary_pg "$config" 1G
    fi
    runuser -u postgres -- pgbench -h "$W/sock" -i -s 1 -q postgres >/dev/null 2>&1 || pdie "pgbench -i failed"
    for c in $CLIENTS; do run_pgbench "$config" "$rtt" "$c"; done
    if [ "$config" = pgsync ]; then stop_plain_pg; else stop_protected_pg; fi
  done
done

# Summary table and plots.
{
  echo "| config | script | RTT ms | clients | TPS | p50 ms | p99 ms |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
  jq -r '"| \(.config) | \(.script) | \(.rtt_ms) | \(.clients) | \(.tps * 10 | round / 10) | \(.p50_ms) | \(.p99_ms) |"' "$OUT/results.jsonl"
} >"$OUT/results.md"
# TPS vs clients at 50 ms RTT (or the largest RTT run); p50 vs RTT at one
# client. A config without points is left out of a plot; a plot without
# points is not drawn.
PLOT_RTT=50
[[ " $RTTS " == *" 50 "* ]] || PLOT_RTT="${RTTS##* }"
if command -v gnuplot >/dev/null; then
  plot_tps="" plot_lat=""
  for config in $CONFIGS; do
    jq -r "select(.config==\"$config\" and .rtt_ms==$PLOT_RTT) | \"\(.clients) \(.tps)\"" "$OUT/results.jsonl" >"$OUT/tps-$config.dat"
    jq -r "select(.config==\"$config\" and .clients==1) | \"\(.rtt_ms) \(.p50_ms)\"" "$OUT/results.jsonl" >"$OUT/lat-$config.dat"
    if [ -s "$OUT/tps-$config.dat" ]; then
      plot_tps+="'$OUT/tps-$config.dat' using 1:2 with linespoints title '$config',"
    fi
    if [ "$(wc -l <"$OUT/lat-$config.dat")" -ge 2 ]; then
      plot_lat+="'$OUT/lat-$config.dat' using 1:2 with linespoints title '$config',"
    fi
  done
  {
    echo "set terminal svg size 640,420"
    if [ -n "$plot_tps" ]; then
      echo "set output '$OUT/tps_vs_clients_rtt$PLOT_RTT.svg'"
      echo "set title 'pgbench ($SCRIPT) TPS vs clients (RTT $PLOT_RTT ms)'"
      echo "set xlabel 'clients'; set ylabel 'TPS'; set logscale x 2; set key left top"
      echo "plot ${plot_tps%,}"
    fi
    if [ -n "$plot_lat" ]; then
      echo "set output '$OUT/latency_vs_rtt.svg'"
      echo "set title 'pgbench ($SCRIPT) p50 latency vs RTT (1 client)'"
      echo "unset logscale x; set key left top"
      echo "set xlabel 'RTT ms'; set ylabel 'p50 latency ms'"
      echo "plot ${plot_lat%,}"
    fi
  } | gnuplot || echo "protect_pgbench: gnuplot failed; the numbers are in $OUT/results.jsonl" >&2
fi
cat "$OUT/results.md"
echo "results in $OUT" >&2

#!/usr/bin/env bash
# The two-site lab demo, on its embedded defaults (run as root on Debian 12):
#   installs what is missing, builds (release), creates a lab CA and site
#   certificates, brings up a primary and a backup site joined by an emulated
#   WAN (50 ms RTT, 100 Mbit/s), then over Tideway's authenticated channel:
#     1. measures the WAN and the channel: bulk goodput, and how long acks wait
#        behind bulk data;
#     2. cuts the WAN for 5 s in the middle of a transfer and shows the session
#        resuming on its own;
#     3. protects a PostgreSQL: it runs on a FUSE-tapped volume in the primary
#        site, clients insert rows, then the primary site is destroyed (WAN
#        cut, agent and database SIGKILLed); the backup volume is promoted,
#        PostgreSQL recovers on it, and every insert a client saw
#        acknowledged is checked: pipelined loses none, async (shown for
#        contrast) loses some;
#   prints a summary, and tears everything down (also on failure or Ctrl-C).
# Settings: DELAY_MS (one way, default 25), RATE_MBIT (default 100), SECONDS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
delay_ms=${DELAY_MS:-25}
rate_mbit=${RATE_MBIT:-100}
secs=${SECONDS_PER_RUN:-10}
P=twdemo-

if [ "$(id -u)" -ne 0 ]; then
  echo "demo.sh: run as root: the lab creates network namespaces and TUN devices" >&2
  exit 1
fi

bash deploy/install-deps.sh
echo "== build (release) =="
cmake -S . -B build-rel -G Ninja -DCMAKE_BUILD_TYPE=Release -DTIDEWAY_BENCH=OFF >/dev/null
ninja -C build-rel tideway-wanem tideway-probe tideway tideway-agent tideway-replicator tw-jepsen

work=$(mktemp -d /tmp/tideway-demo.XXXXXX)
cleanup() {
  deploy/lab.sh down --prefix "$P" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== certificates =="
deploy/certs.sh "$work/pki" primary backup
probe=$root/build-rel/wan/tideway-probe
tls_a=(--ca "$work/pki/ca.pem" --cert "$work/pki/primary.pem" --key "$work/pki/primary.key" --site primary)
tls_b=(--ca "$work/pki/ca.pem" --cert "$work/pki/backup.pem" --key "$work/pki/backup.key" --site backup)

echo "== lab: ${delay_ms} ms each way, ${rate_mbit} Mbit/s =="
deploy/lab.sh down --prefix "$P" >/dev/null 2>&1 || true
TIDEWAY_WANEM=$root/build-rel/wan/wanem/tideway-wanem \
  deploy/lab.sh up --prefix "$P" --delay-ms "$delay_ms" --rate-mbit "$rate_mbit"
eval "$(deploy/lab.sh env --prefix "$P")"

ping_rtt=$(ip netns exec "$TW_LAB_NS_A" ping -q -c 10 -i 0.2 "$TW_LAB_IP_B" | awk -F/ '/^rtt/ {print $5}')

ip netns exec "$TW_LAB_NS_B" "$probe" serve --listen "$TW_LAB_IP_B:7400" "${tls_b[@]}" --log-level info \
  >"$work/backup.log" 2>&1 &
sleep 0.5

# The channel's own link limit sits just under the WAN's bottleneck, so the
# queue builds in the channel (where acks jump it), not in the WAN.
chan_mbit=$(awk -v r="$rate_mbit" 'BEGIN {print r * 0.95}')
echo "== 1. channel over the WAN (${secs} s of bulk, link limit ${chan_mbit} Mbit/s) =="
ip netns exec "$TW_LAB_NS_A" "$probe" run --connect "$TW_LAB_IP_B:7400" "${tls_a[@]}" \
  --seconds "$secs" --rate-mbit "$chan_mbit" --json >"$work/run1.json"

echo "== 2. WAN cut for 5 s during a transfer =="
ip netns exec "$TW_LAB_NS_A" "$probe" run --connect "$TW_LAB_IP_B:7400" "${tls_a[@]}" \
  --seconds 14 --rate-mbit "$chan_mbit" --json --log-level info >"$work/run2.json" 2>"$work/run2.log" &
run2=$!
sleep 6
deploy/lab.sh partition on --prefix "$P" >/dev/null
echo "   WAN partitioned"
sleep 5
deploy/lab.sh partition off --prefix "$P" >/dev/null
echo "   WAN healed"
wait $run2

r1=$work/run1.json r2=$work/run2.json
j() { jq -r "$2" "$1"; }
links=$(j "$r2" .links)
echo
echo "Tideway two-site lab demo: summary"
printf '  %-26s ping RTT %s ms, bottleneck %s Mbit/s\n' "WAN (emulated)" "$ping_rtt" "$rate_mbit"
printf '  %-26s TLS 1.3, mutual certificates, site primary -> backup\n' "channel"
printf '  %-26s %.1f Mbit/s (%.0f%% of the WAN)\n' "bulk goodput" "$(j "$r1" .bulk_goodput_mbit)" \
  "$(j "$r1" ".bulk_goodput_mbit * 100 / $rate_mbit")"
printf '  %-26s p50 %.1f ms\n' "control RTT idle" "$(j "$r1" .idle_rtt_ms.p50)"
printf '  %-26s p50 %.1f ms, p99 %.1f ms\n' "control RTT under bulk" "$(j "$r1" .loaded_rtt_ms.p50)" \
  "$(j "$r1" .loaded_rtt_ms.p99)"
printf '  %-26s p50 %.1f ms, p99 %.1f ms\n' "ack queueing behind bulk" "$(j "$r1" .ack_queueing_ms.p50)" \
  "$(j "$r1" .ack_queueing_ms.p99)"
printf '  %-26s %s links (1 = never reconnected), goodput over the run %.1f Mbit/s\n' "WAN cut for 5 s" \
  "$links" "$(j "$r2" .bulk_goodput_mbit)"
grep -E "resumed|down:" "$work/run2.log" | sed 's/^/    log: /' | head -4 || true
if [ "$links" -lt 2 ]; then
  echo "demo.sh: the session did not reconnect after the cut" >&2
  exit 1
fi
deploy/lab.sh down --prefix "$P" >/dev/null

echo
echo "== protect: PostgreSQL on a protected volume, then a site disaster (50 ms RTT) =="
BUILD=$root/build-rel TIDEWAY_WANEM=$root/build-rel/wan/wanem/tideway-wanem \
  bash tests/protect/disaster_test.sh --modes "pipelined async" --iterations 1 --results "$work/protect.jsonl" |
  grep -v '^{'
echo
echo "Tideway protect demo: summary (acked = inserts the clients saw committed)"
jq -r '"  \(.mode | . + "          " | .[0:10]) acked \(.acked), lost at the backup after the disaster: \(.lost)"' "$work/protect.jsonl"
echo "demo.sh: done; tearing the lab down"

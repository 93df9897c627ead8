#!/usr/bin/env bash
# Layer 2 follows a migrating VM (DESIGN.md 3.5, CloudNet's step 4): a "VM"
# namespace (fixed MAC/IP, IPv6 off) in a pool spanning both sites, a client
# at site B streaming to it over TCP (l2_stream: one record per 10 ms, VM
# only ACKs). The VM moves by pausing (its eth0 down), its veth peer moving
# from one site's pool bridge to the other's, and resuming (eth0 up).
#
#   1. A -> B with `tideway garp` from the VM's interface: the stream must go
#      on (no reset, no record lost or reordered); the gap is reported.
#   2. Negative control, B -> A WITHOUT the gratuitous ARP: site A's bridge
#      still sends the VM's MAC into the tunnel (the FDB points at B), so the
#      stream must stall for the whole observation period. Then the GARP at
#      A must heal it (time to recover reported: TCP's backed-off RTO).
#   3. The stream ends cleanly: every record arrived, in order, one connection.
source "$(dirname "$0")/lab_lib.sh"
TIDEWAY_BIN="${TIDEWAY_BIN:-$REPO_ROOT/build/agent/tideway}"
L2_STREAM="${L2_STREAM:-$REPO_ROOT/build/tests/lab/l2_stream}"
export TIDEWAY_BIN
[ -x "$TIDEWAY_BIN" ] || fail "tideway CLI not built: $TIDEWAY_BIN"
[ -x "$L2_STREAM" ] || fail "l2_stream not built: $L2_STREAM"
command -v jq >/dev/null || fail "jq not installed (deploy/install-deps.sh)"

OBSERVE_MS="${OBSERVE_MS:-5000}"  # negative control: how long the stall must last
MAX_GAP_MS="${MAX_GAP_MS:-2500}"  # with the GARP: the largest gap allowed (CLI start + RTO backoff)
VM_MAC=52:54:00:42:00:10 VM_IP=192.168.88.10 CL_IP=192.168.88.20 POOL=mig

lab_up h4-m --delay-ms 10 --rate-mbit 100 --wan-mtu 1550
VM="${P}a-vm" CL="${P}b-cl"
TMPD="$(mktemp -d /tmp/tw-l2-migrate.XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  [ ${#PIDS[@]} -eq 0 ] || kill "${PIDS[@]}" 2>/dev/null || true
  if [ $rc -ne 0 ]; then
    echo "--- sink log (tail) ---" >&2; tail -n 5 "$TMPD/sink.log" >&2 2>/dev/null || true
    echo "--- source log ---" >&2; cat "$TMPD/source.log" >&2 2>/dev/null || true
  fi
  rm -rf -- "$TMPD"
  set +e  # hand lab_teardown the test's status through $?
  (exit $rc)
  lab_teardown
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
quiet_ns() {  # IPv6 off (no ND/MLD to teach the bridges), no ARP on link up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv4.conf.all.arp_notify=0 net.ipv4.conf.default.arp_notify=0
}
"$LAB_SH" pool add "$POOL" --vni 4242 --prefix "$P" || fail "pool add"

ip netns add "$VM"
quiet_ns "$VM"
ip -n "${P}a" link add vmport type veth peer name eth0 netns "$VM"
ip -n "$VM" link set eth0 address "$VM_MAC"
ip -n "$VM" link set lo up
ip -n "$VM" link set eth0 up
ip -n "$VM" addr add "$VM_IP/24" dev eth0
ip -n "${P}a" link set vmport master "vcp-$POOL" up
ip netns add "$CL"
quiet_ns "$CL"
ip -n "${P}b" link add clport type veth peer name eth0 netns "$CL"
ip -n "$CL" link set lo up
ip -n "$CL" link set eth0 up
ip -n "$CL" addr add "$CL_IP/24" dev eth0
ip -n "${P}b" link set clport master "vcp-$POOL" up

ip netns exec "$VM" "$L2_STREAM" sink --listen "$VM_IP:7000" --ready "$TMPD/ready" >"$TMPD/sink.log" &
PIDS+=($!)
for _ in $(seq 1 50); do [ -e "$TMPD/ready" ] && break; sleep 0.1; done
[ -e "$TMPD/ready" ] || fail "sink did not start"
ip netns exec "$CL" "$L2_STREAM" source --connect "$VM_IP:7000" --interval-ms 10 \
  --stop-file "$TMPD/stop" >"$TMPD/source.log" &
SRC=$!
PIDS+=("$SRC")

rx_count() { grep -c '^rx ' "$TMPD/sink.log" || true; }
# rx_after MS: records that arrived after that wall-clock time (ms)
rx_after() { awk -v t="$1" '$1 == "rx" && $2 * 1000 > t {n++} END {print n + 0}' "$TMPD/sink.log"; }
# max_gap FROM_MS TO_MS: largest time between consecutive arrivals in the window
max_gap() {
  awk -v a="$1" -v b="$2" '$1 == "rx" { t = $2 * 1000; if (t >= a && t <= b) { if (p) { g = t - p; if (g > m) m = g }; p = t } }
    END { printf "%.0f\n", m }' "$TMPD/sink.log"
}
first_rx_after() { awk -v t="$1" '$1 == "rx" && $2 * 1000 > t { printf "%.0f\n", $2 * 1000 - t; exit }' "$TMPD/sink.log"; }
fdb_port() {  # the port site $1's pool bridge sends the VM's MAC to
  bridge -n "${P}$1" fdb show br "vcp-$POOL" | awk -v m="$VM_MAC" '$1 == m && / master / && !/permanent/ {print $3; exit}'
}
alive() { kill -0 "$SRC" 2>/dev/null && kill -0 "${PIDS[0]}" 2>/dev/null; }

sleep 2
n="$(rx_count)"
check "$n >= 100" "stream runs across the WAN before the migration ($n records in 2 s)"
check "$(max_gap 0 "$(now_ms)") < 200" "no gap over 200 ms before the migration"

# migrate FROM TO: pause, move the VM's port to the other site's pool bridge, resume.
migrate() {
  ip -n "$VM" link set eth0 down
  ip -n "${P}$1" link set vmport netns "${P}$2"
  ip -n "${P}$2" link set vmport master "vcp-$POOL" up
  ip -n "$VM" link set eth0 up
}
# garp SITE: the destination host announces the VM; prints the wall-clock ms
# of the first frame.
garp() {
  local out
  out="$(ip netns exec "${P}$1" "$TIDEWAY_BIN" --json garp --netns "$VM" --iface eth0 --mac "$VM_MAC" --ip "$VM_IP")" \
    || return 1
  jq -r .first_sent_unix_ms <<<"$out"
}

# --- 1. A -> B with the gratuitous ARP ---------------------------------------
t0="$(now_ms)"
migrate a b
t1="$(now_ms)"
tg="$(garp b)" || fail "tideway garp failed"
t2="$(now_ms)"
move1=$((t1 - t0))
sleep 2
alive || fail "stream died after the migration with GARP (reset?)"
gap="$(max_gap $((t0 - 500)) "$(now_ms)")"
after_garp="$(first_rx_after "$tg")"
note "A->B: pause+move+resume $move1 ms, first GARP frame $((tg - t1)) ms after resume (tideway CLI start)," \
  "first record $after_garp ms after that frame; stream gap $gap ms"
check "$(rx_after "$t2") >= 100" "stream continues after the move to site B with GARP"
check "$gap < $MAX_GAP_MS" "gap with GARP ($gap ms) under $MAX_GAP_MS ms"
[ "$(fdb_port b)" = vmport ] || fail "site B's bridge does not send the VM's MAC to its new port ($(fdb_port b))"
[ "$(fdb_port a)" = "vx-$POOL" ] || fail "site A's bridge does not send the VM's MAC into the tunnel ($(fdb_port a))"
note "ok: FDB at both sites moved (B: vmport, A: vx-$POOL)"

# --- 2. negative control: B -> A without it ----------------------------------
t0="$(now_ms)"
migrate b a
t1="$(now_ms)"
[ "$(fdb_port a)" = "vx-$POOL" ] || fail "control: site A's FDB no longer points into the tunnel ($(fdb_port a))"
sleep "$(awk "BEGIN{print $OBSERVE_MS/1000}")"
stalled="$(rx_after "$t1")"
note "B->A without GARP: $stalled records in the $OBSERVE_MS ms after resume (site A's FDB: $(fdb_port a))"
[ "$stalled" = 0 ] || fail "control: the stream went on without the GARP ($stalled records): the test cannot tell"
alive || fail "control: the stream died during the stall (it must only stall)"
note "ok: without the GARP the stream stalls (the FDB points at the old site)"
t3="$(garp a)" || fail "tideway garp at site A failed"
for _ in $(seq 1 100); do [ "$(rx_after "$t3")" -gt 0 ] && break; sleep 0.1; done
recovered="$(first_rx_after "$t3")"
[ -n "$recovered" ] || fail "the stream did not recover within 10 s of the late GARP"
note "late GARP at A: stream resumed $recovered ms later (TCP retransmission backoff after a $((t3 - t0)) ms stall)"

# --- 3. a clean end: one connection, every record, in order -------------------
sleep 1
touch "$TMPD/stop"
wait "$SRC" || fail "source failed: $(cat "$TMPD/source.log")"
wait "${PIDS[0]}" || fail "sink failed: $(tail -n 1 "$TMPD/sink.log")"
PIDS=()
sent="$(sed -n 's/^done sent=//p' "$TMPD/source.log")"
got="$(sed -n 's/^eof //p' "$TMPD/sink.log")"
[ -n "$sent" ] && [ "$sent" = "$got" ] || fail "records sent $sent, received $got"
note "ok: one TCP connection survived both moves: $sent records sent, $got received in order"
echo "RESULT l2_migrate: gap_ms=$gap move_ms=$move1 garp_to_first_record_ms=$after_garp" \
  "no_garp_stall_ms>=$OBSERVE_MS late_garp_recovery_ms=$recovered"

#!/usr/bin/env bash
# Partition: ping works, fails while partitioned (lab.sh, SIGUSR1, one
# direction only), works again after each heal.
source "$(dirname "$0")/lab_lib.sh"
lab_up p --delay-ms 5 --rate-mbit 100

reachable() { ip netns exec "$NS_A" ping -n -q -c 3 -i 0.1 -W 1 "$IP_B" >/dev/null 2>&1; }
unreachable() { ! ip netns exec "$NS_A" ping -n -q -c 3 -i 0.1 -W 1 "$IP_B" >/dev/null 2>&1; }

reachable || fail "no ping before the partition"
note "ok: ping works"

"$LAB_SH" partition on --prefix "$P"
unreachable || fail "ping got through while partitioned"
dropped="$(counter a_to_b dropped_partition_packets)"
check "$dropped >= 3" "emulator counted $dropped a_to_b packets dropped by the partition"
"$LAB_SH" partition off --prefix "$P"
reachable || fail "ping does not work after partition off"
note "ok: lab.sh partition on/off"

pid="$(cat "/run/tideway-lab/$P/wanem.pid")"
kill -USR1 "$pid"
sleep 0.2
unreachable || fail "ping got through after SIGUSR1 (partition toggled on)"
kill -USR1 "$pid"
sleep 0.2
reachable || fail "ping does not work after the second SIGUSR1"
note "ok: SIGUSR1 toggles"

"$LAB_SH" partition on ba --prefix "$P"
before="$(counter a_to_b forwarded_packets)"
unreachable || fail "ping got through with b->a cut"
after="$(counter a_to_b forwarded_packets)"
check "$after - $before >= 3" "one-way partition: requests still pass a->b ($((after - before)) forwarded)"
"$LAB_SH" partition off --prefix "$P"
reachable || fail "ping does not work after healing b->a"
note "ok: one-way partition"

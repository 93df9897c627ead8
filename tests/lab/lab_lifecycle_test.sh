#!/usr/bin/env bash
# lab.sh itself: what up builds (namespaces, addresses, IPv6 off, TCP
# buffers, br0, emulator), that a second up refuses, that status and env
# tell the truth, that down removes everything and is idempotent, that a
# failed up cleans up after itself, and that bad arguments are refused.
source "$(dirname "$0")/lab_lib.sh"
lab_up c --delay-ms 1 --rate-mbit 10

# What up built.
for ns in "$NS_A" "$NS_B"; do
  ip netns list | grep -q "^$ns\b" || fail "namespace $ns missing"
  [ "$(ip netns exec "$ns" sysctl -n net.ipv6.conf.all.disable_ipv6)" = 1 ] || fail "IPv6 not disabled in $ns"
  [ -z "$(ip -n "$ns" -6 addr show)" ] || fail "$ns has IPv6 addresses"
  max="$(ip netns exec "$ns" sysctl -n net.ipv4.tcp_rmem | awk '{print $3}')"
  check "$max >= 16000000" "$ns tcp_rmem max $max >= 16 MB (1 Gbit/s x 100 ms)"
  ip -n "$ns" -d link show br0 | grep -q bridge || fail "br0 missing in $ns"
  ip -n "$ns" link show br0 | grep -q 'state UP\|,UP' || fail "br0 not up in $ns"
done
ip -n "$NS_A" -4 addr show dev wan0 | grep -q "inet $IP_A/30" || fail "wan0 in $NS_A lacks $IP_A/30"
ip -n "$NS_B" -4 addr show dev wan0 | grep -q "inet $IP_B/30" || fail "wan0 in $NS_B lacks $IP_B/30"
[ "$IP_A" != 10.250.0.1 ] || fail "a non-default prefix must get its own /30"
ip netns exec "$NS_A" ping -n -q -c 2 -W 1 "$IP_B" >/dev/null || fail "no ping A->B"
ip netns exec "$NS_B" ping -n -q -c 2 -W 1 "$IP_A" >/dev/null || fail "no ping B->A"
note "ok: namespaces, addresses, IPv6 off, TCP buffers, br0, ping both ways"

# The lab has no way out: no default route, nothing but the /30.
[ -z "$(ip -n "$NS_A" route show default)" ] || fail "$NS_A has a default route"

"$LAB_SH" status --prefix "$P" >/dev/null || fail "status says not up"
if "$LAB_SH" up --prefix "$P" >/dev/null 2>&1; then fail "a second up with the same prefix succeeded"; fi
"$LAB_SH" status --prefix "$P" >/dev/null || fail "the refused second up damaged the lab"
note "ok: status, second up refused"

# Bad arguments: refused with a message, nothing changed.
for bad in "--delay-ms fast" "--loss 2x" "--prefix bad/name" "--threads 3" "--frobnicate 1"; do
  # shellcheck disable=SC2086
  if msg="$("$LAB_SH" set --prefix "$P" $bad 2>&1)"; then fail "lab.sh accepted $bad"; fi
  echo "$msg" | grep -q 'error' || fail "no error message for $bad: $msg"
done
if msg="$(wanem_ctl set jitter_ms=5 2>&1)"; then fail "jitter > delay accepted"; fi
echo "$msg" | grep -q jitter || fail "unclear error for jitter > delay: $msg"
if "$TIDEWAY_WANEM" run --ns-a "$NS_A" >/dev/null 2>&1; then fail "wanem ran without --ns-b"; fi
note "ok: bad arguments refused"

# down removes everything; a second down is harmless.
pid="$(cat "/run/tideway-lab/$P/wanem.pid")"
ip netns exec "$NS_B" sleep 300 &
ip netns add "$NS_A-h1"  # a host attached by convention: down removes it too
ip netns exec "$NS_A-h1" sleep 300 &
sleep 0.2
"$LAB_SH" down --prefix "$P" >/dev/null
[ ! -d "/proc/$pid" ] || fail "emulator still running after down"
ip netns list | grep -q "^${P}[ab]\b" && fail "namespaces left after down"
ip netns list | grep -q "^$NS_A-h1\b" && fail "attached namespace $NS_A-h1 left after down"
[ ! -e "/run/tideway-lab/$P" ] || fail "/run/tideway-lab/$P left after down"
wait 2>/dev/null || true  # the sleep inside the lab was killed by down
if "$LAB_SH" status --prefix "$P" >/dev/null 2>&1; then fail "status says up after down"; fi
"$LAB_SH" down --prefix "$P" | grep -q 'nothing to clean up' || fail "second down not idempotent"
note "ok: down cleans up, idempotent"

# A failed up (emulator that cannot start) cleans up after itself.
if "$LAB_SH" up --prefix "$P" --wanem /bin/false >/dev/null 2>&1; then fail "up with a broken emulator succeeded"; fi
ip netns list | grep -q "^${P}[ab]\b" && fail "failed up left namespaces"
[ ! -e "/run/tideway-lab/$P" ] || fail "failed up left /run/tideway-lab/$P"
note "ok: failed up cleans up"

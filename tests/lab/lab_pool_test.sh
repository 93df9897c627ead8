#!/usr/bin/env bash
# Virtual cloud pools across the two sites (deploy/lab.sh pool, tideway
# pool): hosts of one pool share a subnet across the WAN, full-size frames
# pass at MTU 1500, two pools with overlapping addresses stay isolated, a
# site can leave and rejoin, every command is idempotent, bad requests fail
# with a clear message and change nothing, delete refuses while hosts are
# attached. Prints each reconfiguration's time.
source "$(dirname "$0")/lab_lib.sh"
TIDEWAY_BIN="${TIDEWAY_BIN:-$REPO_ROOT/build/agent/tideway}"
export TIDEWAY_BIN
[ -x "$TIDEWAY_BIN" ] || fail "tideway CLI not built: $TIDEWAY_BIN"
lab_up h4-p --delay-ms 5 --rate-mbit 0 --wan-mtu 1550

pool() { "$LAB_SH" pool --prefix "$P" "$@"; }
tw() { local ns="$1"; shift; ip netns exec "$ns" "$TIDEWAY_BIN" "$@"; }

# host SITE NAME POOL IP: a namespace ${P}SITE-NAME on bridge vcp-POOL.
host() {
  local site_ns="${P}$1" ns="${P}$1-$2" port="h-$2"
  ip netns add "$ns"
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$site_ns" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$site_ns" link set "$port" master "vcp-$3" up
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$ns" addr add "$4/24" dev eth0
}
pings() { ip netns exec "${P}$1" ping -n -q -c 2 -i 0.2 -W 1 "$2" >/dev/null 2>&1; }

# ms of one site's last pool command (from `tideway --json`).
timed() {
  local ns="$1"; shift
  local out
  out="$(tw "$ns" --json pool "$@")" || fail "tideway pool $* failed in $ns: $out"
  jq -r '"\(.action) changed=\(.changed) \(.ms|tostring|.[0:6]) ms, \(.commands) commands"' <<<"$out"
}

# --- create and join, with timings ---
note "pool add p1 (VNI 101):"
pool add p1 --vni 101 || fail "pool add p1"
pool add p2 --vni 102 >/dev/null || fail "pool add p2"
pool list | tee /dev/stderr | grep "site A: p1 .* 101 " >/dev/null || fail "pool list does not show p1 at site A"

host a h1 p1 192.168.77.1
host b h2 p1 192.168.77.2
host a h3 p2 192.168.77.1   # same address, other pool
host b h4 p2 192.168.77.3
pings a-h1 192.168.77.2 || fail "p1: site A host cannot reach site B host over the VXLAN"
note "ok: p1 spans both sites"
ip netns exec "${P}a-h1" ping -n -q -c 2 -W 2 -M do -s 1472 192.168.77.2 >/dev/null \
  || fail "p1: a 1500-byte DF packet did not pass (underlay MTU?)"
note "ok: 1500-byte frames pass the pool (underlay MTU 1550)"
pings a-h3 192.168.77.3 || fail "p2: hosts cannot reach each other"
! pings a-h1 192.168.77.3 || fail "ISOLATION: a p1 host reached a p2 host"
! pings a-h3 192.168.77.2 || fail "ISOLATION: a p2 host reached a p1 host"
note "ok: p1 and p2 are isolated (same subnet, overlapping addresses)"

# --- idempotence: everything again changes nothing ---
out="$(pool add p1 --vni 101)" || fail "repeating pool add p1 failed: $out"
[ "$(grep -c 'unchanged' <<<"$out")" = 4 ] || fail "repeating pool add p1 was not a no-op at both sites: $out"
note "ok: pool add is idempotent"

# --- a site leaves and rejoins ---
note "site A: $(timed "${P}a" remove-site p1 "$IP_B")"
note "site B: $(timed "${P}b" remove-site p1 "$IP_A")"
! pings a-h1 192.168.77.2 || fail "p1 still spans the sites after both removed each other"
note "site A again: $(timed "${P}a" remove-site p1 "$IP_B")"
note "site A: $(timed "${P}a" add-site p1 "$IP_B")"
note "site B: $(timed "${P}b" add-site p1 "$IP_A")"
pings a-h1 192.168.77.2 || fail "p1 does not work after the sites rejoined"
note "ok: remove-site / add-site (repeat is a no-op)"

# --- errors: clear message, nothing changed ---
expect_error() {  # expect_error PATTERN NS ARGS...: exits non-zero, says PATTERN
  local pat="$1" ns="$2"; shift 2
  local out
  if out="$(tw "$ns" pool "$@" 2>&1)"; then fail "tideway pool $* succeeded; expected an error"; fi
  grep -q -- "$pat" <<<"$out" || fail "tideway pool $*: error does not mention '$pat': $out"
  note "ok: pool $* -> $out"
}
before="$(tw "${P}a" --json pool list)"
expect_error "already carried by vx-p1" "${P}a" create p3 --vni 101 --local "$IP_A" --dev wan0
expect_error "exists with VNI 101" "${P}a" create p1 --vni 999 --local "$IP_A" --dev wan0
expect_error "not an address of wan0" "${P}a" create p3 --vni 103 --local 10.1.2.3 --dev wan0
expect_error "not found" "${P}a" create p3 --vni 103 --local "$IP_A" --dev nosuchdev
expect_error "bad pool name" "${P}a" create Bad.Name --vni 103 --local "$IP_A" --dev wan0
expect_error "own endpoint" "${P}a" add-site p1 "$IP_A"
expect_error "IPv4 address" "${P}a" add-site p1 10.0.0.300
expect_error "no pool 'p9'" "${P}a" add-site p9 "$IP_B"
expect_error "still has ports h-h1" "${P}a" delete p1
ip -n "${P}a" link add vx-p4 type vxlan id 104 dstport 4789
expect_error "not pool p4's" "${P}a" create p4 --vni 105 --local "$IP_A" --dev wan0
ip -n "${P}a" link del vx-p4
[ "$(tw "${P}a" --json pool list)" = "$before" ] || fail "a failed command changed the pools at site A"
ip -n "${P}a" link show vcp-p3 >/dev/null 2>&1 && fail "a failed create left vcp-p3 behind"
note "ok: errors change nothing"

# --- delete ---
pool del p2 --force || fail "pool del p2 --force"
ip -n "${P}a" link show "h-h3" >/dev/null 2>&1 || fail "--force deleted an attached host's port (must only detach)"
out="$(pool del p2)" || fail "repeating pool del p2 failed: $out"
grep -q "nothing to do" <<<"$out" || fail "repeating pool del p2 was not a no-op: $out"
pool list | grep ": p2 " >/dev/null && fail "p2 still listed after delete"
note "ok: delete (--force detaches, repeat is a no-op)"

#!/usr/bin/env bash
# Live-migrates the test guest (docs/guest.md) between two QEMU 7.2
# processes through qemu_relay, which splits the stream, sends every RAM page
# through the WAN codec and writes the rebuilt stream to the destination
# (docs/qemu-stream.md). Checks:
#   1. the migration completes, with several pre-copy passes (the relay
#      paces the stream like a slow link while memload dirties memory);
#   2. the relay passed every byte (bytes in = bytes out) and the stream
#      ended where a complete migration ends;
#   3. the RAM of the stopped source equals the RAM of the destination
#      (started -S), byte for byte (pmemsave on both);
#   4. after `cont` the guest runs on at the destination: its heartbeat
#      continues over TCP and on the serial console with 0 verify errors.
# Prints the relay's counters (bytes, pages by encoding) and the pages of
# each pre-copy pass: QEMU emits MIGRATION_PASS when it syncs its dirty
# bitmap, between two sections; the relay logs its counters per chunk read.
# The relay reads what QEMU wrote a socket buffer later (~250 KB / RATE), so
# event times are shifted by that much before looking the counters up
# (approximate to a few pages).
#
# RELAY_CORRUPT=1 makes the relay damage one byte of one page of the final
# pass (test flag --corrupt) and turns the test around: it passes only if
# the memory comparison catches exactly that damage.
#
# Source and destination run in namespaces of their own (PREFIX-src,
# PREFIX-dst), each with tap0 10.0.0.1 <-> guest 10.0.0.5 and the same MAC,
# so the guest's ARP entry stays valid across the move; the shared disk is a
# qemu-nbd export on a unix socket (virtio-blk, as the agent's NBD tap
# would serve it). Everything is removed on every exit path.
#
# Environment: BUILD (default build/), GUEST_DIR (default $BUILD/guest),
# RELAY (default $BUILD/tests/guest/qemu_relay), RATE (relay pacing, bytes/s,
# default 32000000), DOWNTIME_MS (QEMU downtime-limit, default 100),
# PREFIX (namespace prefix, default twr<pid>), KEEP=1 keeps the run dir.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
GUEST_DIR=${GUEST_DIR:-$BUILD/guest}
RELAY=${RELAY:-$BUILD/tests/guest/qemu_relay}
RATE=${RATE:-32000000}
DOWNTIME_MS=${DOWNTIME_MS:-100}
PREFIX=${PREFIX:-twr$$}
CORRUPT=${RELAY_CORRUPT:-0}
# shellcheck source-path=SCRIPTDIR source=../../deploy/guest/guestlib.sh
source "$root/deploy/guest/guestlib.sh"

name=guest.qemu_relay
[ "$CORRUPT" = 1 ] && name=guest.qemu_relay_corrupt
fail() { echo "$name: FAIL: $*" >&2; exit 1; }

twg_check_prereqs || fail "prerequisites missing"
for c in qemu-nbd cmp awk; do command -v "$c" >/dev/null || fail "missing $c (deploy/install-deps.sh: qemu-utils)"; done
[ -x "$RELAY" ] || fail "relay not built: $RELAY (ninja qemu_relay)"

run=$(mktemp -d "/tmp/twr$$.XXXXXX")
mkdir -p "$run/src" "$run/dst"
NS_SRC="$PREFIX-src"
NS_DST="$PREFIX-dst"
SRC_PID="" DST_PID="" RELAY_PID="" EVT_PID="" NBD_PID=""

stop_qemu() {  # stop_qemu NS PID
  local ns=$1 pid=$2 _
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  TWG_NS=$ns twg_qmp '{"execute":"quit"}' >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill "$pid" 2>/dev/null || true
  sleep 0.5
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  for p in "$RELAY_PID" "$EVT_PID"; do
    [ -n "$p" ] && { kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; }
  done
  stop_qemu "$NS_SRC" "$SRC_PID"
  stop_qemu "$NS_DST" "$DST_PID"
  [ -n "$NBD_PID" ] && { kill "$NBD_PID" 2>/dev/null || true; wait "$NBD_PID" 2>/dev/null || true; }
  ip netns del "$NS_SRC" 2>/dev/null || true
  ip netns del "$NS_DST" 2>/dev/null || true
  TWG_QEMU_PID="" TWG_NS=""
  if [ "$rc" -ne 0 ]; then
    for f in relay.out src/qemu.log dst/qemu.log; do
      [ -s "$run/$f" ] && { echo "--- $f ---" >&2; tail -n 15 "$run/$f" >&2; }
    done
    [ -s "$run/dst/serial.log" ] && { echo "--- dst serial ---" >&2; tail -n 5 "$run/dst/serial.log" >&2; }
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "$name: kept $run" >&2; else rm -rf "$run"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

qmp() { local ns=$1; shift; TWG_NS=$ns twg_qmp "$@"; }
# json_num JSON KEY: the first numeric value of "KEY": in JSON.
json_num() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" <<<"$1" | head -n 1; }
json_str() { sed -n "s/.*\"$2\": \"\([^\"]*\)\".*/\1/p" <<<"$1" | head -n 1; }

echo "== build guest ($GUEST_DIR) =="
bash "$root/deploy/guest/build-guest.sh" "$GUEST_DIR" || fail "build-guest.sh failed"

echo "== namespaces $NS_SRC, $NS_DST; shared NBD disk =="
for ns in "$NS_DST" "$NS_SRC"; do
  twg_setup_ns "$ns"
  ip -n "$ns" link set tap0 address 52:54:00:ff:00:01  # the same host MAC at both sites
done
truncate -s 64M "$run/disk.img"
# Our own child (no --fork), so cleanup can kill and reap exactly it.
qemu-nbd --socket="$run/nbd.sock" -f raw -x d0 --shared=4 --persistent "$run/disk.img" >"$run/nbd.log" 2>&1 &
NBD_PID=$!
for _ in $(seq 1 100); do [ -S "$run/nbd.sock" ] && break; sleep 0.1; done
[ -S "$run/nbd.sock" ] || fail "qemu-nbd did not start: $(cat "$run/nbd.log")"
disk=(-blockdev "driver=nbd,server.type=unix,server.path=$run/nbd.sock,export=d0,node-name=d0"
      -device "virtio-blk-pci,drive=d0")
kargs="tw.mem_mb=64 tw.dirty_mbps=8 tw.verify_mbps=16"

echo "== destination QEMU (-incoming defer -S) and source QEMU =="
TWG_NS=$NS_DST twg_start_guest "$GUEST_DIR" "$run/dst" "$kargs" "${disk[@]}" -incoming defer -S
DST_PID=$TWG_QEMU_PID
# A second QMP monitor on the source for the event log (a QMP socket serves
# one client at a time; events go to every monitor).
TWG_NS=$NS_SRC twg_start_guest "$GUEST_DIR" "$run/src" "$kargs" "${disk[@]}" \
  -qmp tcp:127.0.0.1:4445,server=on,wait=off
SRC_PID=$TWG_QEMU_PID
TWG_NS=$NS_SRC
twg_wait_serial '^TW-HB ' 300 >/dev/null || fail "no heartbeat from the source guest"
sleep 2  # let memload dirty memory for a while
before=$(twg_last_hb)
echo "source guest: $before"

# shellcheck disable=SC2016 # the script is for the inner bash
ip netns exec "$NS_SRC" bash -c 'exec 3<>/dev/tcp/127.0.0.1/4445 && read -r _ <&3 &&
  printf "{\"execute\":\"qmp_capabilities\"}\n" >&3 && exec cat <&3' >"$run/events.log" 2>/dev/null &
EVT_PID=$!

out=$(qmp "$NS_DST" "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:$run/dst.sock\"}}")
grep -q '"return"' <<<"$out" || fail "migrate-incoming: $out"
for _ in $(seq 1 100); do [ -S "$run/dst.sock" ] && break; sleep 0.1; done
[ -S "$run/dst.sock" ] || fail "the destination does not listen on $run/dst.sock"

relay_args=(--listen "$run/src.sock" --connect "$run/dst.sock" --rate "$RATE" --log "$run/relay.log")
[ "$CORRUPT" = 1 ] && relay_args+=(--corrupt)
"$RELAY" "${relay_args[@]}" >"$run/relay.out" 2>&1 &
RELAY_PID=$!
for _ in $(seq 1 100); do [ -S "$run/src.sock" ] && break; sleep 0.1; done
[ -S "$run/src.sock" ] || fail "the relay does not listen"

echo "== migrate through the relay (pacing $RATE B/s, downtime-limit $DOWNTIME_MS ms) =="
t0=$(twg_now_ms)
out=$(qmp "$NS_SRC" \
  '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"events","state":true}]}}' \
  "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"downtime-limit\":$DOWNTIME_MS,\"max-bandwidth\":4294967296}}" \
  "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$run/src.sock\"}}")
grep -q '"error"' <<<"$out" && fail "migrate: $out"
status=""
for _ in $(seq 1 600); do
  info=$(qmp "$NS_SRC" '{"execute":"query-migrate"}')
  status=$(json_str "$info" status)
  case "$status" in completed|failed|cancelled) break ;; esac
  sleep 0.5
done
[ "$status" = completed ] || fail "source migration status: ${status:-none} ($info)"
# The first "completed" may report total-time 0 (DESIGN.md section 7).
sleep 0.3
info=$(qmp "$NS_SRC" '{"execute":"query-migrate"}')
t1=$(twg_now_ms)
echo "migration completed in $((t1 - t0)) ms (QEMU: total-time $(json_num "$info" total-time) ms," \
  "downtime $(json_num "$info" downtime) ms, dirty-sync-count $(json_num "$info" dirty-sync-count)," \
  "transferred $(json_num "$info" transferred) B)"

relay_rc=0
wait "$RELAY_PID" || relay_rc=$?
RELAY_PID=""
cat "$run/relay.out"
[ "$relay_rc" -eq 0 ] || fail "relay exited with $relay_rc"
grep -q '^relay: OK$' "$run/relay.out" || fail "relay did not report OK"

for _ in $(seq 1 100); do
  st=$(qmp "$NS_DST" '{"execute":"query-status"}')
  [ "$(json_str "$st" status)" = paused ] && break
  sleep 0.2
done
[ "$(json_str "$st" status)" = paused ] || fail "destination not paused after the migration: $st"

echo "== pre-copy passes (MIGRATION_PASS events x relay counters, approximate) =="
lag_us=$((250000 * 1000000 / RATE))
passes=$(awk -v lag="$lag_us" '
  FNR == NR {  # relay.log: cumulative counters over time
    for (i = 1; i <= NF; ++i) { split($i, kv, "="); v[kv[1]] = kv[2] }
    n++; t[n] = v["t_us"]; pg[n] = v["pages"]; zr[n] = v["zero"]; next
  }
  /"MIGRATION_PASS"/ {
    match($0, /"seconds": [0-9]+/); s = substr($0, RSTART + 11, RLENGTH - 11)
    match($0, /"microseconds": [0-9]+/); us = substr($0, RSTART + 16, RLENGTH - 16)
    match($0, /"pass": [0-9]+/); p = substr($0, RSTART + 8, RLENGTH - 8)
    np++; et[np] = s * 1000000 + us + lag; ep[np] = p
  }
  function at(time,  k, r) { r = 0; for (k = 1; k <= n; ++k) if (t[k] <= time) r = k; return r }
  END {
    for (j = 1; j <= np; ++j) {
      a = at(et[j]); b = (j < np) ? at(et[j + 1]) : n
      printf "pass %d: %d pages, %d zero pages\n", ep[j], pg[b] - (a ? pg[a] : 0), zr[b] - (a ? zr[a] : 0)
    }
    printf "passes=%d\n", np
  }' "$run/relay.log" "$run/events.log")
echo "$passes" | grep -v '^passes='
npass=$(sed -n 's/^passes=//p' <<<"$passes")

echo "== compare RAM: stopped source vs paused destination =="
for side in src dst; do
  ns=$NS_SRC; [ "$side" = dst ] && ns=$NS_DST
  out=$(qmp "$ns" "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":0,\"size\":$TWG_RAM_BYTES,\"filename\":\"$run/$side.mem\"}}")
  grep -q '"return"' <<<"$out" || fail "pmemsave on $side: $out"
  [ "$(stat -c %s "$run/$side.mem")" -eq "$TWG_RAM_BYTES" ] || fail "pmemsave on $side: short dump"
done
differ=$(cmp -l "$run/src.mem" "$run/dst.mem" | awk '{ print int(($1 - 1) / 4096) }' | uniq | wc -l || true)
rm -f "$run/src.mem" "$run/dst.mem"
if [ "$CORRUPT" = 1 ]; then
  grep -q 'corrupting page' "$run/relay.out" || fail "the relay did not corrupt a page (no page in the final pass?)"
  [ "$differ" -eq 1 ] || fail "expected exactly 1 differing page after the relay's corruption, found $differ"
  echo "$name: PASS the damaged page was caught (1 page of $TWG_RAM_BYTES bytes differs)"
  exit 0
fi
[ "$differ" -eq 0 ] || fail "destination RAM differs from the source in $differ pages"
echo "RAM identical ($TWG_RAM_BYTES bytes)"
# Events: setup sync, end of the bulk pass, at least one dirty-page pass,
# the final sync. Fewer means nothing was re-sent.
[ "${npass:-0}" -ge 4 ] || fail "only ${npass:-0} pre-copy passes: slow the relay (RATE) for a real pre-copy test"

echo "== cont at the destination: the guest runs on =="
out=$(qmp "$NS_DST" '{"execute":"cont"}')
grep -q '"return"' <<<"$out" || fail "cont: $out"
TWG_NS=$NS_DST TWG_RUN=$run/dst
# shellcheck disable=SC2016 # the script is for the inner bash
lines=$(ip netns exec "$NS_DST" timeout 30 bash -c \
  'exec 3<>"/dev/tcp/$0/$1" && head -n 20 <&3' "$TWG_GUEST_IP" "$TWG_HB_PORT") ||
  fail "no heartbeat over TCP from the destination guest"
first=$(head -n 1 <<<"$lines" | tr -d '\r')
last=$(tail -n 1 <<<"$lines" | tr -d '\r')
echo "destination guest over TCP: first $first"
echo "                            last  $last"
[ "$(twg_field "$first" seq)" -gt "$(twg_field "$before" seq)" ] || fail "heartbeat did not continue: $first"
while read -r l; do
  [ "$(twg_field "$l" errors)" = 0 ] || fail "verify errors at the destination: $l"
done <<<"$lines"
sleep 3
hb=$(TWG_RUN=$run/dst twg_last_hb)
echo "destination serial: $hb"
[ "$(twg_field "$hb" errors)" = 0 ] || fail "verify errors at the destination: $hb"
[ "$(twg_field "$hb" seq)" -gt "$(twg_field "$last" seq)" ] || fail "serial heartbeat stalled: $hb"
! grep -aq '^TW-ERROR' "$run/dst/serial.log" || fail "TW-ERROR on the destination's console"

echo "$name: PASS passes=$npass migration_ms=$((t1 - t0)) $(grep '^relay: bytes_in' "$run/relay.out" | cut -d' ' -f2-3)"

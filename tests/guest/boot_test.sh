#!/usr/bin/env bash
# Boots the Tideway test guest (docs/guest.md) under QEMU TCG in a network
# namespace of its own and checks that it works as the migration tests need:
#   1. the workload's verifier catches damaged pages (host run, tw.corrupt);
#   2. the guest boots and prints heartbeats on the serial console;
#   3. the heartbeat streams over TCP to a client in the namespace;
#   4. QMP works, and pmemsave dumps the full RAM (the workload's page
#      headers are found in the dump);
#   5. after a while, the guest's verifier still counts 0 errors.
# Prints the boot time to the first heartbeat. Fails (never skips) when
# something it needs is missing. Cleans up QEMU and the namespace on every
# exit path.
#
# Environment: GUEST_DIR (default $BUILD/guest, BUILD default build/) is
# where deploy/guest/build-guest.sh puts the guest (built on first use);
# KEEP=1 keeps the run directory (serial log, dump) for inspection.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
GUEST_DIR=${GUEST_DIR:-$BUILD/guest}
# shellcheck source-path=SCRIPTDIR source=../../deploy/guest/guestlib.sh
source "$root/deploy/guest/guestlib.sh"

fail() { echo "guest.boot: FAIL: $*" >&2; exit 1; }

twg_check_prereqs || fail "prerequisites missing"

run=$(mktemp -d "/tmp/twg$$.XXXXXX")
cleanup() {
  local rc=$?
  twg_cleanup
  if [ "$rc" -ne 0 ] && [ -s "$run/serial.log" ]; then
    echo "--- last serial lines ($run/serial.log) ---" >&2
    tail -n 20 "$run/serial.log" >&2 || true
    [ -s "$run/qemu.log" ] && { echo "--- qemu.log ---" >&2; cat "$run/qemu.log" >&2; }
  fi
  if [ "${KEEP:-0}" = 1 ]; then echo "guest.boot: kept $run" >&2; else rm -rf "$run"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build guest ($GUEST_DIR) =="
bash "$root/deploy/guest/build-guest.sh" "$GUEST_DIR" || fail "build-guest.sh failed"

echo "== workload self-test (host): damaged pages are detected =="
out=$("$GUEST_DIR/memload" tw.mem_mb=8 tw.port=0 tw.dirty_mbps=0 tw.verify_mbps=64 \
      tw.hb_ms=1000 tw.run_s=1 tw.corrupt=5 || true)
grep -q '^TW-EXIT errors=5$' <<<"$out" || fail "memload did not report exactly 5 errors: $(tail -n 2 <<<"$out")"
out=$("$GUEST_DIR/memload" tw.mem_mb=8 tw.port=0 tw.dirty_mbps=64 tw.verify_mbps=64 \
      tw.hb_ms=1000 tw.run_s=1) || fail "memload on the host reported errors: $(tail -n 2 <<<"$out")"

echo "== boot (TCG, -m $TWG_MEM) =="
twg_setup_ns "twg$$-ns"
mem_mb=64
t0=$(twg_now_ms)
twg_start_guest "$GUEST_DIR" "$run" "tw.mem_mb=$mem_mb tw.dirty_mbps=8 tw.verify_mbps=16"
first=$(twg_wait_serial '^TW-HB ' 300) || fail "no heartbeat on the serial console"
t1=$(twg_now_ms)
boot_ms=$((t1 - t0))
echo "first heartbeat after ${boot_ms} ms (host clock, from QEMU start); guest t_ms=$(twg_field "$first" t_ms)"
grep -a '^TW-INIT eth0 ' "$run/serial.log" >/dev/null || fail "guest did not configure eth0"

echo "== heartbeat over TCP from the namespace =="
# shellcheck disable=SC2016 # the script is for the inner bash
lines=$(ip netns exec "$TWG_NS" timeout 20 bash -c \
  'exec 3<>"/dev/tcp/$0/$1" && head -n 20 <&3' "$TWG_GUEST_IP" "$TWG_HB_PORT") ||
  fail "could not read 20 heartbeat lines from $TWG_GUEST_IP:$TWG_HB_PORT"
prev=0
while read -r l; do
  [[ $l =~ ^TW-HB\ seq=([0-9]+)\ t_ms=[0-9]+\ verified=[0-9]+\ errors=([0-9]+)\ writes=[0-9]+$ ]] ||
    fail "bad heartbeat line over TCP: $l"
  [ "${BASH_REMATCH[1]}" -gt "$prev" ] || fail "heartbeat seq not increasing: $l"
  [ "${BASH_REMATCH[2]}" -eq 0 ] || fail "checksum errors over TCP: $l"
  prev=${BASH_REMATCH[1]}
done <<<"$lines"
echo "20 lines, last: $(tail -n 1 <<<"$lines")"

echo "== QMP and pmemsave =="
st=$(twg_qmp '{"execute":"query-status"}') || fail "QMP query-status"
grep -q '"status": "running"' <<<"$st" || fail "guest not running: $st"
dump_ms=$(twg_pmemsave "$run/mem.bin") || fail "pmemsave"
# memload's small-edit pages (60% of the region) start with "TWMEMLD1" ^ idx
# (little-endian): the bytes "MEMWT" survive the xor for idx < 2^24.
marks=$(grep -ao 'MEMWT' "$run/mem.bin" | wc -l)
expect=$((mem_mb * 256 * 55 / 100))
echo "dump $TWG_RAM_BYTES bytes in ${dump_ms} ms; $marks workload page headers (expect >= $expect)"
[ "$marks" -ge "$expect" ] || fail "the dump does not hold the workload's pages"
rm -f "$run/mem.bin"

echo "== run, then check the verifier =="
sleep 5
twg_guest_alive || fail "QEMU exited"
last=$(twg_last_hb)
echo "last heartbeat: $last"
[ "$(twg_field "$last" errors)" = 0 ] || fail "checksum errors: $last"
[ "$(twg_field "$last" verified)" -gt "$((mem_mb * 256))" ] || fail "verifier did not cover the region: $last"
[ "$(twg_field "$last" writes)" -gt 0 ] || fail "no page rewrites: $last"
! grep -aq '^TW-ERROR' "$run/serial.log" || fail "TW-ERROR on the serial console"

echo "guest.boot: PASS boot_to_first_heartbeat_ms=$boot_ms pmemsave_ms=$dump_ms"

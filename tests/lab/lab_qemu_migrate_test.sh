#!/usr/bin/env bash
# `tideway migrate` end to end (docs/migrate.md): a real QEMU VM (the test
# guest, docs/guest.md, under TCG) moves from site A to site B of the lab
# over the emulated WAN (10 ms each way, 100 Mbit/s) through two
# tideway-agents, one per site namespace, with mutual TLS. The VM's NIC is a
# TAP on the pool bridge vcp-mig (VXLAN between the sites, lab.sh pool); a
# client at site B keeps one TCP connection to the guest's heartbeat
# (memload, port 7000) for the whole test. Its disk is an image the agents
# serve and migrate ([[disks]] image, DISK_MB with DISK_DATA_MB written
# before boot), written by the guest all along (tw.diskload).
#
#   1. cancel: a migration cancelled during pre-copy rolls back; the VM runs
#      on at A, the connection too; nothing is left running at B.
#   2. WAN cut: the WAN partitioned during pre-copy (--wan-timeout 3) rolls
#      back the same way, and the VM keeps running at A.
#   3. migrate A -> B with smart stop and the codec, the VM arriving paused
#      (--paused --keep-source) so both RAMs can be dumped: they must be
#      identical byte for byte. Then `vm resume` at B: the heartbeat goes on
#      over the same TCP connection, the guest's verifier at 0 errors, the
#      report (JSON + SVG plot) holds iterations, downtime and encodings.
#      The disk went first (a full copy, then mirrored writes): both sites'
#      images are identical byte for byte while both copies are paused.
#   4. Negative control for 3: the dump comparison must catch a difference
#      (one byte changed in a copy of the destination's dump).
#   5. Unconfirmed switchover: back B -> A with A's agent restarted under
#      TIDEWAY_FAULTS=drop-resumed (A runs the VM after COMMIT but never
#      says so). The source must neither resume nor discard its copy: exit
#      code 4, phase "unconfirmed", the VM paused at B and running at A (the
#      heartbeat goes on, now from A), until the operator stops B's copy.
#      A still holds the image of the generation of 3: the disk copy back
#      is incremental (only blocks the guest wrote at B).
#   6. The baseline transport: A -> B with --transport qemu --xbzrle (QEMU's
#      own stream straight to B's QEMU over TCP): the report says so, the VM
#      runs at B on the same TCP connection with 0 verifier errors; and
#      --xbzrle without it is refused by the CLI.
# Prints the figures docs/migrate.md quotes (RESULT line). For benchmarks
# (tests/bench/migrate_lab.sh): ONLY_MIGRATE=1 skips 1, 2, 5 and 6, MIGRATE_ARGS
# adds flags to the migration (e.g. "--no-cbr --no-delta"), RATE_MBIT and
# DELAY_MS set the WAN (default 100 Mbit/s, 10 ms each way), DISK_MB=0 gives
# the VM no disk, DIRTY_MBPS sets the guest's dirty rate (default 4 MiB/s),
# HB_MS its heartbeat period (default 100 ms),
# and NO_PAUSE=1 lets the VM run at B the moment it arrives (no RAM dumps
# then: the guest's verifier is the check), so the heartbeat gap a client
# sees is measured. KEEP=1 keeps the run directory (agent logs, QEMU logs,
# report) for a look after a failure.
source "$(dirname "$0")/lab_lib.sh"
TIDEWAY_BIN="${TIDEWAY_BIN:-$REPO_ROOT/build/agent/tideway}"
AGENT_BIN="${AGENT_BIN:-$REPO_ROOT/build/agent/tideway-agent}"
GUEST_DIR="${GUEST_DIR:-$REPO_ROOT/build/guest}"
[ -x "$TIDEWAY_BIN" ] || fail "tideway CLI not built: $TIDEWAY_BIN"
[ -x "$AGENT_BIN" ] || fail "tideway-agent not built: $AGENT_BIN"
for c in jq cmp qemu-system-x86_64 openssl; do
  command -v "$c" >/dev/null || fail "$c not installed (deploy/install-deps.sh)"
done
bash "$REPO_ROOT/deploy/guest/build-guest.sh" "$GUEST_DIR" >/dev/null || fail "build-guest.sh failed"

VM=mig1 VM_MAC=52:54:00:42:00:10 VM_IP=192.168.88.10 CL_IP=192.168.88.20 POOL=mig
RAM_BYTES=$((524280 * 1024))

lab_up h5-q --delay-ms "${DELAY_MS:-10}" --rate-mbit "${RATE_MBIT:-100}" --wan-mtu 1550
CL="${P}b-cl"
# Unix socket paths must stay short (QEMU's QMP socket lives in run_dir).
TMPD="$(mktemp -d /tmp/twq.XXXXXX)"
AGENT_PIDS=() HB_PID="" LINK_PID=""
cleanup() {
  local rc=$?
  [ -z "$HB_PID" ] || kill "$HB_PID" 2>/dev/null || true
  [ -z "$LINK_PID" ] || kill "$LINK_PID" 2>/dev/null || true
  for pid in "${AGENT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${AGENT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  # QEMUs outlive their agent (a restart must not kill a VM): end ours.
  pkill -KILL -f -- "$TMPD/" 2>/dev/null || true
  sleep 0.3
  if [ $rc -ne 0 ]; then
    for f in agent-a.log agent-b.log; do
      echo "--- $f (tail) ---" >&2; grep -v '^  0x\|^Shadow\|^  [A-Z].*: *[0-9a-f ]*$' "$TMPD/$f" | tail -n 60 >&2 || true
    done
    for f in "$TMPD"/run-*/"$VM"/qemu.log "$TMPD"/run-*/"$VM"/serial.log; do
      [ -e "$f" ] && { echo "--- $f (tail) ---" >&2; tail -n 5 "$f" >&2; }
    done
  fi
  ip netns del "$CL" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMPD" >&2; else rm -rf -- "$TMPD"; fi
  set +e
  (exit $rc)
  lab_teardown
}
trap cleanup EXIT

"$LAB_SH" pool add "$POOL" --vni 4343 --prefix "$P" >/dev/null || fail "pool add"
ip netns add "$CL"
ip netns exec "$CL" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "${P}b" link add clport type veth peer name eth0 netns "$CL"
ip -n "$CL" link set lo up
ip -n "$CL" link set eth0 up
ip -n "$CL" addr add "$CL_IP/24" dev eth0
ip -n "${P}b" link set clport master "vcp-$POOL" up

bash "$REPO_ROOT/deploy/certs.sh" "$TMPD/pki" a b >/dev/null || fail "certs.sh"
# agent_toml SITE IP PEER PEER_IP
agent_toml() {
  cat <<EOF
site = "$1"
data_dir = "$TMPD/data-$1"
control_socket = "$TMPD/$1.sock"
[migration]
port = 7400
listen = "$2"
run_dir = "$TMPD/run-$1"
disk_dir = "$TMPD/disks-$1"
[sites.$3]
address = "$4"
[tls]
ca = "$TMPD/pki/ca.pem"
cert = "$TMPD/pki/$1.pem"
key = "$TMPD/pki/$1.key"
allowed_peers = ["$3"]
EOF
}
agent_toml a "$IP_A" b "$IP_B" >"$TMPD/a.toml"
agent_toml b "$IP_B" a "$IP_A" >"$TMPD/b.toml"
# start_agent SITE [ENV=VALUE...]: run SITE's agent in its namespace.
start_agent() {
  local s=$1; shift
  ip netns exec "${P}$s" env "$@" "$AGENT_BIN" -c "$TMPD/$s.toml" >>"$TMPD/agent-$s.log" 2>&1 &
  AGENT_PIDS+=($!)
}
tw() { local s=$1; shift; "$TIDEWAY_BIN" --socket "$TMPD/$s.sock" "$@"; }
# agent_up SITE: its control socket answers.
agent_up() {
  for _ in $(seq 1 100); do
    tw "$1" --json vm list >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
start_agent a
start_agent b
agent_up a && agent_up b || fail "agents did not start"

DISK_MB="${DISK_MB:-64}"
HAS_DISK=1 DISKLOAD=" tw.diskload=20"
[ "$DISK_MB" != 0 ] || HAS_DISK=0 DISKLOAD=""
{
cat <<EOF
name = "$VM"
memory = "524280K"
kernel = "$GUEST_DIR/vmlinuz"
initrd = "$GUEST_DIR/initramfs.cpio.gz"
append = "console=ttyS0 panic=-1 quiet tw.ip=$VM_IP/24 tw.mem_mb=64 tw.dirty_mbps=${DIRTY_MBPS:-4} tw.verify_mbps=16 tw.hb_ms=${HB_MS:-100}$DISKLOAD"
extra_args = ["-no-reboot"]
EOF
[ "$HAS_DISK" = 0 ] || cat <<EOF
[[disks]]
image = "$VM.img"
size = "${DISK_MB}M"
EOF
cat <<EOF
[[nics]]
mac = "$VM_MAC"
tap = "tap-$VM"
bridge = "vcp-$POOL"
ip = "$VM_IP"
EOF
} >"$TMPD/$VM.toml"
# The image before boot: random megabytes, some repeated (the codec's CBR
# finds those), the rest a hole.
mkdir -p "$TMPD/disks-a"
IMG_A="$TMPD/disks-a/$VM.img" IMG_B="$TMPD/disks-b/$VM.img"
if [ "$HAS_DISK" = 1 ]; then
  truncate -s "${DISK_MB}M" "$IMG_A"
  head -c $((4 << 20)) /dev/urandom >"$TMPD/chunk"
  for i in $(seq 0 $(( ${DISK_DATA_MB:-24} / 4 - 1 ))); do
    if [ $((i % 3)) = 2 ]; then src="$TMPD/chunk"; else src=/dev/urandom; fi
    dd if="$src" of="$IMG_A" bs=1M count=4 seek=$((i * 4)) conv=notrunc iflag=fullblock status=none
  done
  rm -f "$TMPD/chunk"
fi
tw a vm start "$TMPD/$VM.toml" >/dev/null || fail "vm start at A"

# The heartbeat over TCP from site B's client: one connection for the
# whole test (a reset or a new connection would show as a second "open").
# Each line is stamped with the client's arrival time (microseconds), so
# the gap a client sees during the switchover can be measured.
hb_log="$TMPD/hb.log"
# shellcheck disable=SC2016  # for the inner bash
ip netns exec "$CL" bash -c 'for i in $(seq 1 300); do
    exec 3<>/dev/tcp/'"$VM_IP"'/7000 2>/dev/null && {
      echo open
      while IFS= read -r l <&3; do echo "${EPOCHREALTIME/./} $l"; done
      exit 0
    }
    sleep 1
  done' >"$hb_log" 2>/dev/null &
HB_PID=$!
hb_count() { grep -c '^[0-9]* TW-HB ' "$hb_log" || true; }
hb_last() { grep '^[0-9]* TW-HB ' "$hb_log" | tail -n 1 | cut -d' ' -f2-; }
# hb_gap_ms FROM_MS: the longest wait between two heartbeats arriving after
# FROM_MS (epoch ms), at the client
hb_gap_ms() {
  awk -v from="$(( $1 * 1000 ))" '$2 == "TW-HB" && $1 >= from { if (prev) { d = $1 - prev; if (d > max) max = d } prev = $1 }
    END { printf "%.0f\n", max / 1000 }' "$hb_log"
}
# hb_gap_across_ms AT_MS: the gap at the client that spans AT_MS (epoch ms):
# from the last heartbeat before it to the first one after
hb_gap_across_ms() {
  awk -v at="$(( $1 * 1000 ))" '$2 == "TW-HB" { if ($1 < at) last = $1; else if (last) { printf "%.0f\n", ($1 - last) / 1000; done = 1; exit } }
    END { if (!done) print -1 }' "$hb_log"
}
hb_field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$(hb_last)"; }
# hb_grows SECONDS: the heartbeat advances within that time
hb_grows() {
  local n0 i
  n0="$(hb_count)"
  for i in $(seq 1 $(($1 * 10))); do
    [ "$(hb_count)" -gt "$n0" ] && return 0
    sleep 0.1
  done
  return 1
}
for _ in $(seq 1 600); do [ "$(hb_count)" -gt 0 ] && break; sleep 0.5; done
[ "$(hb_count)" -gt 0 ] || fail "no heartbeat from the guest at site A within 300 s"
sleep 3  # memload dirties memory for a while
hb_grows 5 || fail "heartbeat does not advance at A"
note "ok: guest runs at A, heartbeat over TCP from site B ($(hb_last))"

vm_state() { tw "$1" --json vm list | jq -r --arg n "$VM" '.vms[] | select(.name == $n) | .state'; }
phase_of() { jq -r .phase "$1"; }

if [ "${ONLY_MIGRATE:-0}" != 1 ]; then  # ONLY_MIGRATE=1: straight to 3 (debugging)
# --- 1. cancel during pre-copy -----------------------------------------------
tw a --json migrate "$VM" --to b --detach >/dev/null || fail "migrate --detach"
for _ in $(seq 1 100); do
  it="$(tw a --json migrate-status "$VM" | jq -r '.iteration // 0')"
  [ "${it:-0}" -ge 1 ] && break
  sleep 0.2
done
tw a migrate-cancel "$VM" >/dev/null || fail "migrate-cancel"
for _ in $(seq 1 100); do
  tw a --json migrate-status "$VM" >"$TMPD/cancel.json"
  case "$(phase_of "$TMPD/cancel.json")" in rolled-back|done|unconfirmed|failed) break ;; esac
  sleep 0.2
done
[ "$(phase_of "$TMPD/cancel.json")" = rolled-back ] || fail "cancel: phase $(phase_of "$TMPD/cancel.json")"
hb_grows 10 || fail "cancel: the heartbeat stopped"
[ "$(vm_state a)" = running ] || fail "cancel: VM at A is $(vm_state a)"
for _ in $(seq 1 50); do [ -z "$(vm_state b)" ] && break; sleep 0.2; done
[ -z "$(vm_state b)" ] || fail "cancel: site B still has the VM ($(vm_state b))"
note "ok: cancelled in iteration $it: rolled back, VM runs at A, nothing left at B"

# --- 2. WAN cut during pre-copy ----------------------------------------------
tw a --json migrate "$VM" --to b --detach --wan-timeout 3 >/dev/null || fail "migrate --detach (cut)"
for _ in $(seq 1 100); do
  it="$(tw a --json migrate-status "$VM" | jq -r '.iteration // 0')"
  [ "${it:-0}" -ge 1 ] && break
  sleep 0.2
done
"$LAB_SH" partition on --prefix "$P" >/dev/null || fail "partition on"
t_cut="$(date +%s%3N)"
for _ in $(seq 1 150); do
  tw a --json migrate-status "$VM" >"$TMPD/cut.json"
  case "$(phase_of "$TMPD/cut.json")" in rolled-back|done|unconfirmed|failed) break ;; esac
  sleep 0.2
done
t_rb="$(date +%s%3N)"
[ "$(phase_of "$TMPD/cut.json")" = rolled-back ] || fail "WAN cut: phase $(phase_of "$TMPD/cut.json")"
[ "$(vm_state a)" = running ] || fail "WAN cut: VM at A is $(vm_state a)"
"$LAB_SH" partition off --prefix "$P" >/dev/null || fail "partition off"
hb_grows 30 || fail "WAN cut: the heartbeat did not resume after the WAN healed"
for _ in $(seq 1 100); do [ -z "$(vm_state b)" ] && break; sleep 0.2; done
[ -z "$(vm_state b)" ] || fail "WAN cut: site B still has the VM ($(vm_state b))"
note "ok: WAN cut in iteration $it: rolled back after $((t_rb - t_cut)) ms ($(jq -r .error "$TMPD/cut.json")); VM runs at A"

fi
# --- 3. the migration ---------------------------------------------------------
opens_before="$(grep -c '^open' "$hb_log")"
PAUSE_ARGS="--paused --keep-source"
[ "${NO_PAUSE:-0}" != 1 ] || PAUSE_ARGS=""
# The link's bytes A -> B, sampled every 0.5 s while it migrates.
wanem_ctl reset-stats >/dev/null
link_log="$TMPD/link.log"
( while :; do echo "$(date +%s%3N) $(wanem_ctl stats | jq .a_to_b.forwarded_bytes)"; sleep 0.5; done ) >"$link_log" 2>/dev/null &
LINK_PID=$!
t0="$(date +%s%3N)"
# shellcheck disable=SC2086  # flag lists
tw a migrate "$VM" --to b $PAUSE_ARGS ${MIGRATE_ARGS:-} --report "$TMPD/report.json" --plot "$TMPD/plot.svg" \
  >"$TMPD/migrate.out" 2>&1 || { kill "$LINK_PID"; cat "$TMPD/migrate.out" >&2; fail "migrate A -> B failed"; }
t1="$(date +%s%3N)"
kill "$LINK_PID" 2>/dev/null; wait "$LINK_PID" 2>/dev/null || true
wanem_ctl stats >"$TMPD/link-stats.json"
link_ab="$(jq .a_to_b.forwarded_bytes "$TMPD/link-stats.json")" link_ba="$(jq .b_to_a.forwarded_bytes "$TMPD/link-stats.json")"
link_drops="$(jq '.a_to_b.dropped_queue_packets' "$TMPD/link-stats.json")"
# The busiest second on the link (the rate QEMU or the channel reached).
link_peak_mbit="$(awk '{ n++; t[n] = $1; b[n] = $2; for (i = n - 1; i >= 1; i--) if ($1 - t[i] >= 1000) {
    r = ($2 - b[i]) * 8 / ($1 - t[i]) / 1000; if (r > max) max = r; break } } END { printf "%.1f\n", max }' "$link_log")"
R="$TMPD/report.json"
[ "$(phase_of "$R")" = done ] || fail "migrate: phase $(phase_of "$R")"
if [ "${NO_PAUSE:-0}" = 1 ]; then
  hb_grows 15 || fail "no heartbeat after the migration to B"
  sleep 2
  hb_gap="$(hb_gap_ms "$t0")"
  # The source paused the VM switchover_ms before it heard RESUMED, which
  # ended the command: the gap across that moment is the client's downtime.
  paused_ms="$(jq -r --argjson t1 "$t1" '$t1 - (.switchover_ms | floor)' "$R")"
  hb_switch_gap="$(hb_gap_across_ms "$paused_ms")"
  [ "$(vm_state b)" = running ] || fail "VM at B is $(vm_state b)"
  [ "$(grep -c '^open' "$hb_log")" = "$opens_before" ] || fail "the heartbeat connection was re-opened (reset)"
  [ "$(hb_field errors)" = 0 ] || fail "guest verifier reports $(hb_field errors) errors after the migration"
  note "ok: VM runs at B, same TCP connection, verifier at 0 errors; heartbeat gap across the switchover $hb_switch_gap ms, longest during the migration $hb_gap ms ($(hb_last))"
else
[ "$(vm_state b)" = paused ] || fail "destination VM is $(vm_state b), expected paused (--paused)"
tw a vm dump "$VM" "$TMPD/a.ram" >/dev/null || fail "vm dump at A"
tw b vm dump "$VM" "$TMPD/b.ram" >/dev/null || fail "vm dump at B"
[ "$(stat -c %s "$TMPD/a.ram")" = "$RAM_BYTES" ] || fail "A's dump is $(stat -c %s "$TMPD/a.ram") bytes"
cmp -s "$TMPD/a.ram" "$TMPD/b.ram" || fail "destination RAM differs from the source's: $(cmp "$TMPD/a.ram" "$TMPD/b.ram" | head -1)"
note "ok: RAM at B identical to A's ($RAM_BYTES bytes)"
if [ "$HAS_DISK" = 1 ]; then
  jq -e '.disk.mode == "full" and .disk.blocks_sent > 0 and .disk.copy_ms > 0' "$R" >/dev/null ||
    fail "report: no full disk copy ($(jq -c .disk "$R"))"
  cmp -s "$IMG_A" "$IMG_B" || fail "the disk at B differs from A's: $(cmp "$IMG_A" "$IMG_B" | head -1)"
  note "ok: disk at B identical to A's ($(jq .disk.blocks_sent "$R") blocks copied in $(jq .disk.passes\|length "$R") passes, $(jq .disk.mirrored_writes "$R") writes mirrored)"
fi

# --- 4. the comparison can fail -------------------------------------------------
cp "$TMPD/b.ram" "$TMPD/b-damaged.ram"
printf '\xa5' | dd of="$TMPD/b-damaged.ram" bs=1 seek=$((RAM_BYTES / 3)) conv=notrunc status=none
if cmp -s "$TMPD/a.ram" "$TMPD/b-damaged.ram"; then fail "control: a damaged dump compared equal"; fi
note "ok: control: one changed byte is caught"
rm -f "$TMPD"/*.ram

hb_before="$(hb_field seq)"
tw b vm resume "$VM" >/dev/null || fail "vm resume at B"
tw a vm stop "$VM" >/dev/null || fail "vm stop at A"
hb_grows 15 || fail "no heartbeat after the resume at B"
sleep 3
hb_grows 5 || fail "heartbeat stopped at B"
[ "$(grep -c '^open' "$hb_log")" = "$opens_before" ] || fail "the heartbeat connection was re-opened (reset)"
errors="$(hb_field errors)"
[ "$errors" = 0 ] || fail "guest verifier reports $errors errors after the migration"
[ "$(hb_field seq)" -gt "$hb_before" ] || fail "heartbeat sequence did not advance"
[ "$(vm_state b)" = running ] || fail "VM at B is $(vm_state b)"
[ -z "$(vm_state a)" ] || [ "$(vm_state a)" = stopped ] || fail "VM at A is $(vm_state a) after vm stop"
note "ok: VM runs at B, same TCP connection, verifier at 0 errors ($(hb_last))"
fi

# The report: iterations, downtime, bytes by encoding, and a plot.
iters="$(jq '.iterations | length' "$R")"
min_iters=2  # smart stop iterates while the guest dirties memory
[ -z "${MIGRATE_ARGS:-}" ] || min_iters=1
[ "$iters" -ge "$min_iters" ] || fail "report: $iters iterations"
jq -e '.downtime_ms >= 0 and .wire_bytes > 0 and .stream_bytes > 0' "$R" >/dev/null || fail "report lacks downtime/bytes"
jq -e '.iterations[0].pages_sent > 0' "$R" >/dev/null || fail "report: no pages in iteration 1"
grep -q '<svg' "$TMPD/plot.svg" || fail "no SVG plot"
grep -q 'done' "$TMPD/migrate.out" || fail "migrate printed no final report"
note "ok: report with $iters iterations and an SVG plot"
cat "$TMPD/migrate.out" | tail -n $((iters + 6))
# --- 5. unconfirmed switchover (B -> A, A never confirms) ----------------------
if [ "${ONLY_MIGRATE:-0}" != 1 ]; then
kill "${AGENT_PIDS[0]}" && wait "${AGENT_PIDS[0]}" 2>/dev/null || true
start_agent a TIDEWAY_FAULTS=drop-resumed
agent_up a || fail "agent A did not restart"
grep -q "FAULT INJECTION ON" "$TMPD/agent-a.log" || fail "agent A did not announce the fault injection"
rc=0
tw b --json migrate "$VM" --to a --switchover-timeout 5 --wan-timeout 3 >"$TMPD/unconfirmed.json" 2>"$TMPD/unconfirmed.err" || rc=$?
[ "$rc" = 4 ] || { cat "$TMPD/unconfirmed.err" >&2; fail "unconfirmed switchover: exit code $rc, expected 4"; }
[ "$(phase_of "$TMPD/unconfirmed.json")" = unconfirmed ] || fail "unconfirmed: phase $(phase_of "$TMPD/unconfirmed.json")"
case "$(vm_state b)" in paused*) ;; *) fail "unconfirmed: the source's VM is '$(vm_state b)', must stay paused" ;; esac
[ "$(vm_state a)" = running ] || fail "unconfirmed: the VM at A is '$(vm_state a)'"
hb_grows 15 || fail "unconfirmed: no heartbeat (the VM should run at A)"
[ "$(grep -c '^open' "$hb_log")" = "$opens_before" ] || fail "unconfirmed: the heartbeat connection was re-opened"
note "ok: unconfirmed switchover: exit 4, B holds its copy paused ('$(vm_state b)'), A runs the VM ($(hb_last))"
U="$TMPD/unconfirmed.json"
jq -e '.disk.mode == "incremental"' "$U" >/dev/null || fail "the way back: disk copy $(jq -c .disk.mode "$U"), expected incremental"
[ "$(jq .disk.blocks_sent "$U")" -lt "$(jq .disk.blocks_sent "$R")" ] ||
  fail "incremental return sent $(jq .disk.blocks_sent "$U") blocks, the full copy $(jq .disk.blocks_sent "$R")"
note "ok: the way back was incremental: $(jq .disk.blocks_sent "$U") blocks ($(jq .disk.wire_bytes "$U") bytes) vs $(jq .disk.blocks_sent "$R") ($(jq .disk.wire_bytes "$R") bytes)"
tw b vm stop "$VM" >/dev/null || fail "vm stop of the unconfirmed copy at B"
hb_grows 5 || fail "heartbeat stopped after the operator stopped B's copy"
[ "$(hb_field errors)" = 0 ] || fail "guest verifier reports $(hb_field errors) errors after the way back"
# --- 6. the baseline transport: QEMU's own stream, with XBZRLE -----------------
# A -> B again with QEMU migrating straight to B's QEMU over TCP (the
# benchmarks' baseline): same handshake, pool and GARP, no codec.
tw a --json migrate "$VM" --to b --transport qemu --xbzrle --no-smart-stop >"$TMPD/qemu.json" 2>"$TMPD/qemu.err" ||
  { cat "$TMPD/qemu.err" >&2; fail "migrate --transport qemu --xbzrle failed"; }
Q="$TMPD/qemu.json"
jq -e '.phase == "done" and .transport == "qemu" and .stream_bytes > 0 and .wire_bytes == .stream_bytes
       and (.xbzrle | type) == "object" and .codec.records == 0' "$Q" >/dev/null ||
  fail "transport qemu: report $(jq -c '{phase, transport, stream_bytes, wire_bytes, xbzrle, records: .codec.records}' "$Q")"
[ "$(vm_state b)" = running ] || fail "transport qemu: the VM at B is '$(vm_state b)'"
hb_grows 15 || fail "transport qemu: no heartbeat from B"
sleep 2
[ "$(grep -c '^open' "$hb_log")" = "$opens_before" ] || fail "transport qemu: the heartbeat connection was re-opened"
[ "$(hb_field errors)" = 0 ] || fail "transport qemu: guest verifier reports $(hb_field errors) errors"
note "ok: transport qemu + XBZRLE: $(jq .iterations\|length "$Q") iterations, $(jq .stream_bytes "$Q") bytes," \
  "$(jq .xbzrle.pages "$Q") pages as XBZRLE; the VM runs at B on the same connection ($(hb_last))"
rc=0
tw a migrate "$VM" --to b --xbzrle >/dev/null 2>"$TMPD/xbzrle.err" || rc=$?
[ "$rc" = 2 ] && grep -q "transport qemu" "$TMPD/xbzrle.err" ||
  fail "--xbzrle without --transport qemu: exit $rc, $(cat "$TMPD/xbzrle.err")"
fi

echo "RESULT qemu_migrate: args=\"${MIGRATE_ARGS:-}\" total_ms=$((t1 - t0)) elapsed_ms=$(jq .elapsed_ms "$R") iterations=$iters" \
  "transport=$(jq -r .transport "$R") hb_gap_ms=${hb_gap:--1} hb_switch_gap_ms=${hb_switch_gap:--1}" \
  "link_ab_bytes=$link_ab link_ba_bytes=$link_ba link_drops=$link_drops" \
  "link_peak_mbit=$link_peak_mbit xbzrle_pages=$(jq '.xbzrle.pages // 0' "$R")" \
  "downtime_ms=$(jq .downtime_ms "$R") switchover_ms=$(jq .switchover_ms "$R")" \
  "stream_bytes=$(jq .stream_bytes "$R") wire_bytes=$(jq .wire_bytes "$R") stop=\"$(jq -r .stop_reason "$R")\"" \
  "cut_rollback_ms=$(( ${t_rb:-0} - ${t_cut:-0} ))" \
  "disk_blocks=$(jq '.disk.blocks_sent // 0' "$R") disk_wire_bytes=$(jq '.disk.wire_bytes // 0' "$R")" \
  "disk_copy_ms=$(jq '.disk.copy_ms // 0' "$R") disk_mirrored=$(jq '.disk.mirrored_writes // 0' "$R")" \
  "return_blocks=$(jq '.disk.blocks_sent // 0' "${U:-$R}")"

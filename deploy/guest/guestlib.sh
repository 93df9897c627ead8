# shellcheck shell=bash
# Helpers to run the Tideway test guest (docs/guest.md) in a network
# namespace of its own. Sourced by tests/guest/boot_test.sh and
# tests/bench/codec_images.sh; the caller owns cleanup and calls
# twg_cleanup from its EXIT trap.
#
# Layout (everything inside the namespace; nothing touches the host's
# network):
#   namespace NS: lo, tap0 10.0.0.1/24  <->  guest eth0 (virtio-net) 10.0.0.5/24
#   QMP: tcp 127.0.0.1:4444 inside NS (the namespace's own loopback)
#   heartbeat: tcp 10.0.0.5:7000 (memload), serial console to RUNDIR/serial.log

TWG_GUEST_IP=${TWG_GUEST_IP:-10.0.0.5}
TWG_HOST_IP=${TWG_HOST_IP:-10.0.0.1}
TWG_QMP_PORT=${TWG_QMP_PORT:-4444}
TWG_HB_PORT=${TWG_HB_PORT:-7000}
# QEMU 7.2 TCG loses dirty pages with RAM a multiple of 256 KiB (DESIGN.md
# section 7): 524280K, never -m 512.
TWG_MEM=${TWG_MEM:-524280K}
TWG_RAM_BYTES=$((524280 * 1024))

TWG_NS=""
TWG_QEMU_PID=""
TWG_RUN=""

twg_now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# Prints what is missing and returns 1; never skips silently.
twg_check_prereqs() {
  local missing=() c
  [ "$(id -u)" -eq 0 ] || missing+=("root (namespaces, TAP)")
  for c in qemu-system-x86_64 ip flock timeout; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  [ -c /dev/net/tun ] || missing+=("/dev/net/tun")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "guest: cannot run, missing: ${missing[*]} (deploy/install-deps.sh installs qemu-system-x86)" >&2
    return 1
  fi
}

# twg_setup_ns NAME: a namespace with tap0 as the guest's peer.
twg_setup_ns() {
  TWG_NS=$1
  ip netns add "$TWG_NS"
  ip -n "$TWG_NS" link set lo up
  # No IPv6 autoconfiguration chatter on the tap.
  ip netns exec "$TWG_NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$TWG_NS" tuntap add dev tap0 mode tap
  ip -n "$TWG_NS" addr add "$TWG_HOST_IP/24" dev tap0
  ip -n "$TWG_NS" link set tap0 up
}

# twg_start_guest GUEST_DIR RUNDIR "KERNEL_ARGS" [extra qemu args...]
# Starts QEMU (TCG) in TWG_NS in the background; serial to RUNDIR/serial.log,
# QEMU's own messages to RUNDIR/qemu.log.
twg_start_guest() {
  local gdir=$1 run=$2 kargs=$3
  shift 3
  TWG_RUN=$run
  : >"$run/serial.log"
  ip netns exec "$TWG_NS" qemu-system-x86_64 \
    -name tideway-test-guest -machine q35 -accel tcg -smp 1 -m "$TWG_MEM" \
    -nodefaults -display none -no-reboot \
    -kernel "$gdir/vmlinuz" -initrd "$gdir/initramfs.cpio.gz" \
    -append "console=ttyS0 panic=-1 quiet tw.ip=$TWG_GUEST_IP/24 $kargs" \
    -serial "file:$run/serial.log" \
    -qmp "tcp:127.0.0.1:$TWG_QMP_PORT,server=on,wait=off" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:05,romfile= \
    "$@" >"$run/qemu.log" 2>&1 &
  TWG_QEMU_PID=$!
}

twg_guest_alive() { [ -n "$TWG_QEMU_PID" ] && kill -0 "$TWG_QEMU_PID" 2>/dev/null; }

# twg_wait_serial REGEX TIMEOUT_S: prints the first matching serial line.
twg_wait_serial() {
  local re=$1 deadline=$(( $(twg_now_ms) + $2 * 1000 )) line
  while :; do
    line=$(grep -a -m1 -E "$re" "$TWG_RUN/serial.log" 2>/dev/null || true)
    if [ -n "$line" ]; then printf '%s\n' "${line%$'\r'}"; return 0; fi
    if ! twg_guest_alive; then
      echo "guest: QEMU exited while waiting for /$re/ (see $TWG_RUN/qemu.log)" >&2
      return 1
    fi
    [ "$(twg_now_ms)" -lt "$deadline" ] || { echo "guest: timeout waiting for /$re/ on the serial console" >&2; return 1; }
    sleep 0.05
  done
}

# The last heartbeat line on the serial console.
twg_last_hb() { grep -a '^TW-HB ' "$TWG_RUN/serial.log" | tail -n 1 | tr -d '\r'; }

# twg_field LINE KEY: the value of key=value in a heartbeat line.
twg_field() { local v; v=$(sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<"$1"); echo "${v:-}"; }

# twg_qmp 'JSON' ['JSON'...]: runs QMP commands in order over one
# connection; prints each command's reply (return or error) on one line,
# skipping events. Fails if the connection or a reply times out.
twg_qmp() {
  # shellcheck disable=SC2016 # the script is for the inner bash
  ip netns exec "$TWG_NS" timeout 300 bash -c '
    set -euo pipefail
    exec 3<>"/dev/tcp/127.0.0.1/$0"
    read -r -t 10 _greeting <&3
    reply() {
      local line
      while read -r -t 240 line <&3; do
        case "$line" in *"\"return\""*|*"\"error\""*) printf "%s\n" "$line" | tr -d "\r"; return 0 ;; esac
      done
      echo "qmp: no reply" >&2; return 1
    }
    printf "%s\n" "{\"execute\":\"qmp_capabilities\"}" >&3
    reply >/dev/null
    for c in "$@"; do printf "%s\n" "$c" >&3; reply; done
  ' "$TWG_QMP_PORT" "$@"
}

# twg_pmemsave FILE: stops the guest, dumps all of its RAM (physical 0 ..
# TWG_RAM_BYTES; q35 maps the first 2 GiB of RAM at 0) and resumes it.
# Prints the dump time in ms.
twg_pmemsave() {
  local f=$1 t0 t1 out
  t0=$(twg_now_ms)
  out=$(twg_qmp '{"execute":"stop"}' \
    "{\"execute\":\"pmemsave\",\"arguments\":{\"val\":0,\"size\":$TWG_RAM_BYTES,\"filename\":\"$f\"}}" \
    '{"execute":"cont"}')
  t1=$(twg_now_ms)
  if grep -q '"error"' <<<"$out"; then echo "guest: pmemsave failed: $out" >&2; return 1; fi
  [ "$(stat -c %s "$f" 2>/dev/null || echo 0)" -eq "$TWG_RAM_BYTES" ] ||
    { echo "guest: pmemsave wrote $(stat -c %s "$f" 2>/dev/null || echo no) bytes, expected $TWG_RAM_BYTES" >&2; return 1; }
  echo $((t1 - t0))
}

# Stops QEMU (QMP quit, then SIGTERM/SIGKILL to our own PID only) and
# deletes the namespace (and with it tap0). Safe to call twice.
twg_cleanup() {
  if twg_guest_alive; then
    twg_qmp '{"execute":"quit"}' >/dev/null 2>&1 || true
    local _
    for _ in $(seq 1 50); do twg_guest_alive || break; sleep 0.1; done
    if twg_guest_alive; then kill "$TWG_QEMU_PID" 2>/dev/null || true; sleep 1; fi
    if twg_guest_alive; then kill -9 "$TWG_QEMU_PID" 2>/dev/null || true; fi
    wait "$TWG_QEMU_PID" 2>/dev/null || true
  fi
  TWG_QEMU_PID=""
  if [ -n "$TWG_NS" ]; then
    ip netns del "$TWG_NS" 2>/dev/null || true
    TWG_NS=""
  fi
}

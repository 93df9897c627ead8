# shellcheck shell=bash disable=SC2034  # variables are for the sourcing test
# Shared by the lab tests (sourced). Each test brings up its own lab with a
# unique prefix, and always tears it down (trap EXIT), pass or fail.
#
# Environment (set by CMake; defaults for running by hand from the repo):
#   LAB_SH          deploy/lab.sh
#   TIDEWAY_WANEM   the emulator binary
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAB_SH="${LAB_SH:-$REPO_ROOT/deploy/lab.sh}"
export TIDEWAY_WANEM="${TIDEWAY_WANEM:-$REPO_ROOT/build/wan/wanem/tideway-wanem}"
TEST_NAME="$(basename "$0" .sh)"

fail() { printf 'FAIL %s: %s\n' "$TEST_NAME" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$TEST_NAME" "$*"; }

# Cannot run = fail, loudly: CI runs these as root, so a skip would hide a
# broken machine.
require_lab_machine() {
  [ "$(id -u)" = 0 ] || fail "must run as root (namespaces, TUN); these tests are LABELS root"
  [ -c /dev/net/tun ] || fail "/dev/net/tun missing (modprobe tun)"
  [ -x "$TIDEWAY_WANEM" ] || fail "emulator not built: $TIDEWAY_WANEM"
  for tool in ip ping iperf3 awk; do
    command -v "$tool" >/dev/null || fail "$tool not installed (deploy/install-deps.sh)"
  done
}

# lab_up TAG [lab.sh options...]: a fresh lab with prefix TAG+pid, torn down
# at exit. Sets P, NS_A, NS_B, IP_A, IP_B, CTL.
lab_up() {
  local tag="$1"; shift
  require_lab_machine
  P="${tag}$$-"
  trap lab_teardown EXIT
  "$LAB_SH" up --prefix "$P" "$@" || fail "lab.sh up failed"
  eval "$("$LAB_SH" env --prefix "$P")"
  NS_A="$TW_LAB_NS_A" NS_B="$TW_LAB_NS_B" IP_A="$TW_LAB_IP_A" IP_B="$TW_LAB_IP_B" CTL="$TW_LAB_CTL"
}

lab_teardown() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -n "${P:-}" ] && [ -r "/run/tideway-lab/$P/wanem.log" ]; then
    echo "--- emulator log (/run/tideway-lab/$P/wanem.log) ---" >&2
    tail -n 20 "/run/tideway-lab/$P/wanem.log" >&2 || true
  fi
  [ -z "${P:-}" ] || "$LAB_SH" down --prefix "$P" >/dev/null || echo "WARNING: lab.sh down failed" >&2
  if [ -n "${P:-}" ] && ip netns list | grep -q "^${P}[ab]\b"; then
    echo "FAIL $TEST_NAME: namespaces left behind after down" >&2
    rc=1
  fi
  exit $rc
}

wanem_ctl() { "$TIDEWAY_WANEM" ctl --control "$CTL" "$@"; }

# A counter from the emulator's stats: counter DIRECTION KEY
counter() {
  wanem_ctl stats | tr '{},' '\n' | awk -v d="\"$1\"" -v k="\"$2\"" '
    $0 ~ d ":" {in_dir = 1}
    in_dir && index($0, k ":") == 1 {split($0, a, ":"); print a[2]; exit}'
}

# Floating-point comparison: check "EXPR" (awk syntax), message on failure.
check() {
  awk "BEGIN { exit !($1) }" || fail "$2"
  note "ok: $2"
}

# ping_rtts NS ADDR COUNT INTERVAL -> one RTT (ms) per line
ping_rtts() {
  ip netns exec "$1" ping -n -c "$3" -i "$4" -W 2 "$2" | awk -F'time=' '/time=/ {split($2, a, " "); print a[1]}'
}

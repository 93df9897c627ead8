#!/usr/bin/env bash
# deploy/lab.sh — the two-site Tideway lab: a primary site and a backup site
# as network namespaces, joined by a WAN emulated by tideway-wanem.
#
# INTERFACE (used by tests and the demo; keep stable):
#
#   deploy/lab.sh up --prefix X [--delay-ms 25] [--rate-mbit 100] ...
#   ip netns exec Xa CMD          # runs CMD at the primary site (site A)
#   ip netns exec Xb CMD          # runs CMD at the backup site  (site B)
#   deploy/lab.sh down --prefix X
#
#   Namespaces   ${P}a (site A, primary), ${P}b (site B, backup); P defaults
#                to "tw-", so tw-a and tw-b.
#   WAN          device wan0 in each namespace, a /30 between them:
#                prefix "tw-": A 10.250.0.1, B 10.250.0.2 (10.250.0.0/30);
#                any other prefix gets its own /30 inside 10.250.0.0/16,
#                derived from the prefix (print it: deploy/lab.sh env --prefix X).
#   Bridge       br0 in each namespace, up, no address: attach host/VM
#                namespaces there, named ${P}a-NAME / ${P}b-NAME so that
#                down removes them too (docs/lab.md shows how).
#   Emulator     tideway-wanem in the background; pid, log and control
#                socket under /run/tideway-lab/${P}/.
#
# COMMANDS
#   up        create both sites and start the emulator (fails if the lab
#             with that prefix exists; cleans up after itself on failure)
#   down      stop the emulator and every process inside the lab, delete
#             both site namespaces, any namespace named ${P}a-* or ${P}b-*
#             (hosts attached to the sites, see docs/lab.md) and the run
#             dir; idempotent, also after a failed or half-done up
#   status    show namespaces, emulator, settings, counters (exit 1 if not up)
#   env       print shell assignments: TW_LAB_NS_A, TW_LAB_NS_B, TW_LAB_IP_A,
#             TW_LAB_IP_B, TW_LAB_CTL, TW_LAB_PID (eval "$(deploy/lab.sh env)")
#   stats     print the emulator's JSON counters
#   partition on|off [ab|ba]   cut or heal the WAN (both ways, or one way)
#   set [--delay-ms N] [--jitter-ms N] [--rate-mbit N] [--loss F] [--queue-kb N]
#             change link settings while running
#   pool add NAME --vni N   a virtual cloud pool spanning both sites: bridge
#             vcp-NAME at each site, VXLAN vx-NAME over wan0, each site
#             flooding to the other (needs up --wan-mtu 1550 for a 1500 MTU)
#   pool del NAME [--force] delete it at both sites (--force: with hosts attached)
#   pool join|leave NAME    add/remove the other site as a member, both sides
#   pool list               the pools at each site
#             (pool commands run `tideway pool` in the site namespaces and
#             print how long each reconfiguration took; docs/lab.md)
#
# OPTIONS
#   --prefix P       namespace prefix, [A-Za-z0-9_-]{1,12} (default tw-)
#   --delay-ms N     one-way delay each direction (default 25: RTT 50 ms)
#   --jitter-ms N    uniform +- jitter, never reorders (default 0)
#   --rate-mbit N    bottleneck rate each direction (default 100; 0 = unlimited)
#   --loss F         random loss per packet, 0.01 or 1% (default 0)
#   --queue-kb N     bottleneck tail-drop queue (default 0 = one BDP of the
#                    RTT, at least 2 ms at the rate and 64 KiB)
#   --seed N         loss/jitter seed (default random; printed in the log)
#   --threads 1|2    emulator threads (default 1; 2 = one per direction)
#   --offload M      auto|on|off TUN offloads (default auto)
#   --wan-mtu N      MTU of wan0 (default 1500; 1550 leaves room for VXLAN)
#   --wanem PATH     emulator binary (default $TIDEWAY_WANEM, else the one
#                    the lab was brought up with, else
#                    build/wan/wanem/tideway-wanem under the repo root)
#   --vni N          pool add: the pool's VXLAN network identifier (1-16777215)
#   --force          pool del: also when hosts are attached
#   --tideway PATH   the tideway CLI for pool commands (default $TIDEWAY_BIN,
#                    else build/agent/tideway under the repo root)
#
# It only ever creates, changes and deletes ${P}a, ${P}b (and at down the
# ${P}a-*/${P}b-* namespaces), the devices inside them and
# /run/tideway-lab/${P}/; it never touches the host's addresses,
# routes or sysctls, and the lab has no route out of its namespaces.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly RUN_BASE=/run/tideway-lab

# lab_env PID: the shell assignments other scripts eval (and up records).
lab_env() {
  cat <<EOF
TW_LAB_PREFIX=$PREFIX
TW_LAB_NS_A=$NS_A
TW_LAB_NS_B=$NS_B
TW_LAB_IP_A=$IP_A
TW_LAB_IP_B=$IP_B
TW_LAB_CTL=$CTL
TW_LAB_PID=$1
EOF
}

say() { printf 'lab: %s\n' "$*"; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# ---- arguments ---------------------------------------------------------------
CMD=""; SUBARGS=()
PREFIX="tw-"; DELAY_MS=25; JITTER_MS=0; RATE_MBIT=100; LOSS=0; QUEUE_KB=0
SEED=""; THREADS=1; OFFLOAD=auto; WAN_MTU=1500
WANEM="${TIDEWAY_WANEM:-}"
SET_ARGS=()
VNI=""; FORCE=0; TIDEWAY_CLI="${TIDEWAY_BIN:-}"

need_value() { if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see: deploy/lab.sh --help)"; fi; }
is_number() { [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]]; }

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help|help) usage; exit 0 ;;
    --prefix) need_value "$@"; PREFIX="$2"; shift 2 ;;
    --delay-ms) need_value "$@"; is_number "$2" || die "--delay-ms: '$2' is not a number"
      DELAY_MS="$2"; SET_ARGS+=("delay_ms=$2"); shift 2 ;;
    --jitter-ms) need_value "$@"; is_number "$2" || die "--jitter-ms: '$2' is not a number"
      JITTER_MS="$2"; SET_ARGS+=("jitter_ms=$2"); shift 2 ;;
    --rate-mbit) need_value "$@"; is_number "$2" || die "--rate-mbit: '$2' is not a number"
      RATE_MBIT="$2"; SET_ARGS+=("rate_mbit=$2"); shift 2 ;;
    --loss) need_value "$@"; [[ "$2" =~ ^[0-9]+([.][0-9]+)?%?$ ]] || die "--loss: '$2' is not a fraction or percentage"
      LOSS="$2"; SET_ARGS+=("loss=$2"); shift 2 ;;
    --queue-kb) need_value "$@"; is_number "$2" || die "--queue-kb: '$2' is not a number"
      QUEUE_KB="$2"; SET_ARGS+=("queue_kb=$2"); shift 2 ;;
    --seed) need_value "$@"; [[ "$2" =~ ^[0-9]+$ ]] || die "--seed: '$2' is not an integer"; SEED="$2"; shift 2 ;;
    --threads) need_value "$@"; [[ "$2" =~ ^[12]$ ]] || die "--threads must be 1 or 2"; THREADS="$2"; shift 2 ;;
    --offload) need_value "$@"; [[ "$2" =~ ^(auto|on|off)$ ]] || die "--offload must be auto, on or off"; OFFLOAD="$2"; shift 2 ;;
    --wan-mtu) need_value "$@"
      if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt 576 ] || [ "$2" -gt 9000 ]; then die "--wan-mtu must be 576..9000"; fi
      WAN_MTU="$2"; shift 2 ;;
    --wanem) need_value "$@"; WANEM="$2"; shift 2 ;;
    --vni) need_value "$@"
      if ! [[ "$2" =~ ^[0-9]{1,8}$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 16777215 ]; then die "--vni must be 1..16777215"; fi
      VNI="$2"; shift 2 ;;
    --force) FORCE=1; shift ;;
    --tideway) need_value "$@"; TIDEWAY_CLI="$2"; shift 2 ;;
    -*) die "unknown option '$1' (see: deploy/lab.sh --help)" ;;
    *) if [ -z "$CMD" ]; then CMD="$1"; else SUBARGS+=("$1"); fi; shift ;;
  esac
done
[ -n "$CMD" ] || { usage >&2; exit 2; }
[[ "$PREFIX" =~ ^[A-Za-z0-9_-]{1,12}$ ]] || die "--prefix '$PREFIX' must be 1-12 of [A-Za-z0-9_-]"

readonly NS_A="${PREFIX}a" NS_B="${PREFIX}b"
readonly RUN_DIR="$RUN_BASE/$PREFIX"
readonly CTL="$RUN_DIR/ctl.sock" PIDFILE="$RUN_DIR/wanem.pid" READY="$RUN_DIR/wanem.ready"
readonly LOG="$RUN_DIR/wanem.log"

# The emulator binary: --wanem, else $TIDEWAY_WANEM, else the one this lab
# was brought up with, else the default build location.
if [ -z "$WANEM" ] && [ -r "$RUN_DIR/lab.env" ]; then
  WANEM="$(sed -n 's/^TW_LAB_WANEM=//p' "$RUN_DIR/lab.env")"
fi
WANEM="${WANEM:-$REPO_ROOT/build/wan/wanem/tideway-wanem}"
case "$WANEM" in /*) ;; *) WANEM="$PWD/$WANEM" ;; esac

# The /30 of this prefix: "tw-" -> 10.250.0.0/30, others -> one of 16383
# other /30s in 10.250.0.0/16 chosen by a checksum of the prefix. Two labs
# never see each other's addresses (separate namespaces), so a collision
# would only matter if someone joined two labs; `env` prints the addresses.
if [ "$PREFIX" = "tw-" ]; then
  N=0
else
  N=$(( $(printf '%s' "$PREFIX" | cksum | cut -d' ' -f1) % 16383 + 1 ))
fi
readonly IP_A="10.250.$((N / 64)).$((N % 64 * 4 + 1))" IP_B="10.250.$((N / 64)).$((N % 64 * 4 + 2))"

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qxF "$1"; }
nsx() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

# The emulator pid, if it is alive and really ours (pid reuse safe).
wanem_pid() {
  local pid
  [ -r "$PIDFILE" ] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--ns-a $NS_A --ns-b $NS_B " || return 1
  echo "$pid"
}

ctl() { "$WANEM" ctl --control "$CTL" "$@"; }

# ---- down --------------------------------------------------------------------
do_down() {
  local pid did=0
  if pid="$(wanem_pid)"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then
      kill -KILL "$pid" 2>/dev/null || true
      say "emulator pid $pid did not stop on SIGTERM; killed"
    else
      say "stopped emulator pid $pid"
    fi
    did=1
  fi
  # The lab's namespaces: both sites, and the host/VM namespaces attached
  # to them by convention named ${P}a-NAME / ${P}b-NAME (docs/lab.md).
  local all_ns=() ns
  while read -r ns _; do
    case "$ns" in "$NS_A"-*|"$NS_B"-*) ;; *) continue ;; esac
    # ...unless it is a site of another lab whose prefix extends ours
    # (prefix "x-" must not take lab "x-a-"'s namespace "x-a-a").
    [ -d "$RUN_BASE/${ns%?}" ] && [[ "$ns" =~ [ab]$ ]] && continue
    all_ns+=("$ns")
  done < <(ip netns list 2>/dev/null)
  all_ns+=("$NS_A" "$NS_B")
  # Whatever still runs inside the lab (iperf3 servers, test daemons) goes
  # with it: a process left in a deleted namespace would hold it alive.
  local pids
  for ns in "${all_ns[@]}"; do
    ns_exists "$ns" || continue
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    [ -n "${pids// /}" ] || continue
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 30); do
      [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] || break
      sleep 0.1
    done
    pids="$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')"
    # shellcheck disable=SC2086
    [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
    say "stopped processes in $ns"
    did=1
  done
  for ns in "${all_ns[@]}"; do
    if ns_exists "$ns"; then
      ip netns del "$ns"
      say "deleted namespace $ns"
      did=1
    fi
  done
  if [ -d "$RUN_DIR" ]; then
    rm -rf -- "$RUN_DIR"
    say "removed $RUN_DIR"
    did=1
  fi
  rmdir "$RUN_BASE" 2>/dev/null || true
  [ "$did" = 1 ] || say "nothing to clean up for prefix '$PREFIX'"
}

# ---- up ----------------------------------------------------------------------
setup_site() {
  local ns="$1" ip="$2" peer="$3" role="$4"
  ip netns add "$ns"
  say "created namespace $ns ($role)"
  ip -n "$ns" link set lo up
  # IPv6 off: the lab is IPv4 only, and router solicitations, DAD and MLD
  # would otherwise add noise to every packet count.
  nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 \
    net.ipv6.conf.lo.disable_ipv6=1 2>/dev/null || say "warning: IPv6 sysctls missing in $ns (kernel without IPv6?)"
  # TCP autotuning maxima: one flow must fill 1 Gbit/s x (50 ms + a BDP of
  # queue) = 12.5 MB in flight; 64 MiB leaves room for the receive-window
  # overhead. net.core.[rw]mem_max are host-wide, so they are not touched:
  # autotuning does not need them (only explicit SO_RCVBUF does).
  # No metrics cache: one test's ssthresh must not leak into the next.
  nsx "$ns" sysctl -qw net.ipv4.tcp_rmem="4096 131072 67108864" \
    net.ipv4.tcp_wmem="4096 16384 67108864" net.ipv4.tcp_no_metrics_save=1 \
    net.ipv4.ip_forward=1
  # A persistent TUN: addresses survive an emulator restart, and the link
  # shows NO-CARRIER whenever the emulator is not attached.
  ip -n "$ns" tuntap add dev wan0 mode tun
  ip -n "$ns" link set wan0 mtu "$WAN_MTU" txqueuelen 1000 up
  ip -n "$ns" addr add "$ip/30" dev wan0
  ip -n "$ns" link add br0 type bridge
  ip -n "$ns" link set br0 up
  say "$ns: wan0 $ip/30 (peer $peer, mtu $WAN_MTU), br0 up, IPv6 off, TCP buffers raised"
}

do_up() {
  [ "$(id -u)" = 0 ] || die "must run as root (namespaces, TUN devices)"
  [ -c /dev/net/tun ] || die "/dev/net/tun is missing (modprobe tun)"
  [ -x "$WANEM" ] || die "emulator '$WANEM' not found or not executable; build it (ninja -C build tideway-wanem) or pass --wanem PATH / set TIDEWAY_WANEM"
  command -v ip >/dev/null || die "ip (iproute2) not found"
  for ns in "$NS_A" "$NS_B"; do
    ns_exists "$ns" && die "namespace $ns exists: lab '$PREFIX' is already up (deploy/lab.sh down --prefix $PREFIX)"
  done
  if wanem_pid >/dev/null; then die "an emulator for '$PREFIX' is running (deploy/lab.sh down --prefix $PREFIX)"; fi

  local ok=0
  # shellcheck disable=SC2317
  cleanup_failed_up() { if [ "$ok" != 1 ]; then say "up failed; cleaning up"; do_down || true; fi; }
  trap cleanup_failed_up EXIT
  trap 'exit 130' INT TERM

  mkdir -p "$RUN_DIR"
  chmod 0700 "$RUN_DIR"
  setup_site "$NS_A" "$IP_A" "$IP_B" "site A, primary"
  setup_site "$NS_B" "$IP_B" "$IP_A" "site B, backup"

  local args=(run --ns-a "$NS_A" --ns-b "$NS_B" --dev-a wan0 --dev-b wan0
              --delay-ms "$DELAY_MS" --jitter-ms "$JITTER_MS" --rate-mbit "$RATE_MBIT"
              --loss "$LOSS" --queue-kb "$QUEUE_KB" --threads "$THREADS" --offload "$OFFLOAD"
              --control "$CTL" --pidfile "$READY")
  [ -n "$SEED" ] && args+=(--seed "$SEED")
  setsid "$WANEM" "${args[@]}" </dev/null >"$LOG" 2>&1 &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  for _ in $(seq 1 100); do
    [ -e "$READY" ] && break
    [ -d "/proc/$pid" ] || break
    sleep 0.05
  done
  if [ ! -e "$READY" ]; then
    sed 's/^/lab:   | /' "$LOG" >&2 || true
    die "emulator did not start (log above: $LOG)"
  fi
  say "started emulator pid $pid: $WANEM ${args[*]}"
  grep -o 'seed=[0-9]*' "$LOG" | head -1 | sed 's/^/lab: emulator /' || true

  { lab_env "$pid"; echo "TW_LAB_WANEM=$WANEM"; } >"$RUN_DIR/lab.env"
  # One packet each way proves the path (unless the link drops it: retry).
  if ! nsx "$NS_A" ping -q -c 5 -i 0.2 -w 5 -W 3 "$IP_B" >/dev/null 2>&1 \
     && ! nsx "$NS_A" ping -q -c 1 -w 5 "$IP_B" >/dev/null 2>&1; then
    [ "$LOSS" != 0 ] || die "link check failed: $NS_A cannot ping $IP_B"
    say "warning: link check ping failed (loss is set to $LOSS)"
  fi
  ok=1
  trap - EXIT INT TERM
  local rtt
  rtt="$(awk "BEGIN{print 2*$DELAY_MS}")"
  say "up: $NS_A $IP_A <-> $NS_B $IP_B, delay $DELAY_MS ms each way (RTT $rtt ms)," \
    "jitter $JITTER_MS ms, rate $RATE_MBIT Mbit/s, loss $LOSS, queue $QUEUE_KB KiB (0 = one BDP)"
  say "try: ip netns exec $NS_A ping $IP_B; deploy/lab.sh down --prefix $PREFIX"
}

# ---- the rest ----------------------------------------------------------------
require_up() {
  wanem_pid >/dev/null || die "lab '$PREFIX' is not up (no emulator; deploy/lab.sh up --prefix $PREFIX)"
}

do_status() {
  local rc=0 pid
  for ns in "$NS_A" "$NS_B"; do
    if ns_exists "$ns"; then
      say "namespace $ns: $(ip -n "$ns" -4 -br addr show dev wan0 2>/dev/null | tr -s ' ')"
    else
      say "namespace $ns: missing"; rc=1
    fi
  done
  if pid="$(wanem_pid)"; then
    say "emulator pid $pid, control $CTL, log $LOG"
    say "config $(ctl config)"
    say "stats  $(ctl stats)"
  else
    say "emulator: not running"; rc=1
  fi
  return $rc
}

do_env() {
  lab_env "$(wanem_pid || true)"
}

# ---- pools: layer 2 between the sites ---------------------------------------
# `tideway pool` in one site namespace, its output prefixed with the site.
site_pool() {
  local site="$1" ns="$2"; shift 2
  ip netns exec "$ns" "$TIDEWAY_CLI" pool "$@" 2>&1 | sed "s/^/lab: site $site: /"
}

do_pool() {
  local sub="${SUBARGS[0]:-}" name="${SUBARGS[1]:-}"
  [ ${#SUBARGS[@]} -le 2 ] || die "usage: pool add|del|join|leave NAME, or pool list"
  [ -n "$sub" ] || die "usage: pool add|del|join|leave NAME, or pool list"
  [ "$sub" = list ] || [ -n "$name" ] || die "pool $sub needs a pool NAME"
  TIDEWAY_CLI="${TIDEWAY_CLI:-$REPO_ROOT/build/agent/tideway}"
  [ -x "$TIDEWAY_CLI" ] || die "tideway CLI '$TIDEWAY_CLI' not found; build it (ninja -C build tideway) or pass --tideway PATH / set TIDEWAY_BIN"
  for ns in "$NS_A" "$NS_B"; do ns_exists "$ns" || die "lab '$PREFIX' is not up ($ns missing)"; done
  case "$sub" in
    add)
      [ -n "$VNI" ] || die "pool add needs --vni N (the same at both sites)"
      site_pool A "$NS_A" create "$name" --vni "$VNI" --local "$IP_A" --dev wan0
      site_pool B "$NS_B" create "$name" --vni "$VNI" --local "$IP_B" --dev wan0
      site_pool A "$NS_A" add-site "$name" "$IP_B"
      site_pool B "$NS_B" add-site "$name" "$IP_A" ;;
    del)
      local force=()
      [ "$FORCE" = 1 ] && force=(--force)
      site_pool A "$NS_A" delete "$name" "${force[@]}"
      site_pool B "$NS_B" delete "$name" "${force[@]}" ;;
    join)
      site_pool A "$NS_A" add-site "$name" "$IP_B"
      site_pool B "$NS_B" add-site "$name" "$IP_A" ;;
    leave)
      site_pool A "$NS_A" remove-site "$name" "$IP_B"
      site_pool B "$NS_B" remove-site "$name" "$IP_A" ;;
    list)
      site_pool A "$NS_A" list
      site_pool B "$NS_B" list ;;
    *) die "unknown pool command '$sub' (add, del, join, leave, list)" ;;
  esac
}

case "$CMD" in
  up) [ ${#SUBARGS[@]} -eq 0 ] || die "up takes no words, only options"; do_up ;;
  down) do_down ;;
  status) do_status ;;
  env) do_env ;;
  stats) require_up; ctl stats ;;
  partition)
    if [ ${#SUBARGS[@]} -lt 1 ] || ! [[ "${SUBARGS[0]}" =~ ^(on|off)$ ]]; then die "usage: partition on|off [ab|ba]"; fi
    require_up
    out="$(ctl partition "${SUBARGS[@]}")" || die "$out"
    say "$out" ;;
  set)
    [ ${#SET_ARGS[@]} -gt 0 ] || die "set needs at least one of --delay-ms --jitter-ms --rate-mbit --loss --queue-kb"
    require_up
    out="$(ctl set "${SET_ARGS[@]}")" || die "$out"
    say "$out" ;;
  pool) do_pool ;;
  *) die "unknown command '$CMD' (up, down, status, env, stats, partition, set, pool; see --help)" ;;
esac

# shellcheck shell=bash
# A protected PostgreSQL in the two-site lab (sourced by the disaster test
# and the pgbench benchmark).
#
#   site A (${P}a): tideway-agent, the router in front of the application
#       ${P}a-app  PostgreSQL, data on ext4 / loop / the agent's FUSE tap
#       ${P}a-cli  the clients: outside the protected namespace, close to it
#       packets app0 -> clients pass the agent's NFQUEUE holder (FORWARD)
#   site B (${P}b): tideway-replicator; recovery happens here
#
# Daemons run with `nsenter --net` (not `ip netns exec`, which would give
# them a private mount namespace and hide the FUSE mount).
#
# Environment: BUILD (build dir with the binaries), LAB_SH, TIDEWAY_WANEM.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-$REPO_ROOT/build}"
LAB_SH="${LAB_SH:-$REPO_ROOT/deploy/lab.sh}"
export TIDEWAY_WANEM="${TIDEWAY_WANEM:-$BUILD/wan/wanem/tideway-wanem}"
source "$REPO_ROOT/tests/lib/daemon_configs.sh"
TIDEWAY="$BUILD/agent/tideway"
PGBIN=/usr/lib/postgresql/15/bin
APP_IP=10.77.1.2
CLI_IP=10.77.2.2
QUEUE=7

plog() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
pdie() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

require_protect_machine() {
  [ "$(id -u)" = 0 ] || pdie "must run as root (namespaces, FUSE, loop devices); this test is LABELS root"
  [ -c /dev/fuse ] || pdie "/dev/fuse missing"
  [ -x "$PGBIN/postgres" ] || pdie "PostgreSQL 15 missing (deploy/install-deps.sh)"
  for b in "$TIDEWAY" "$BUILD/agent/tideway-agent" "$BUILD/replicator/tideway-replicator" "$TIDEWAY_WANEM"; do
    [ -x "$b" ] || pdie "not built: $b"
  done
  id postgres >/dev/null 2>&1 || pdie "user postgres missing"
}

# protect_lab_up PREFIX [lab.sh up options]: the lab, the two extra
# namespaces, certificates. Sets P, W (work dir), NS_A, NS_B, IP_B.
protect_lab_up() {
  P="$1"; shift
  require_protect_machine
  W="$(mktemp -d /tmp/tw-protect.XXXXXX)"
  chmod 755 "$W"
  "$LAB_SH" up --prefix "$P" "$@" >/dev/null || pdie "lab.sh up failed"
  eval "$("$LAB_SH" env --prefix "$P")"
  NS_A="$TW_LAB_NS_A" NS_B="$TW_LAB_NS_B" IP_B="$TW_LAB_IP_B"
  local ns
  for ns in app cli; do
    ip netns add "${P}a-$ns"
    ip netns exec "${P}a-$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "${P}a-$ns" link set lo up
  done
  ip -n "$NS_A" link add app0 type veth peer name eth0 netns "${P}a-app"
  ip -n "$NS_A" link add cli0 type veth peer name eth0 netns "${P}a-cli"
  ip -n "$NS_A" addr add 10.77.1.1/24 dev app0
  ip -n "$NS_A" addr add 10.77.2.1/24 dev cli0
  ip -n "$NS_A" link set app0 up
  ip -n "$NS_A" link set cli0 up
  ip -n "${P}a-app" addr add "$APP_IP/24" dev eth0
  ip -n "${P}a-cli" addr add "$CLI_IP/24" dev eth0
  ip -n "${P}a-app" link set eth0 up
  ip -n "${P}a-cli" link set eth0 up
  ip -n "${P}a-app" route add default via 10.77.1.1
  ip -n "${P}a-cli" route add default via 10.77.2.1
  ip netns exec "$NS_A" sysctl -qw net.ipv4.ip_forward=1
  "$REPO_ROOT/deploy/certs.sh" "$W/pki" primary backup >/dev/null
}

# start_daemons: fresh replicator (site B) and agent (site A) with fresh
# data dirs under $W/run.
start_daemons() {
  local R="$W/run"
  rm -rf "$R"; mkdir -p "$R"
  tw_replicator_toml "$R/replicator.toml" "$R/replicator" "$R/replicator.sock" "$IP_B" 7300 "$W/pki"
  tw_agent_toml "$R/agent.toml" "$R/agent" "$R/agent.sock" "$IP_B" 7300 "$W/pki"
  nsenter --net="/run/netns/$NS_B" "$BUILD/replicator/tideway-replicator" -c "$R/replicator.toml" \
    >"$R/replicator.log" 2>&1 &
  REPL_PID=$!
  nsenter --net="/run/netns/$NS_A" "$BUILD/agent/tideway-agent" -c "$R/agent.toml" >"$R/agent.log" 2>&1 &
  AGENT_PID=$!
  local i
  for i in $(seq 100); do
    [ -S "$R/agent.sock" ] && [ -S "$R/replicator.sock" ] && return 0
    sleep 0.05
  done
  cat "$R/replicator.log" "$R/agent.log" >&2
  pdie "daemons did not start"
}

tw_agent() { "$TIDEWAY" --socket "$W/run/agent.sock" "$@"; }
tw_repl() { "$TIDEWAY" --replicator-socket "$W/run/replicator.sock" "$@"; }

# start_primary_pg MODE [SIZE]: protect the volume, make ext4 on it through
# the tap, initdb, start PostgreSQL in the app namespace.
start_primary_pg() {
  local mode="$1" size="${2:-1G}"
  mkdir -p "$W/mnt" "$W/pgfs"
  rm -f "$W/primary.img"
  tw_agent protect pg --volume "$W/primary.img" --size "$size" --mount "$W/mnt" --mode "$mode" \
    --app-iface app0 --queue "$QUEUE" >/dev/null || pdie "tideway protect failed"
  make_pg_cluster "$W/mnt/disk.img"
  nsenter --net="/run/netns/${P}a-app" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pgfs/data" \
    -l "$W/log/pg-primary.log" -w -t 60 start >/dev/null || { cat "$W/log/pg-primary.log" >&2; pdie "PostgreSQL did not start"; }
  PG_PID="$(head -1 "$W/pgfs/data/postmaster.pid")"
}

# make_pg_cluster FILE: ext4 on a loop device over FILE (mounted at
# $W/pgfs, device in LOOP) and a PostgreSQL cluster in $W/pgfs/data that
# listens on APP_IP and trusts the lab's addresses (replication included).
make_pg_cluster() {
  LOOP="$(losetup --find --show --direct-io=on "$1")"
  mkfs.ext4 -q -F "$LOOP"
  mount "$LOOP" "$W/pgfs"
  mkdir -p "$W/pgfs/data" "$W/sock" "$W/log"
  chown postgres:postgres "$W/pgfs/data" "$W/sock" "$W/log"
  runuser -u postgres -- "$PGBIN/initdb" --no-sync -D "$W/pgfs/data" -A trust >/dev/null
  cat >>"$W/pgfs/data/postgresql.conf" <<EOT
listen_addresses = '$APP_IP'
unix_socket_directories = '$W/sock'
shared_buffers = 32MB
max_connections = 100
EOT
  echo "host all all 10.0.0.0/8 trust" >>"$W/pgfs/data/pg_hba.conf"
  echo "host replication all 10.0.0.0/8 trust" >>"$W/pgfs/data/pg_hba.conf"
  sync  # initdb ran without fsync: push it to the volume (through the tap) now
}

# client CMD...: run a command in the client namespace.
client() { ip netns exec "${P}a-cli" "$@"; }

# disaster: the primary site is lost at once - its WAN uplink (packets on
# the wire included) and every process: agent (with its holder), database.
disaster() {
  "$LAB_SH" partition on --prefix "$P" >/dev/null
  kill -9 "$AGENT_PID" "$PG_PID" $(pgrep -P "$PG_PID" || true) 2>/dev/null || true
  wait "$AGENT_PID" 2>/dev/null || true
  AGENT_PID=""
}

# cleanup_primary: what a dead site leaves on this shared machine.
cleanup_primary() {
  if [ -n "${PG_PID:-}" ]; then
    kill -9 "$PG_PID" $(pgrep -P "$PG_PID" || true) 2>/dev/null || true
    PG_PID=""
  fi
  [ -n "${AGENT_PID:-}" ] && { kill -9 "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=""; }
  mountpoint -q "$W/pgfs" 2>/dev/null && umount -l "$W/pgfs"
  [ -n "${LOOP:-}" ] && { losetup -d "$LOOP" 2>/dev/null || true; LOOP=""; }
  mountpoint -q "$W/mnt" 2>/dev/null && { fusermount3 -u -z "$W/mnt" 2>/dev/null || umount -l "$W/mnt"; }
  return 0
}

# recover_at_backup OUT: promote, mount the image, start PostgreSQL on it
# and write the ids it holds to OUT. Sets RECOVERY to "ok", or to what was
# lost with the database: "no-filesystem", "no-database" or "no-table".
# Those are data loss, not test faults: async may lose everything written
# since the backup fell behind, even the table (seen in CI). The caller
# counts them as every acknowledged id lost.
recover_at_backup() {
  local out="$1" image
  : >"$out"
  RECOVERY=ok
  image="$(tw_repl --json promote pg | jq -r '.image')"
  [ -f "$image" ] || pdie "promote did not hand over an image"
  RLOOP="$(losetup --find --show "$image")"
  mkdir -p "$W/recover" "$W/rsock" "$W/log"
  chown postgres:postgres "$W/rsock" "$W/log"
  if ! mount "$RLOOP" "$W/recover"; then
    RECOVERY=no-filesystem
  else
    rm -f "$W/recover/data/postmaster.pid"  # the primary's, from before the crash
    if ! runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/recover/data" -l "$W/log/pg-recovered.log" -w -t 120 \
        -o "-c listen_addresses='' -c unix_socket_directories='$W/rsock'" start >/dev/null; then
      tail -n 20 "$W/log/pg-recovered.log" >&2 || true
      RECOVERY=no-database
    else
      local q="SELECT to_regclass('acked_ids') IS NOT NULL"
      case "$(runuser -u postgres -- psql -h "$W/rsock" -d postgres -Atc "$q")" in
        t) runuser -u postgres -- psql -h "$W/rsock" -d postgres -Atc "SELECT id FROM acked_ids" >"$out" ||
             pdie "cannot read acked_ids at the backup" ;;
        f) RECOVERY=no-table ;;
        *) pdie "cannot query the recovered database" ;;
      esac
      runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/recover/data" -m fast -w stop >/dev/null || true
    fi
    umount "$W/recover"
  fi
  losetup -d "$RLOOP"; RLOOP=""
}

stop_daemons() {
  [ -n "${AGENT_PID:-}" ] && { kill "$AGENT_PID" 2>/dev/null || true; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=""; }
  [ -n "${REPL_PID:-}" ] && { kill "$REPL_PID" 2>/dev/null || true; wait "$REPL_PID" 2>/dev/null || true; REPL_PID=""; }
  return 0
}

protect_lab_down() {
  cleanup_primary
  if [ -n "${RLOOP:-}" ]; then
    mountpoint -q "$W/recover" && umount -l "$W/recover"
    losetup -d "$RLOOP" 2>/dev/null || true
  fi
  [ -d "${W:-/nonexistent}/recover/data" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/recover/data" -m immediate stop >/dev/null 2>&1 || true
  stop_daemons
  [ -n "${P:-}" ] && "$LAB_SH" down --prefix "$P" >/dev/null 2>&1 || true
  if [ -n "${W:-}" ] && [ -d "$W" ]; then
    if [ -n "${KEEP_WORK:-}" ]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
  fi
  return 0
}

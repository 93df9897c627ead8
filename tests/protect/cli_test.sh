#!/usr/bin/env bash
# The daemons and the `tideway` CLI on loopback (no root needed): protect a
# volume through the NBD tap, write with a real client, check status,
# promote at the backup and compare the images; and every error path an
# operator meets: bad configs, unknown sites, duplicate names, bad
# arguments, unreachable daemons. Each must fail with a clear message and
# change nothing.
set -euo pipefail
source "$(dirname "$0")/../lib/daemon_configs.sh"
BUILD="${BUILD:?set BUILD to the build directory}"
TW="$BUILD/agent/tideway"
W="$(mktemp -d /tmp/tw-cli.XXXXXX)"
RP="" AP=""
cleanup() {
  set +e
  [ -n "$AP" ] && kill "$AP" && wait "$AP"
  [ -n "$RP" ] && kill "$RP" && wait "$RP"
  rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL cli_test: $*" >&2; exit 1; }
# expect_fail CODE PATTERN CMD...: CMD exits with CODE and says PATTERN.
expect_fail() {
  local code="$1" pattern="$2"; shift 2
  set +e
  out="$("$@" 2>&1)"; rc=$?
  set -e
  [ "$rc" = "$code" ] || fail "'$*' exited $rc, expected $code: $out"
  grep -q -- "$pattern" <<<"$out" || fail "'$*' did not say '$pattern': $out"
}
port=$(( 20000 + $$ % 20000 ))

# Bad configs: exit 2 with the file and what is wrong.
printf 'data_dir = "%s/x"\n[tls]\nplaintext_for_tests = true\n' "$W" >"$W/nosite.toml"
expect_fail 2 "site: required" "$BUILD/replicator/tideway-replicator" -c "$W/nosite.toml"
printf 'site = "a"\n[tls]\nplaintext_for_tests = true\n' >"$W/nobackup.toml"
expect_fail 2 "no \[backup.NAME\]" "$BUILD/agent/tideway-agent" -c "$W/nobackup.toml"
printf 'site = "a"\n[backup.b]\naddress = "127.0.0.1"\n[tls]\nca = "/nonexistent/ca.pem"\n' >"$W/badtls.toml"
expect_fail 2 "cannot read /nonexistent/ca.pem" "$BUILD/agent/tideway-agent" -c "$W/badtls.toml"
printf 'site = "a"\nport = \n' >"$W/syntax.toml"
expect_fail 2 "syntax.toml:2" "$BUILD/replicator/tideway-replicator" -c "$W/syntax.toml"

# An unreachable daemon: exit 3, says where it looked.
expect_fail 3 "cannot reach the daemon at $W/none.sock" "$TW" --socket "$W/none.sock" status

tw_replicator_toml "$W/r.toml" "$W/replicator" "$W/r.sock" 127.0.0.1 "$port" plaintext
tw_agent_toml "$W/a.toml" "$W/agent" "$W/a.sock" 127.0.0.1 "$port" plaintext
"$BUILD/replicator/tideway-replicator" -c "$W/r.toml" >"$W/r.log" 2>&1 & RP=$!
"$BUILD/agent/tideway-agent" -c "$W/a.toml" >"$W/a.log" 2>&1 & AP=$!
for _ in $(seq 200); do [ -S "$W/a.sock" ] && [ -S "$W/r.sock" ] && break; sleep 0.05; done
[ -S "$W/a.sock" ] || { cat "$W/a.log" >&2; fail "agent did not start"; }
# A second daemon on the same socket is refused.
expect_fail 1 "already listening" "$BUILD/agent/tideway-agent" -c "$W/a.toml"

A=("$TW" --socket "$W/a.sock")
R=("$TW" --replicator-socket "$W/r.sock")
"${A[@]}" protect vm1 --volume "$W/vm1.img" --size 16M --nbd-socket "$W/vm1.nbd" | grep -q "protecting vm1" ||
  fail "protect vm1"
expect_fail 1 "already protected" "${A[@]}" protect vm1 --volume "$W/other.img" --size 16M --nbd-socket "$W/o.nbd"
expect_fail 1 "already protected by" "${A[@]}" protect vm2 --volume "$W/vm1.img" --nbd-socket "$W/o.nbd"
expect_fail 1 "unknown backup site" "${A[@]}" protect vm3 --volume "$W/vm3.img" --size 16M --nbd-socket "$W/v3.nbd" --backup nowhere
expect_fail 1 "name: required, 1-64 characters" "${A[@]}" protect "bad/name" --volume "$W/x.img" --size 16M --nbd-socket "$W/x.nbd"
expect_fail 1 "volume: required, an absolute path" "${A[@]}" protect vm4 --volume rel.img --size 16M --nbd-socket "$W/x.nbd"
expect_fail 2 "needs a tap" "${A[@]}" protect vm5 --volume "$W/x.img" --size 16M
expect_fail 2 "--size" "${A[@]}" protect vm5 --volume "$W/x.img" --size 12Q --nbd-socket "$W/x.nbd"
expect_fail 105 "mode" "${A[@]}" protect vm5 --volume "$W/x.img" --mode fast --nbd-socket "$W/x.nbd"
[ ! -e "$W/x.img" ] && [ ! -e "$W/vm3.img" ] || fail "a refused protect created a volume"

# Real writes through the tap, then the counters.
qemu-io -f raw -c 'write -P 0x5a 0 1M' -c 'write -P 0xa5 8M 64k' -c flush \
  "nbd+unix:///vm1?socket=$W/vm1.nbd" >/dev/null || fail "qemu-io through the tap"
for _ in $(seq 100); do
  st="$("${A[@]}" --json status)"
  [ "$(jq '.protections[0].unacked_writes' <<<"$st")" = 0 ] && [ "$(jq -r '.protections[0].state' <<<"$st")" = protected ] && break
  sleep 0.05
done
jq -e '.protections[0] | .state == "protected" and .pending == 2 and .committed == 2 and .mode == "pipelined"' \
  <<<"$st" >/dev/null || fail "status after two writes: $st"
"${A[@]}" status | grep -qE '^vm1 +pipelined +protected +2 +2 ' || fail "human status: $("${A[@]}" status)"

# Promotion hands over an image identical to the primary.
expect_fail 1 "no backup volume named" "${R[@]}" promote nosuch
img="$("${R[@]}" --json promote vm1 | jq -r .image)"
cmp "$img" "$W/vm1.img" || fail "promoted image differs from the primary"
"${R[@]}" --json backup-status | jq -e '.volumes[0] | .promoted == true and .name == "vm1"' >/dev/null ||
  fail "backup-status after promote"

"${A[@]}" unprotect vm1 | grep -q "unprotected vm1" || fail "unprotect"
expect_fail 1 "not protected here" "${A[@]}" unprotect vm1
[ ! -S "$W/vm1.nbd" ] || fail "the NBD socket outlived unprotect"
# cbr-scan (offline, no daemon): 256 zero pages, then one random page 256
# times: the zeros are found, and all but the first copy are CBR hits.
expect_fail 105 "Path does not exist" "$TW" cbr-scan "$W/none.img"
head -c 1048576 /dev/zero >"$W/scan.img"
head -c 4096 /dev/urandom >"$W/page"
for _ in $(seq 256); do cat "$W/page"; done >>"$W/scan.img"
scan=$("$TW" --json cbr-scan -q --cache-mb 4 --sub-blocks 4 "$W/scan.img") || fail "cbr-scan failed"
[ "$(jq '.zero_pages' <<<"$scan")" = 256 ] || fail "cbr-scan: zero pages: $scan"
[ "$(jq '.rows[0].duplicate_sub_blocks' <<<"$scan")" = 1020 ] || fail "cbr-scan: duplicate sub-blocks: $scan"
"$TW" cbr-scan -q --cache-mb 4 --sub-blocks 4 "$W/scan.img" | grep -q "zero" || fail "cbr-scan: no table"

echo "PASS cli_test"

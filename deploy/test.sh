#!/usr/bin/env bash
# Runs every Tideway test on a fresh Debian 12 machine, as root:
#   1. installs the Debian packages it needs (deploy/install-deps.sh),
#   2. builds with AddressSanitizer + UndefinedBehaviorSanitizer (build/),
#   3. builds the QEMU test guest (deploy/guest/build-guest.sh, build/guest),
#      then runs ctest: unit, channel, and root namespace tests (the lab),
#   4. builds the libFuzzer targets with clang (build-fuzz/) and fuzzes each
#      decoder for a bounded time (TIDEWAY_FUZZ_SECONDS, default 30).
# Fails if any test fails or reports itself skipped: CI runs as root, so
# nothing it expects may skip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc)

if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: run as root: the lab tests create network namespaces and TUN devices" >&2
  exit 1
fi

bash deploy/install-deps.sh

echo "== build (ASan+UBSan) =="
cmake -S . -B build -G Ninja -DTIDEWAY_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build -j "$jobs"

# The QEMU tests' guest (kernel package from the archive), built once here
# in the host's network namespace: some tests run in namespaces of their own.
echo "== test guest =="
bash deploy/guest/build-guest.sh build/guest

echo "== fuzz build (clang, libFuzzer) =="
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DTIDEWAY_FUZZ=ON \
  -DTIDEWAY_FUZZ_SECONDS="${TIDEWAY_FUZZ_SECONDS:-30}" >/dev/null
ninja -C build-fuzz -j "$jobs"

# Leak checks stay on; asserts abort with a stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

netns_before=$(ip netns list 2>/dev/null | awk '{print $1}' | sort)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
echo "== tests =="
ctest --test-dir build -j "$jobs" --output-on-failure --timeout 600 2>&1 | tee "$log" || status=1
echo "== fuzz =="
ctest --test-dir build-fuzz --output-on-failure 2>&1 | tee -a "$log" || status=1

# A test that skips passes in ctest's eyes: treat it as a failure here.
if grep -E '\*\*\*Skipped|\[  SKIPPED \]|Not Run' "$log" >/dev/null; then
  echo "test.sh: some tests were skipped or not run:" >&2
  grep -E '\*\*\*Skipped|\[  SKIPPED \]|Not Run' "$log" >&2
  status=1
fi
# Leftovers from the lab tests would break the next run: check and say so.
left=$(comm -13 <(echo "$netns_before") <(ip netns list 2>/dev/null | awk '{print $1}' | sort))
if [ -n "$left" ]; then
  echo "test.sh: namespaces left behind by tests: $left" >&2
  status=1
fi
[ $status -eq 0 ] && echo "test.sh: all tests passed" || echo "test.sh: FAILED" >&2
exit $status

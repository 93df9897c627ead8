#!/usr/bin/env bash
# Installs every Debian package Tideway needs to build, test and run the lab.
# Idempotent: packages already present are skipped without touching apt.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  # libraries
  libboost-dev libssl-dev libzstd-dev libxxhash-dev libisal-dev
  libtomlplusplus-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # lab and tests
  iproute2 iptables iputils-ping iperf3 openssl procps psmisc jq
  # protect: taps, holder, real clients and databases
  libfuse3-dev fuse3 libnetfilter-queue-dev libmnl-dev libnbd-bin qemu-utils
  postgresql libpq-dev fio util-linux e2fsprogs
  # benchmark plots
  gnuplot-nox
  # migrate: the QEMU test guest (deploy/guest) and the codec's data images
  qemu-system-x86 busybox-static cpio debootstrap
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (apt-get install)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

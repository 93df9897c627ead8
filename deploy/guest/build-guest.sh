#!/usr/bin/env bash
# Builds the Tideway test guest (docs/guest.md) into OUTDIR:
#   OUTDIR/vmlinuz             Debian's cloud kernel (linux-image-*-cloud-amd64)
#   OUTDIR/initramfs.cpio.gz   busybox + /init + virtio modules + memload
#   OUTDIR/memload             the same workload binary (static), for host runs
#   OUTDIR/guest.env           what was built (kernel package, modules, key)
#
# Usage: build-guest.sh OUTDIR [--force]
#
# Idempotent: the artefacts are keyed on this script, the guest's /init and
# the workload source (and TW_GUEST_KERNEL_PKG if set); when OUTDIR already
# holds artefacts with the same key nothing is done. --force rebuilds.
# Concurrent runs on the same OUTDIR serialise on OUTDIR/.lock.
#
# Needs root only to install missing Debian packages (busybox-static, gcc,
# libc6-dev, cpio) and to fetch the kernel package with apt-get download. The
# kernel is unpacked with dpkg-deb -x under OUTDIR/cache, never installed
# into the host's /boot.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR [--force]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out=$1
force=0
[ "${2:-}" = "--force" ] && force=1
[ $# -le 2 ] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
workload_src=$root/tests/guest/memload.c
init_src=$here/init
# Modules the guest needs (their dependencies are added from modules.dep):
# PCI transport, the NIC, and the disk issue 5 attaches over NBD.
want_modules=(virtio_pci virtio_net virtio_blk)

log() { echo "build-guest: $*" >&2; }
die() { echo "build-guest: error: $*" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
exec 9>"$out/.lock"
flock 9

key=$( { sha256sum "${BASH_SOURCE[0]}" "$init_src" "$workload_src" | awk '{print $1}'
         echo "kernel=${TW_GUEST_KERNEL_PKG:-default}"; } | sha256sum | awk '{print $1}')
if [ "$force" = 0 ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.cpio.gz" ] &&
   [ -x "$out/memload" ] && [ "$(cat "$out/.build-key" 2>/dev/null)" = "$key" ]; then
  log "up to date in $out"
  exit 0
fi
rm -f "$out/.build-key"

# --- packages -------------------------------------------------------------
need_pkgs=(busybox-static gcc libc6-dev cpio)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing packages ${missing[*]} (run as root, or deploy/install-deps.sh)"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
busybox=/bin/busybox
[ -x "$busybox" ] || die "no $busybox (package busybox-static)"
case "$(ldd "$busybox" 2>&1 || true)" in
  *"not a dynamic"*) ;;
  *) die "$busybox is dynamically linked: the guest needs busybox-static" ;;
esac

# --- kernel ---------------------------------------------------------------
# The metapackage linux-image-cloud-amd64 points at the current versioned
# package; TW_GUEST_KERNEL_PKG pins one (e.g. linux-image-6.1.0-56-cloud-amd64).
cache=$out/cache
mkdir -p "$cache"
kpkg=${TW_GUEST_KERNEL_PKG:-}
if [ -z "$kpkg" ]; then
  resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
  kpkg=$(resolve)
  if [ -z "$kpkg" ]; then
    [ "$(id -u)" -eq 0 ] && apt-get update -qq
    kpkg=$(resolve)
  fi
  [ -n "$kpkg" ] || die "cannot resolve linux-image-cloud-amd64 (apt-get update?)"
fi
deb=$(find "$cache" -maxdepth 1 -name "${kpkg}_*_amd64.deb" | sort | tail -n 1)
if [ -z "$deb" ]; then
  log "downloading $kpkg"
  # Sandbox user root: the cache dir need not be readable by _apt.
  # The archive mirror is the one network this machine has; a lookup can
  # fail transiently (seen: "Temporary failure resolving"), so retry.
  for attempt in 1 2 3 4 5 6; do
    (cd "$cache" && apt-get -q -o APT::Sandbox::User=root download "$kpkg" >/dev/null) && break
    [ "$attempt" -lt 6 ] || die "apt-get download $kpkg failed 6 times"
    log "apt-get download failed (attempt $attempt), retrying in $((attempt * 5)) s"
    sleep $((attempt * 5))
  done
  deb=$(find "$cache" -maxdepth 1 -name "${kpkg}_*_amd64.deb" | sort | tail -n 1)
  [ -n "$deb" ] || die "apt-get download $kpkg left no .deb in $cache"
fi
kx=$cache/kernel
rm -rf "$kx"
mkdir -p "$kx"
dpkg-deb -x "$deb" "$kx"
vmlinuz=$(find "$kx/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n 1)
[ -n "$vmlinuz" ] || die "no vmlinuz in $deb"
kver=${vmlinuz##*/vmlinuz-}
moddir=$kx/lib/modules/$kver
# The package ships no modules.dep (depmod runs at install time): make one.
"$busybox" depmod -b "$kx" "$kver"
[ -s "$moddir/modules.dep" ] || die "depmod produced no modules.dep"

# --- initramfs tree -------------------------------------------------------
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/root
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,run,root,etc,lib/modules}

# Modules in dependency order: depth-first over modules.dep, each once.
# A module that is built in (modules.builtin) needs nothing.
declare -A seen=()
order=()
builtin_list=()
add_module() { # path relative to $moddir, e.g. kernel/drivers/net/virtio_net.ko
  local rel=$1 dep deps
  [ -n "${seen[$rel]:-}" ] && return 0
  seen[$rel]=1
  deps=$(awk -v m="$rel:" '$1 == m { $1 = ""; print }' "$moddir/modules.dep")
  for dep in $deps; do add_module "$dep"; done
  order+=("$rel")
}
for m in "${want_modules[@]}"; do
  rel=$(awk -F: -v m="$m" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n);
          gsub(/-/, "_", n); if (n == m) { print $1; exit } }' "$moddir/modules.dep")
  if [ -n "$rel" ]; then
    add_module "$rel"
  elif grep -Eq "/${m//_/[-_]}\.ko$" "$moddir/modules.builtin"; then
    builtin_list+=("$m")
  else
    die "module $m is neither a module nor built in to $kver"
  fi
done
: >"$tree/lib/modules/load.order"
names=()
for rel in "${order[@]}"; do
  case "$rel" in *.ko) ;; *) die "compressed module $rel: not supported (busybox insmod)";; esac
  name=${rel##*/}
  name=${name%.ko}
  cp "$moddir/$rel" "$tree/lib/modules/$name.ko"
  echo "$name" >>"$tree/lib/modules/load.order"
  names+=("$name")
done
log "kernel $kver; modules: ${names[*]}; built in: ${builtin_list[*]:-none}"

# busybox with every applet as a symlink (ash, ip, insmod, mount, ...).
cp "$busybox" "$tree/bin/busybox"
for a in $("$busybox" --list); do
  [ "$a" = busybox ] || ln -s busybox "$tree/bin/$a"
done
install -m 0755 "$init_src" "$tree/init"
# /dev/console must exist before /init runs, or init has no stdio.
mknod -m 600 "$tree/dev/console" c 5 1 2>/dev/null ||
  log "warning: cannot mknod dev/console (not root?); /init may lack a console"

# The workload: static so the initramfs needs no libc.
gcc -static -O2 -Wall -Wextra -Werror -o "$work/memload" "$workload_src"
strip "$work/memload"
install -m 0755 "$work/memload" "$tree/bin/memload"

# Fixed mtimes, sorted names, owner root, gzip -n: the same inputs give a
# byte-identical initramfs.
find "$tree" -exec touch -h -d @0 {} +
(cd "$tree" && find . -mindepth 1 | LC_ALL=C sort |
  cpio --quiet -o -H newc --reproducible --owner=0:0) | gzip -9n >"$work/initramfs.cpio.gz"

# Publish atomically-ish: the key last, so an interrupted build rebuilds.
install -m 0644 "$vmlinuz" "$out/vmlinuz"
mv "$work/initramfs.cpio.gz" "$out/initramfs.cpio.gz"
install -m 0755 "$work/memload" "$out/memload"
cat >"$out/guest.env" <<EOF
# written by deploy/guest/build-guest.sh
KERNEL_PKG=$kpkg
KERNEL_DEB=${deb##*/}
KERNEL_VERSION=$kver
MODULES="${names[*]}"
BUILTIN="${builtin_list[*]:-}"
KEY=$key
EOF
rm -rf "$kx" # keep the .deb, not the unpacked tree
echo "$key" >"$out/.build-key"
log "built $out (vmlinuz $(stat -c %s "$out/vmlinuz") B, initramfs $(stat -c %s "$out/initramfs.cpio.gz") B)"

#!/usr/bin/env bash
# Builds the realistic data images for the codec's compression-ratio
# measurement (issue 4; docs/benchmarks.md "Test guest and data images"):
#
#   OUTDIR/debian-ext4.img      a sparse ext4 image (default 2 GiB) holding an
#                               installed Debian tree (debootstrap; fallback:
#                               .deb files from apt-get download, extracted)
#   OUTDIR/guest-mem-boot.bin   QMP pmemsave of the whole RAM of the test guest
#                               (docs/guest.md) right after its first heartbeat
#   OUTDIR/guest-mem-run.bin    the same guest after the workload ran a while
#   OUTDIR/images.env           how each image was made (method, sizes, dates)
#
# Usage: codec_images.sh OUTDIR [options]   (root: loop devices, namespaces)
#   --only disk|mem     build one kind only
#   --force             rebuild images that exist
#   --size-gib N        ext4 image size (default 2)
#   --method debootstrap|extract
#                       how to fill the ext4 image (default debootstrap, with
#                       the extract fallback when it fails)
#   --run-s N           seconds of workload before the "run" dump (default 60)
#   --mem-mb N          workload region (default 128) and --dirty-mbps N
#                       rewrite rate (default 8) of the guest
#   --guest-dir DIR     where build-guest.sh builds the guest
#                       (default build/guest)
#
# Every loop device, mount, namespace and QEMU this script creates is removed
# on every exit path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source-path=SCRIPTDIR source=../../deploy/guest/guestlib.sh
source "$root/deploy/guest/guestlib.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "codec_images: error: $*" >&2; exit 1; }
log() { echo "codec_images: $*" >&2; }

[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
out=$1
shift
only="" force=0 size_gib=2 method=debootstrap run_s=60 mem_mb=128 dirty_mbps=8
guest_dir=$root/build/guest
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    --force) force=1; shift ;;
    --size-gib) size_gib=$2; shift 2 ;;
    --method) method=$2; shift 2 ;;
    --run-s) run_s=$2; shift 2 ;;
    --mem-mb) mem_mb=$2; shift 2 ;;
    --dirty-mbps) dirty_mbps=$2; shift 2 ;;
    --guest-dir) guest_dir=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "codec_images: unknown option $1" >&2; usage ;;
  esac
done
case "$only" in ""|disk|mem) ;; *) die "--only takes disk or mem" ;; esac
case "$method" in debootstrap|extract) ;; *) die "--method takes debootstrap or extract" ;; esac
[ "$(id -u)" -eq 0 ] || die "run as root (loop devices, mounts, namespaces)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
env_file=$out/images.env
touch "$env_file"
# images.env: KEY=VALUE lines; recording a key replaces its old value.
record() { sed -i "/^$1=/d" "$env_file"; echo "$1=$2" >>"$env_file"; }

# --- cleanup of everything we create ---------------------------------------
mnt="" loopdev="" memrun=""
cleanup() {
  local rc=$?
  twg_cleanup
  [ -z "$memrun" ] || rm -rf "$memrun"
  if [ -n "$mnt" ] && mountpoint -q "$mnt"; then
    # debootstrap mounts proc/sys/dev/pts inside the target: all of them.
    umount -R "$mnt" 2>/dev/null || umount -R -l "$mnt" 2>/dev/null || true
  fi
  if [ -n "$loopdev" ]; then losetup -d "$loopdev" 2>/dev/null || true; fi
  if [ -n "$mnt" ]; then rmdir "$mnt" 2>/dev/null || true; fi
  [ "$rc" -eq 0 ] || log "FAILED (rc=$rc); partial images are not marked done"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- (a) ext4 image with an installed Debian tree --------------------------

# The mirror apt uses for the release itself (not -security or -updates),
# from deb822 .sources files or one-line .list files.
apt_mirror() {
  local codename=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$codename" '
      /^[ \t]*$/ { if (ok && uri != "" && main) { print uri; exit } ok = 0; uri = ""; main = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
      /^Components:/ { for (i = 2; i <= NF; i++) if ($i == "main") main = 1 }
      END { if (ok && uri != "" && main) print uri }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/\[[^]]*\]//' "$f" | awk -v s="$codename" '$1 == "deb" && $3 == s { print $2 }'
  done
}

# Fallback filler: the .deb files of a server-like package set with all
# their dependencies (apt-get download), unpacked with dpkg-deb -x. No
# maintainer scripts run, so the tree is "unpacked", not "configured".
fill_extract() {
  local target=$1 cache=$out/debcache/extract
  local base=(base-files base-passwd bash coreutils dash debianutils diffutils
              dpkg e2fsprogs findutils grep gzip hostname init-system-helpers
              libc-bin login mount ncurses-base passwd perl-base sed sysvinit-utils
              tar util-linux apt systemd systemd-sysv udev iproute2 ifupdown
              openssh-server python3 less curl ca-certificates locales tzdata
              vim-tiny procps cron rsyslog logrotate man-db)
  mkdir -p "$cache"
  # The set with all dependencies from the local apt lists (virtual packages
  # are listed as <name> and left out), then only names that have a
  # candidate version (apt-get download fails on any other).
  local pkgs=() real=()
  mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
           --no-breaks --no-replaces --no-enhances "${base[@]}" 2>/dev/null |
         awk '/^[a-z0-9]/ && !/:i386$/ { print $1 }' | sort -u)
  mapfile -t real < <(apt-cache show --no-all-versions "${pkgs[@]}" 2>/dev/null |
         awk '/^Package:/ { print $2 }' | sort -u)
  [ ${#real[@]} -gt 0 ] || die "extract: no packages resolved (apt-get update?)"
  log "extract: downloading ${#real[@]} packages"
  (cd "$cache" && apt-get -q -o APT::Sandbox::User=root download "${real[@]}" >/dev/null) ||
    die "apt-get download failed"
  local deb
  for deb in "$cache"/*.deb; do dpkg-deb -x "$deb" "$target"; done
  echo "${#real[@]}"
}

build_disk() {
  local img=$out/debian-ext4.img
  if [ "$force" = 0 ] && [ -f "$img" ] && [ -f "$img.done" ]; then
    log "disk image up to date: $img"
    return 0
  fi
  rm -f "$img" "$img.done"
  local codename mirror t0 used how
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  mirror=$(apt_mirror "$codename" | head -n 1)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  log "disk: ${size_gib} GiB sparse ext4, Debian $codename from $mirror"
  truncate -s "${size_gib}G" "$img"
  # Initialise inode tables now, so no background thread writes later.
  mkfs.ext4 -q -F -L tideway-debian -E lazy_itable_init=0,lazy_journal_init=0 "$img"
  loopdev=$(losetup --find --show "$img")
  mnt=$(mktemp -d "/tmp/twci$$.XXXXXX")
  mount "$loopdev" "$mnt"
  t0=$(date +%s)
  how=""
  if [ "$method" = debootstrap ]; then
    mkdir -p "$out/debcache/debootstrap"
    # Default variant (Priority required + important) plus a few packages a
    # server image has; .debs are cached so a rebuild needs no download.
    if debootstrap --cache-dir="$out/debcache/debootstrap" \
         --include=openssh-server,python3,less,curl,ca-certificates,vim-tiny \
         "$codename" "$mnt" "$mirror" >"$out/debootstrap.log" 2>&1; then
      how="debootstrap $codename $mirror (default variant + openssh-server,python3,less,curl,ca-certificates,vim-tiny)"
    else
      log "debootstrap failed (see $out/debootstrap.log); falling back to extracting .deb files"
      umount -R "$mnt" 2>/dev/null || true
      mount "$loopdev" "$mnt" 2>/dev/null || true
      find "$mnt" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
    fi
  fi
  if [ -z "$how" ]; then
    local n
    n=$(fill_extract "$mnt")
    how="extract: dpkg-deb -x of $n packages (apt-get download, server set with dependencies)"
  fi
  # Drop debootstrap's package cache from the image if any: the tree should be
  # an installed system, not its downloads.
  rm -f "$mnt"/var/cache/apt/archives/*.deb
  used=$(df -B1 --output=used "$mnt" | tail -n 1 | tr -d ' ')
  sync
  umount -R "$mnt"
  rmdir "$mnt"
  mnt=""
  losetup -d "$loopdev"
  loopdev=""
  e2fsck -fn "$img" >/dev/null 2>&1 || die "e2fsck found errors in $img"
  record DISK_IMAGE "$img"
  record DISK_METHOD "\"$how\""
  record DISK_SIZE_BYTES "$(stat -c %s "$img")"
  record DISK_ALLOCATED_BYTES "$(( $(stat -c %b "$img") * $(stat -c %B "$img") ))"
  record DISK_FS_USED_BYTES "$used"
  record DISK_BUILD_S "$(( $(date +%s) - t0 ))"
  record DISK_DATE "$(date -u +%FT%TZ)"
  touch "$img.done"
  log "disk: done ($how; fs used $((used / 1048576)) MiB)"
}

# --- (b) memory dumps of the running test guest ----------------------------
build_mem() {
  local boot=$out/guest-mem-boot.bin runf=$out/guest-mem-run.bin
  if [ "$force" = 0 ] && [ -f "$boot.done" ] && [ -f "$runf.done" ]; then
    log "memory dumps up to date"
    return 0
  fi
  rm -f "$boot" "$runf" "$boot.done" "$runf.done"
  twg_check_prereqs || die "cannot run the guest"
  bash "$root/deploy/guest/build-guest.sh" "$guest_dir"
  local first t0 hb ms
  memrun=$(mktemp -d "/tmp/twci$$.run.XXXXXX")
  twg_setup_ns "twci$$-ns"
  t0=$(twg_now_ms)
  twg_start_guest "$guest_dir" "$memrun" "tw.mem_mb=$mem_mb tw.dirty_mbps=$dirty_mbps"
  first=$(twg_wait_serial '^TW-HB ' 300) || die "guest did not boot"
  log "guest: first heartbeat after $(( $(twg_now_ms) - t0 )) ms: $first"
  ms=$(twg_pmemsave "$boot")
  hb=$(twg_last_hb)
  record MEM_BOOT_IMAGE "$boot"
  record MEM_BOOT_HEARTBEAT "\"$hb\""
  record MEM_BOOT_PMEMSAVE_MS "$ms"
  touch "$boot.done"
  log "guest: boot dump in $ms ms; running the workload ${run_s} s"
  sleep "$run_s"
  twg_guest_alive || die "guest died"
  ms=$(twg_pmemsave "$runf")
  hb=$(twg_last_hb)
  [ "$(twg_field "$hb" errors)" = 0 ] || die "guest reports checksum errors: $hb"
  record MEM_RUN_IMAGE "$runf"
  record MEM_RUN_HEARTBEAT "\"$hb\""
  record MEM_RUN_PMEMSAVE_MS "$ms"
  record MEM_GUEST "\"-m $TWG_MEM tw.mem_mb=$mem_mb tw.dirty_mbps=$dirty_mbps run_s=$run_s $(grep '^KERNEL_PKG=' "$guest_dir/guest.env")\""
  record MEM_DATE "$(date -u +%FT%TZ)"
  touch "$runf.done"
  twg_cleanup
  cp "$memrun/serial.log" "$out/guest-serial.log"
  rm -rf "$memrun"
  memrun=""
  log "guest: run dump in $ms ms ($hb)"
}

[ "$only" = mem ] || build_disk
[ "$only" = disk ] || build_mem
ls -ls "$out"/*.img "$out"/*.bin 2>/dev/null >&2 || true

#!/usr/bin/env bash
# The codec's compression ratio on realistic data (issue 4; docs/benchmarks.md
# "Codec ratio on realistic data"): runs tideway-cbr-scan on the images that
# tests/bench/codec_images.sh built, with CBR caches of 100 MiB and 1 GiB (the
# paper's sizes), and keeps the reports.
#
# Usage: codec_ratio.sh IMAGES_DIR [--scan PATH] [--out DIR] [--cache-mb N ...] [-- SCAN_ARGS]
#   IMAGES_DIR   holds debian-ext4.img, guest-mem-boot.bin, guest-mem-run.bin
#                (those present are scanned)
#   --scan PATH  the tideway-cbr-scan binary (default: the first found in
#                build-codec-rel/, build-rel/, build/)
#   --out DIR    where the reports go (default IMAGES_DIR/ratio): per image
#                NAME.txt (the tool's table) and NAME.json (--json), plus
#                machine.txt (date, CPU, kernel, tool)
#   --cache-mb N cache size in MiB, repeatable (default 100 and 1024)
#   -- SCAN_ARGS more arguments for tideway-cbr-scan, e.g. -- --zstd-level 0
#                (CBR and zero pages alone, no zstd)
#
# Needs no root (reads the images only).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
die() { echo "codec_ratio: error: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
images=$1
shift
scan="" out="" caches=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; extra=("$@"); break ;;
    --scan) scan=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --cache-mb) caches+=("$2"); shift 2 ;;
    -h|--help) usage ;;
    *) echo "codec_ratio: unknown option $1" >&2; usage ;;
  esac
done
[ ${#caches[@]} -gt 0 ] || caches=(100 1024)
[ -d "$images" ] || die "no directory $images (build it with tests/bench/codec_images.sh)"
out=${out:-$images/ratio}

if [ -z "$scan" ]; then
  for d in build-codec-rel build-rel build; do
    scan=$(find "$root/$d" -name tideway-cbr-scan -type f -perm -u+x 2>/dev/null | head -n 1 || true)
    [ -z "$scan" ] || break
  done
fi
if [ -z "$scan" ] || [ ! -x "$scan" ]; then
  die "tideway-cbr-scan not found; build it (e.g. cmake --build build-codec-rel --target tideway-cbr-scan) or pass --scan"
fi

cache_args=()
for c in "${caches[@]}"; do cache_args+=(--cache-mb "$c"); done

mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(free -g | awk '/^Mem:/ {print $2}') GiB, kernel $(uname -r)"
  echo "tool: $scan"
  echo "caches (MiB): ${caches[*]}"
  echo "more arguments: ${extra[*]:-none}"
  [ -f "$images/images.env" ] && { echo "images:"; sed 's/^/  /' "$images/images.env"; }
} >"$out/machine.txt"

n=0
for img in debian-ext4.img guest-mem-boot.bin guest-mem-run.bin; do
  f=$images/$img
  [ -f "$f" ] || { echo "codec_ratio: $img not found in $images, skipped" >&2; continue; }
  name=${img%.*}
  echo "== $img ($(( $(stat -c %s "$f") / 1048576 )) MiB) ==" >&2
  t0=$(date +%s)
  "$scan" "$f" "${cache_args[@]}" "${extra[@]}" --json -q >"$out/$name.json"
  "$scan" "$f" "${cache_args[@]}" "${extra[@]}" -q | tee "$out/$name.txt"
  echo "($(( $(date +%s) - t0 )) s for both runs)" >&2
  n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no images in $images"
echo "codec_ratio: reports in $out" >&2

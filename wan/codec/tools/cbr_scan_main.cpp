// tideway-cbr-scan: what the WAN codec would send for a disk or memory
// image (zero pages, duplicate sub-blocks at 1/2/4/8 sub-blocks per page
// with a given CBR cache size, bytes in and out).
//
//   tideway-cbr-scan disk.img
//   tideway-cbr-scan guest.mem --cache-mb 100 --cache-mb 1024 --json
#include <CLI/CLI.hpp>

#include "wan/codec/cbr_scan_cli.h"

using namespace tideway::wan::codec;

int main(int argc, char** argv) {
  CLI::App app{
      "Scan a disk or memory image and report what Tideway's WAN codec would send for it: zero pages, "
      "duplicate sub-blocks found by the CBR cache at each sub-block count and cache size, and bytes in and "
      "out (after zstd level 1 unless --zstd-level 0). The image is read once; every configuration runs the "
      "real encoder with its output discarded. Memory use is about the sum of the cache sizes."};
  app.footer(
      "Examples:\n"
      "  tideway-cbr-scan disk.img                        all of 1/2/4/8 sub-blocks x 100 MiB and 1 GiB\n"
      "  tideway-cbr-scan guest.mem --sub-blocks 4 --cache-mb 100 --json\n"
      "  tideway-cbr-scan /dev/vg0/vm1 --zstd-level 0     CBR and zero pages only\n"
      "Page deltas are not used (each page of an image is sent once). A partial last page is zero-padded.\n"
      "Exit status: 0 scanned, 1 the image could not be read, other values: bad usage.");
  CbrScanArgs args;
  add_cbr_scan_options(app, args, true);
  CLI11_PARSE(app, argc, argv);
  return run_cbr_scan(args, "tideway-cbr-scan");
}

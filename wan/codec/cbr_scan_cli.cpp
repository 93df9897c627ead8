#include "wan/codec/cbr_scan_cli.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "wan/codec/cbr_scan.h"
#include "wan/codec/cbr_scan_json.h"

namespace tideway::wan::codec {

void add_cbr_scan_options(CLI::App& cmd, CbrScanArgs& args, bool with_json_flag) {
  cmd.add_option("IMAGE", args.image, "Disk image, block device or memory dump (read in 4 KiB pages)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd.add_option("--cache-mb", args.cache_mb, "CBR cache size in MiB; repeat for several (default: 100 and 1024)")
      ->check(CLI::Range(1, 64 * 1024));
  cmd.add_option("--sub-blocks", args.sub_blocks, "Sub-blocks per 4 KiB page; repeat (default: 1 2 4 8)")
      ->check(CLI::IsMember({1, 2, 4, 8}));
  cmd.add_option("--zstd-level", args.zstd_level, "zstd level for literal bytes; 0 = off (default 1)")
      ->check(CLI::Range(-7, 19));
  if (with_json_flag) cmd.add_flag("--json", args.json, "Print the report as JSON on stdout");
  cmd.add_flag("-q,--quiet", args.quiet, "No progress on stderr");
}

int run_cbr_scan(const CbrScanArgs& args, const char* prog) {
  ScanOptions options;
  if (!args.cache_mb.empty()) {
    options.cache_bytes.clear();
    for (uint64_t mb : args.cache_mb) options.cache_bytes.push_back(mb << 20);
  }
  if (!args.sub_blocks.empty()) options.sub_blocks = args.sub_blocks;
  options.zstd_level = args.zstd_level;
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  if (!args.quiet) {
    options.progress = [tty](uint64_t done, uint64_t total) {
      const double pct = total ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
      std::fprintf(stderr, "%sscanned %.0f of %.0f MiB (%.0f%%)%s", tty ? "\r" : "",
                   static_cast<double>(done) / (1 << 20), static_cast<double>(total) / (1 << 20), pct,
                   tty && done < total ? "" : "\n");
      std::fflush(stderr);
    };
  }
  auto report = scan_image(args.image, options);
  if (!report) {
    std::fprintf(stderr, "%s: %s\n", prog, report.error().detail.c_str());
    return 1;
  }
  if (args.json)
    std::cout << to_json(*report).dump(2) << "\n";
  else
    std::cout << format_report(*report);
  return 0;
}

}  // namespace tideway::wan::codec

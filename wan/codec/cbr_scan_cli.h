// The command-line face of the offline scan, shared by `tideway cbr-scan`
// and the stand-alone `tideway-cbr-scan`: the same options, help, progress
// and errors in both.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace tideway::wan::codec {

struct CbrScanArgs {
  std::string image;
  std::vector<uint64_t> cache_mb;
  std::vector<uint32_t> sub_blocks;
  int zstd_level = 1;
  bool json = false;
  bool quiet = false;
};

// Adds IMAGE and the scan's options to `cmd` (an app or a subcommand).
// `with_json_flag`: false where the parent app has its own --json.
void add_cbr_scan_options(CLI::App& cmd, CbrScanArgs& args, bool with_json_flag);
// Runs the scan: the report (table or JSON) on stdout, progress and errors
// (prefixed with `prog`) on stderr. Returns the exit code: 0, or 1 when the
// image cannot be read.
int run_cbr_scan(const CbrScanArgs& args, const char* prog);

}  // namespace tideway::wan::codec

// The command-line face of VMs and migration: `tideway vm start|stop|
// resume|list` and `tideway migrate VM --to SITE` (live progress, cancel
// on Ctrl-C, a final report as text or JSON, and a plot of pages sent and
// dirtied per iteration). Talks to tideway-agent's control socket only.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

namespace tideway::agent {

struct MigrateCli {
  CLI::App *vm = nullptr, *vm_start = nullptr, *vm_stop = nullptr, *vm_resume = nullptr, *vm_list = nullptr;
  CLI::App* vm_dump = nullptr;
  std::string dump_file;
  std::string spec_file, name;

  CLI::App *migrate = nullptr, *cancel = nullptr, *status = nullptr;
  std::string to, rate, report, plot;
  bool no_cbr = false, no_delta = false, no_zstd = false, no_smart_stop = false, detach = false;
  bool paused = false, keep_source = false, xbzrle = false;
  std::string transport = "tideway";
  unsigned max_iterations = 30, max_time_s = 600, wan_timeout_s = 10, switchover_timeout_s = 60;
};

std::unique_ptr<MigrateCli> add_migrate_commands(CLI::App& app);

// After parsing: runs the selected command and returns its exit code (0
// done, 1 failed or rolled back, 2 bad arguments, 3 agent unreachable, 4
// switchover unconfirmed), or nullopt if none of these was selected.
std::optional<int> run_migrate_commands(const MigrateCli& cli, const std::string& socket, bool json, int timeout_s);

// "100M", "1G", "800K" (bits per second, as links are sold) -> bytes per second.
std::optional<uint64_t> parse_rate(const std::string& text);

}  // namespace tideway::agent

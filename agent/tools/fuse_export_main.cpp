// tideway-fuse-export: serves a backing file (a LocalVolume, no replication)
// through the FUSE tap. For tests (run the export in its own process, kill
// it) and for measuring the tap's overhead against the raw file.
//
//   tideway-fuse-export [--size 1G] [--cache direct] BACKING MOUNTPOINT
//
// Prints "ready PATH" on stdout once mounted; SIGINT/SIGTERM unmount cleanly.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>

#include "agent/fuse_export.h"
#include "agent/local_volume.h"

using namespace tideway;

int main(int argc, char** argv) {
  CLI::App app{
      "Export a backing file as MOUNTPOINT/disk.img through FUSE (root only).\n"
      "Attach a loop device to it (losetup --find --show --direct-io=on MOUNTPOINT/disk.img),\n"
      "make a filesystem and mount that. SIGINT/SIGTERM unmount; detach the loop device first."};
  std::string backing, mountpoint, level = "info";
  uint64_t size = 0;
  agent::FuseExportOptions opt;
  std::map<std::string, agent::FuseCacheMode> modes = {{"direct", agent::FuseCacheMode::kDirectIo},
                                                       {"page", agent::FuseCacheMode::kPageCache},
                                                       {"writeback", agent::FuseCacheMode::kWriteback}};
  app.add_option("BACKING", backing, "backing file or block device")->required();
  app.add_option("MOUNTPOINT", mountpoint, "existing empty directory")->required()->check(CLI::ExistingDirectory);
  app.add_option("--size", size, "create BACKING sparse with this size if missing (e.g. 1G)")
      ->transform(CLI::AsSizeValue(false));
  app.add_option("--name", opt.file_name, "name of the exported file")->capture_default_str();
  app.add_option("--cache", opt.cache, "kernel caching of the file: direct, page or writeback")
      ->transform(CLI::CheckedTransformer(modes, CLI::ignore_case))
      ->default_str("direct");
  app.add_option("--threads", opt.threads, "idle FUSE worker threads")->capture_default_str();
  app.add_option("--max-threads", opt.max_threads, "most FUSE worker threads")->capture_default_str();
  app.add_flag("--allow-other", opt.allow_other, "let other users open the mount (and file mode 0660)");
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_default_logger(spdlog::stderr_color_mt("fuse-export"));
  spdlog::set_level(spdlog::level::from_str(level));
  if (opt.allow_other) opt.file_mode = 0660;
  opt.mountpoint = mountpoint;

  auto vol = agent::LocalVolume::open(backing, size);
  if (!vol) {
    spdlog::error("{}", vol.error().detail);
    return 1;
  }
  // Block the stop signals before any thread starts, so that every FUSE
  // worker inherits the mask and only sigtimedwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto exp = agent::FuseExport::start(**vol, opt);
  if (!exp) {
    spdlog::error("{}", exp.error().detail);
    return 1;
  }
  std::printf("ready %s\n", (*exp)->file_path().c_str());
  std::fflush(stdout);
  const timespec tick{0, 200'000'000};
  while ((*exp)->running()) {
    int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig > 0) {
      spdlog::info("signal {}: unmounting", sig);
      break;
    }
  }
  (*exp)->stop();
  return 0;
}

// The FUSE tap's life cycle: checks, mount, the multi-threaded session loop,
// and a teardown that neither hangs nor frees what a late reply still uses.
#include "agent/fuse_export.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "agent/fuse_export_impl.h"

namespace tideway::agent {

using proto::Errc;

namespace {

constexpr auto kBusyGrace = std::chrono::seconds(5);
constexpr auto kBusyRetry = std::chrono::milliseconds(50);

// libfuse reports mount failures only through its log: keep the last error
// of this thread so start() can say why.
thread_local std::string t_last_fuse_error;

void fuse_log_hook(enum fuse_log_level level, const char* fmt, va_list ap) {
  char line[512];
  std::vsnprintf(line, sizeof line, fmt, ap);
  std::string msg(line);
  while (!msg.empty() && msg.back() == '\n') msg.pop_back();
  if (level <= FUSE_LOG_ERR) {
    t_last_fuse_error = msg;
    spdlog::error("fuse: {}", msg);
  } else if (level <= FUSE_LOG_NOTICE) {
    spdlog::info("fuse: {}", msg);
  } else {
    spdlog::debug("fuse: {}", msg);
  }
}

std::string errno_text(int e) { return std::strerror(e); }

proto::Result<bool> check_options(const FuseExportOptions& o, uint64_t size) {
  if (size == 0) return {Errc::kInvalid, "the volume is empty"};
  const auto& n = o.file_name;
  if (n.empty() || n == "." || n == ".." || n.find('/') != std::string::npos || n.size() > 255)
    return {Errc::kInvalid, "file name '" + n + "' is not a plain file name"};
  if (o.threads == 0 || o.max_threads < o.threads)
    return {Errc::kInvalid, "need 1 <= threads <= max_threads"};
  if (o.max_inflight == 0) return {Errc::kInvalid, "max_inflight must be at least 1"};
  if (o.mountpoint.empty()) return {Errc::kInvalid, "no mount point given"};
  struct stat st {};
  if (::stat(o.mountpoint.c_str(), &st) != 0) {
    int e = errno;
    return {e == ENOENT || e == ENOTDIR ? Errc::kInvalid : Errc::kSystem,
            "mount point " + o.mountpoint + ": " + errno_text(e)};
  }
  if (!S_ISDIR(st.st_mode)) return {Errc::kInvalid, "mount point " + o.mountpoint + " is not a directory"};
  if (::geteuid() != 0)
    return {Errc::kSystem, "the FUSE export must run as root (it mounts, and loop devices attach to it)"};
  int fd = ::open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return {Errc::kSystem, "/dev/fuse: " + errno_text(e) + (e == ENOENT ? " (load the fuse module: modprobe fuse)" : "")};
  }
  ::close(fd);
  return true;
}

// The connection's control directory, named after the mount's device number
// in the kernel's encoding (major << 20 | minor). Empty if fusectl is not
// mounted: teardown then cannot abort a busy mount, only detach it.
std::string connection_dir(const std::string& mountpoint) {
  struct stat st {};
  if (::stat(mountpoint.c_str(), &st) != 0) return {};
  unsigned long id = (static_cast<unsigned long>(major(st.st_dev)) << 20) | minor(st.st_dev);
  std::string dir = "/sys/fs/fuse/connections/" + std::to_string(id);
  if (::access((dir + "/abort").c_str(), W_OK) != 0) {
    // Debian mounts fusectl at boot; a bare container may not have.
    ::mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
    if (::access((dir + "/abort").c_str(), W_OK) != 0) return {};
  }
  return dir;
}

void abort_connection(const std::string& dir) {
  if (dir.empty()) return;
  int fd = ::open((dir + "/abort").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (::write(fd, "1", 1) != 1) spdlog::warn("fuse export: aborting {}: {}", dir, errno_text(errno));
  ::close(fd);
}

void run_loop(FuseExport::Impl* x) {
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_max_threads(cfg, x->opt.max_threads);
  fuse_loop_cfg_set_idle_threads(cfg, x->opt.threads);
  int r = fuse_session_loop_mt(x->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  // ECONNABORTED: the connection was aborted (by stop() or an operator).
  if (r != 0 && r != -ECONNABORTED) spdlog::warn("fuse export {}: session loop ended: {}", x->opt.mountpoint, r);
  x->loop_done = true;
}

}  // namespace

const char* fuse_cache_mode_name(FuseCacheMode m) {
  switch (m) {
    case FuseCacheMode::kDirectIo: return "direct";
    case FuseCacheMode::kPageCache: return "page";
    case FuseCacheMode::kWriteback: return "writeback";
  }
  return "?";
}

proto::Result<std::unique_ptr<FuseExport>> FuseExport::start(BlockTarget& target, FuseExportOptions options) {
  if (auto ok = check_options(options, target.size()); !ok) return ok.error();
  auto impl = std::make_unique<Impl>(target, std::move(options));
  Impl& x = *impl;
  ::clock_gettime(CLOCK_REALTIME, &x.started);
  char real[PATH_MAX];
  if (::realpath(x.opt.mountpoint.c_str(), real) == nullptr)
    return {Errc::kSystem, "mount point " + x.opt.mountpoint + ": " + errno_text(errno)};
  x.real_mountpoint = real;

  std::string mount_opts = "fsname=tideway,subtype=tideway,default_permissions";
  if (x.opt.allow_other) mount_opts += ",allow_other";
  std::vector<std::string> argv_s = {"tideway-fuse-export", "-o", mount_opts};
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  fuse_set_log_func(fuse_log_hook);
  t_last_fuse_error.clear();
  const fuse_lowlevel_ops& ops = fuse_export_ops();
  x.se = fuse_session_new(&args, &ops, sizeof ops, &x);
  fuse_opt_free_args(&args);
  if (x.se == nullptr) return {Errc::kSystem, "fuse_session_new failed: " + t_last_fuse_error};
  if (fuse_session_mount(x.se, x.real_mountpoint.c_str()) != 0) {
    fuse_session_destroy(x.se);
    x.se = nullptr;
    return {Errc::kSystem, "mounting FUSE at " + x.real_mountpoint + " failed: " + t_last_fuse_error};
  }
  x.loop = std::thread(run_loop, &x);
  // Needs the loop running: the stat waits for FUSE_INIT to be answered.
  x.conn_dir = connection_dir(x.real_mountpoint);
  spdlog::info("fuse export: {}/{} ({} bytes, cache {}{})", x.real_mountpoint, x.opt.file_name, target.size(),
               fuse_cache_mode_name(x.opt.cache),
               x.opt.cache == FuseCacheMode::kWriteback && !x.writeback_granted ? ", not granted" : "");
  return std::unique_ptr<FuseExport>(new FuseExport(std::move(impl)));
}

FuseExport::FuseExport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FuseExport::~FuseExport() { stop(); }

bool FuseExport::running() const { return !impl_->stopped && !impl_->loop_done; }

const std::string& FuseExport::mountpoint() const { return impl_->real_mountpoint; }

std::string FuseExport::file_path() const { return impl_->real_mountpoint + "/" + impl_->opt.file_name; }

void FuseExport::stop() {
  Impl& x = *impl_;
  std::lock_guard lk(x.stop_mu);
  if (x.stopped) return;
  x.stopped = true;
  // A plain unmount succeeds only when nobody holds the file; the kernel then
  // closes the connection and the workers' reads return ENODEV. A busy mount
  // is detached and its connection aborted: users get errors, not a hang.
  int e = 0;
  // A just-detached loop device may hold the file a moment longer (seen
  // under load): give it a grace period before forcing.
  for (int tries = 0; !x.loop_done; ++tries) {
    e = ::umount2(x.real_mountpoint.c_str(), UMOUNT_NOFOLLOW) == 0 ? 0 : errno;
    if (e != EBUSY || tries * kBusyRetry >= kBusyGrace) break;
    std::this_thread::sleep_for(kBusyRetry);
  }
  if (e == 0) spdlog::debug("fuse export {}: unmounted", x.real_mountpoint);
  if (!x.loop_done && e != 0) {
    if (e == EBUSY) {
      spdlog::warn("fuse export {}: still in use (loop device attached?): detaching, users get EIO",
                   x.real_mountpoint);
      ::umount2(x.real_mountpoint.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
    }
    // EINVAL: detached already (lazily, by an operator) but maybe still in
    // use. Aborting a connection that has just ended does nothing.
    abort_connection(x.conn_dir);
  }
  if (x.loop.joinable()) x.loop.join();
  // Replies still owed by the target use the session: wait for them.
  x.gate.wait_idle();
  fuse_session_unmount(x.se);  // closes the device; unmounts only if still mounted
  fuse_session_destroy(x.se);
  x.se = nullptr;
}

}  // namespace tideway::agent

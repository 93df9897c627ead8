// Internals of the FUSE tap shared by its two halves: fuse_export.cpp (mount,
// session loop, teardown) and fuse_export_ops.cpp (the request handlers).
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>

#include <atomic>
#include <cassert>
#include <condition_variable>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>

#include "agent/fuse_export.h"

namespace tideway::agent {

// Inode numbers: FUSE's root, and the one file.
inline constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
inline constexpr fuse_ino_t kFileIno = 2;
// The largest write we accept from the kernel (FUSE's own upper bound).
inline constexpr unsigned kMaxWrite = 1u << 20;

// Counts target operations whose reply is still owed. Bounded: a worker
// blocks in acquire() while `max` are in flight, which pushes back on the
// kernel's queue instead of growing ours. wait_idle() lets teardown wait for
// the last completion before the session (which the replies use) is freed.
class InflightGate {
 public:
  explicit InflightGate(unsigned max) : max_(max) { assert(max > 0); }
  void acquire() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return count_ < max_; });
    ++count_;
  }
  void release() {
    std::lock_guard lk(mu_);
    assert(count_ > 0);
    --count_;
    cv_.notify_all();
  }
  void wait_idle() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  unsigned count_ = 0;
  const unsigned max_;
};

struct FuseExport::Impl {
  Impl(BlockTarget& t, FuseExportOptions o) : target(t), opt(std::move(o)), gate(opt.max_inflight) {}

  BlockTarget& target;
  const FuseExportOptions opt;
  InflightGate gate;

  timespec started{};                     // the inodes' times
  std::atomic<bool> writeback_granted{false};  // set in init
  std::string real_mountpoint;            // canonical path, as in mountinfo
  std::string conn_dir;                   // /sys/fs/fuse/connections/N, to abort

  fuse_session* se = nullptr;
  std::thread loop;
  std::atomic<bool> loop_done{false};
  std::mutex stop_mu;  // serialises stop()
  std::atomic<bool> stopped{false};
};

// The request handlers; userdata is the FuseExport::Impl.
const fuse_lowlevel_ops& fuse_export_ops();

}  // namespace tideway::agent

// The FUSE tap: exports a BlockTarget as ONE regular file in a FUSE mount,
// for host processes and containers (PostgreSQL, MariaDB). The host attaches
// a loop device to the file, makes a filesystem on it and mounts it; every
// write, fsync and discard of that filesystem reaches the BlockTarget.
//
//   MOUNTPOINT/            (read-only directory)
//   MOUNTPOINT/disk.img    (regular file, size = target.size(), fixed)
//
// Durability: FUSE `fsync` is the barrier (loop turns the filesystem's cache
// flushes into fsync on the file); it becomes BlockTarget::flush, answered
// when the flush completes. The kernel only sends the fsync after every write
// it covers was answered, and a write is answered only when the target
// completes it, so the flush always follows the writes it covers. FUSE
// `flush` (sent at close) means nothing and is answered at once.
//
// docs/taps.md ("FUSE tap") has the commands, the options and measurements.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "agent/block_target.h"
#include "proto/result.h"

namespace tideway::agent {

// How the kernel caches the exported file (measured in docs/taps.md).
enum class FuseCacheMode {
  kDirectIo,   // FOPEN_DIRECT_IO: no FUSE page cache; each write goes straight to the target
  kPageCache,  // kernel page cache for reads, writes are write-through
  kWriteback,  // writeback cache: writes gathered in the page cache, sent at writeback/fsync
};

struct FuseExportOptions {
  std::string mountpoint;              // an existing, empty directory
  std::string file_name = "disk.img";  // the one file in the mount
  FuseCacheMode cache = FuseCacheMode::kDirectIo;
  // Idle workers beyond `threads` exit and are re-created on the next burst;
  // handlers never block on I/O (replies come from completions), so keeping
  // them all avoids a thread create/exit per few requests (measured: 5,000
  // clones per 65,536 4 KiB writes with 8 of 16).
  unsigned threads = 16;               // idle worker threads kept by the session loop
  unsigned max_threads = 16;           // upper bound of worker threads
  unsigned max_inflight = 256;         // async target ops in flight; more block the worker
  bool allow_other = false;            // let users other than the mounter open the mount
  uint32_t file_mode = 0600;           // permission bits of the file
};

const char* fuse_cache_mode_name(FuseCacheMode m);

class FuseExport {
 public:
  // Mounts the export and starts the session loop. Needs root and /dev/fuse.
  // `target` must outlive the returned object.
  static proto::Result<std::unique_ptr<FuseExport>> start(BlockTarget& target, FuseExportOptions options);

  // Unmounts (see stop()) and joins every thread.
  ~FuseExport();
  FuseExport(const FuseExport&) = delete;
  FuseExport& operator=(const FuseExport&) = delete;

  // Unmounts and waits for the loop threads and for every target completion
  // still owed. If the file is still in use 5 s after stop() was called (a
  // loop device attached), the mount is detached lazily and the connection
  // aborted: its users get errors (EIO through loop) rather than a hang.
  // Idempotent.
  void stop();

  // True until stop(), or until the kernel ended the session (external
  // umount, connection aborted).
  bool running() const;

  const std::string& mountpoint() const;
  std::string file_path() const;  // mountpoint/file_name

  struct Impl;

 private:
  explicit FuseExport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tideway::agent

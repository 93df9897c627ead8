// The device a tap (NBD server, FUSE export) exports to its guest. Every
// guest write, flush and discard passes through here, in the order the tap
// received them.
//
// Implementations: LocalVolume (just the backing file: the raw baseline) and
// ProtectedVolume (the backing file plus replication to the backup site).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

namespace tideway::agent {

// Completion of an I/O: 0 or a positive errno. May run on any thread, and
// may run before the call that started the I/O has returned.
using IoDone = std::function<void(int err)>;

class BlockTarget {
 public:
  virtual ~BlockTarget() = default;

  virtual uint64_t size() const = 0;

  // Served from the local volume, synchronously. Returns 0 or an errno.
  virtual int read(uint64_t offset, std::span<uint8_t> out) = 0;

  // `data` is only read before write() returns: the caller may reuse its
  // buffer at once. `fua`: the data must be durable before `done`.
  // When `done` runs depends on the mode: after the local write
  // (pipelined, async) or after the backup's durable ack too (sync).
  virtual void write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) = 0;

  // Every write completed before flush() was called must be durable before
  // `done` (locally; in sync mode at the backup too).
  virtual void flush(IoDone done) = 0;

  // The range reads back as zeros afterwards (punched hole).
  virtual void discard(uint64_t offset, uint64_t length, IoDone done) = 0;

  // Bounds check shared by every implementation.
  bool in_range(uint64_t offset, uint64_t length) const {
    return offset <= size() && length <= size() - offset;
  }
};

}  // namespace tideway::agent

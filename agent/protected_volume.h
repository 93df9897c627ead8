// A protected volume as its tap sees it: every write goes to the local
// volume and, in the same order, into the writer's WriteLog (which assigns
// the seq - the pending counter - and ships it). What the guest waits for
// is the mode:
//   pipelined  the local write (replies to clients are held instead)
//   async      the local write (nothing is held: writes may be lost)
//   sync       the local write and the backup's durable ack
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "agent/block_target.h"
#include "agent/local_volume.h"
#include "agent/write_log.h"
#include "proto/result.h"

namespace tideway::agent {

enum class Mode { kPipelined, kSync, kAsync };
const char* mode_name(Mode m);
proto::Result<Mode> parse_mode(const std::string& s);

class ProtectedVolume final : public BlockTarget {
 public:
  ProtectedVolume(std::unique_ptr<LocalVolume> local, std::shared_ptr<WriteLog> log, uint32_t volume, Mode mode);

  uint64_t size() const override { return local_->size(); }
  int read(uint64_t offset, std::span<uint8_t> out) override { return local_->read(offset, out); }
  void write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) override;
  void flush(IoDone done) override;
  void discard(uint64_t offset, uint64_t length, IoDone done) override;

  Mode mode() const { return mode_; }
  const LocalVolume& local() const { return *local_; }

 private:
  // Completes `done` per the mode once `seq` (the last seq of the I/O) is issued.
  void complete(uint64_t seq, int err, IoDone done);

  std::unique_ptr<LocalVolume> local_;
  std::shared_ptr<WriteLog> log_;
  const uint32_t volume_;
  const Mode mode_;
  // Local write and seq assignment happen together under this lock, so
  // overlapping writes land locally in seq order - the order the backup
  // applies them in. Without it two racing writes to one block could leave
  // the primary with one and the backup with the other.
  std::mutex order_mu_;
};

}  // namespace tideway::agent

// The receiving half of a migration's disk copy: REPL_WRITEs of the disk
// stream (codec batches or raw blocks, discards) applied in order to the
// incoming VM's images; REPL_FLUSH and FUA writes answered with a REPL_ACK
// once everything before them is durable (fdatasync), coalesced per turn
// of the io loop so a burst of mirrored writes costs one sync.
//
// Bad input (a gap in the sequence, a write past a disk's end, a batch the
// codec rejects) is an error for the migration: nothing after it is
// applied, and the migration rolls back.
//
// Threading: the agent's io thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <vector>

#include "agent/vm_disk.h"
#include "wan/codec/decoder.h"
#include "wan/session.h"

namespace tideway::agent {

class DiskCopyDestination : public std::enable_shared_from_this<DiskCopyDestination> {
 public:
  struct Setup {
    uint32_t migration = 0;
    std::vector<std::shared_ptr<VmDisk>> disks;
    wan::codec::CodecConfig codec;
    std::shared_ptr<wan::Session> session;
    std::function<void(const std::string&)> on_error;
  };
  static proto::Result<std::shared_ptr<DiskCopyDestination>> create(boost::asio::io_context& io, Setup setup);

  // A message of the disk stream.
  void on_message(proto::MessageType type, std::span<const uint8_t> payload);
  uint64_t applied_seq() const { return applied_; }
  uint64_t bytes_applied() const { return bytes_; }
  const wan::codec::CodecStats& codec_stats() const { return decoder_->stats(); }
  void stop() { stopped_ = true; }

 private:
  DiskCopyDestination(boost::asio::io_context& io, Setup setup, std::unique_ptr<wan::codec::Decoder> d);
  proto::Result<void> apply(const proto::ReplWrite& w);
  void schedule_ack();
  void fail(const std::string& why);

  boost::asio::io_context& io_;
  Setup s_;
  std::unique_ptr<wan::codec::Decoder> decoder_;
  uint64_t applied_ = 0, acked_ = 0, bytes_ = 0;
  std::vector<bool> dirty_;  // per disk: written since the last sync
  bool ack_posted_ = false, force_ack_ = false, stopped_ = false;
};

}  // namespace tideway::agent

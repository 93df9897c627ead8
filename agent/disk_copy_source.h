// The sending half of a migration's disk copy (CloudNet, DESIGN 3.1): the
// VM's agent-served disks go to the destination while the VM runs, then
// its writes are mirrored synchronously until the switchover, so the
// destination's disks are current when the VM starts there.
//
//   1. Bulk passes: the blocks to send (all blocks holding data, or for an
//      incremental return those written since the destination's copy) go
//      through the WAN codec as REPL_WRITEs on the disk stream; blocks the
//      VM writes meanwhile are marked and sent in the next pass.
//   2. When a pass leaves few blocks (or after max_passes), mirroring
//      starts: every VM write now also waits for the destination's durable
//      ack. One last pass sends what the bulk passes left.
//   3. A REPL_FLUSH; its REPL_ACK says the destination holds every block.
//      `ready` runs, and the memory migration may begin. Mirroring goes on
//      until stop().
//
// The disk stream is ordered, and a block is read and queued in one step
// on this thread, so a mirrored write always reaches the destination after
// any older copy of its block. A message the channel refused is kept and
// sent first (the codec's state has advanced: it is never re-encoded).
// A mirrored write is acked in REPL_ACK order: the destination applies the
// stream in order, so its cumulative ack covers every earlier message.
//
// Threading: the agent's io thread; VM writes arrive on the NBD thread and
// are picked up here (VmDisk's mirror queue).
#pragma once

#include <boost/asio/io_context.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "agent/migration_progress.h"
#include "agent/vm_disk.h"
#include "agent/write_encoder.h"
#include "wan/session.h"

namespace tideway::agent {

class DiskCopySource : public std::enable_shared_from_this<DiskCopySource> {
 public:
  struct Setup {
    uint32_t migration = 0;  // the REPL_WRITEs' writer id
    std::vector<std::shared_ptr<VmDisk>> disks;
    std::vector<bool> incremental;  // per disk: only blocks written since the destination's generation
    wan::codec::CodecConfig codec;
    std::shared_ptr<wan::Session> session;
    uint32_t max_passes = 8;
    uint64_t converge_blocks = 256;  // a pass leaving at most this many blocks ends the bulk phase
  };
  using Ready = std::function<void(proto::Result<void>)>;

  static proto::Result<std::shared_ptr<DiskCopySource>> create(boost::asio::io_context& io, Setup setup);
  void start(Ready ready);
  // The destination's REPL_ACK (on the control stream).
  void on_ack(const proto::ReplAck& ack);
  // The disk stream has room again.
  void on_writable() { pump(); }
  // Mirroring and tracking off; writes waiting for an ack complete (they
  // are durable locally). Idempotent.
  void stop();
  const DiskProgress& progress() const { return progress_; }
  // Copied, and no mirrored write sent or queued awaits its ack.
  bool settled() const;
  uint64_t sent_seq() const { return seq_; }

 private:
  enum class Phase { kIdle, kBulk, kFinalPass, kFlushing, kMirroring, kStopped };
  struct Awaiting {
    uint64_t seq = 0;
    size_t disk = 0;
    uint64_t mirror_id = 0;
  };

  DiskCopySource(boost::asio::io_context& io, Setup setup, std::unique_ptr<WriteEncoder> enc);
  void pump();
  bool send_held();
  bool send_mirrored();
  bool send_next_run(bool& pass_done);
  void end_pass();
  // Sends, or keeps it (after any kept before) for send_held().
  void queue_write(size_t disk, proto::WriteOp op, uint32_t flags, uint64_t offset,
                   std::span<const uint8_t> data, uint64_t length);
  void fail(const std::string& why);
  double ms() const;

  boost::asio::io_context& io_;
  Setup s_;
  std::unique_ptr<WriteEncoder> encoder_;
  Ready ready_;
  DiskProgress progress_;
  Phase phase_ = Phase::kIdle;
  size_t cursor_disk_ = 0;
  uint64_t cursor_ = 0;
  uint64_t seq_ = 0, flush_seq_ = 0;
  uint32_t pass_ = 0;
  uint64_t pass_blocks_ = 0, pass_wire_base_ = 0;
  // Encoded REPL_WRITEs the channel refused, oldest first: at most one bulk
  // run plus the mirrored writes in flight (bounded by the NBD server).
  std::deque<std::vector<uint8_t>> held_;
  std::deque<Awaiting> awaiting_;             // mirrored writes sent, in seq order
  bool pump_posted_ = false;
  std::chrono::steady_clock::time_point started_;
};

}  // namespace tideway::agent

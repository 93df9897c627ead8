// The WAN codec on one writer's replication stream (sending side): turns a
// page-aligned write into one codec batch (docs/codec.md, "On the
// replication stream"). The encoder's state is mirrored by the
// replicator's decoder, so every batch this returns must reach the
// replicator exactly once and in order: the link keeps a batch the channel
// refused and sends it first, never encodes a write twice, and calls
// reset() whenever it (re-)attaches the writer (the replicator resets its
// decoder on every ATTACH).
//
// Threading: the replication link's io thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "agent/write_log.h"
#include "proto/result.h"
#include "wan/codec/encoder.h"

namespace tideway::agent {

// The agent's [codec] table, for replication streams.
struct ReplicationCodecOptions {
  bool enabled = true;  // also advertises kFeatCodec on replication channels
  wan::codec::CodecConfig config = replication_codec_defaults();

  // DESIGN 4: replication uses CBR + zstd. No page deltas by default: a
  // disk block rewritten with small edits is rare next to the cost of
  // keeping every written block's last version.
  static wan::codec::CodecConfig replication_codec_defaults() {
    wan::codec::CodecConfig c;
    c.sub_blocks = 4;
    c.cache_bytes = 64ull << 20;
    c.delta_store_bytes = 0;
    c.zstd_level = 1;
    c.max_records = proto::kMaxWriteLen / proto::kPageSize;  // one write = one batch
    return c;
  }
};

class WriteEncoder {
 public:
  // kInvalid for a bad configuration (make_geometry's reason).
  static proto::Result<std::unique_ptr<WriteEncoder>> create(const wan::codec::CodecConfig& config);

  // Encodes the write's pages as the next batch into `out`.
  // Precondition: proto::repl_encodable(w.op, w.volume, w.offset, w.length).
  // An error (a bug) consumed nothing: the write may still go raw.
  proto::Result<void> encode(const RetainedWrite& w, std::vector<uint8_t>& out);
  // The same for bytes not held in a RetainedWrite (the disk copy's runs).
  proto::Result<void> encode(uint32_t volume, uint64_t offset, std::span<const uint8_t> data,
                             std::vector<uint8_t>& out);
  // A write that went raw (not encodable, or the codec is off this link);
  // discards and write-zeroes carry no data and are counted apart.
  void count_raw(proto::WriteOp op, uint32_t length) {
    if (op != proto::WriteOp::kWrite) {
      ++other_ops_;
      return;
    }
    ++raw_writes_;
    raw_bytes_ += length;
  }
  // A batch the channel refused, kept to be sent first later.
  void count_held() { ++held_; }
  // New epoch with empty state (no-op if nothing was encoded since the last).
  void reset();

  const wan::codec::CodecStats& stats() const { return encoder_->stats(); }
  uint64_t epoch() const { return encoder_->epoch(); }
  uint64_t next_seq() const { return encoder_->next_seq(); }
  nlohmann::json status() const;

 private:
  explicit WriteEncoder(std::unique_ptr<wan::codec::Encoder> e);

  std::unique_ptr<wan::codec::Encoder> encoder_;
  std::vector<wan::codec::PageRef> pages_;  // capacity max_records, reused
  uint64_t raw_writes_ = 0, raw_bytes_ = 0, other_ops_ = 0, held_ = 0;
};

}  // namespace tideway::agent

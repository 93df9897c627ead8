// The WAN codec on one writer's replication stream (receiving side): turns
// an encoded REPL_WRITE (one codec batch, docs/codec.md "On the
// replication stream") back into the write's bytes, which are journaled
// exactly like a raw write's.
//
// The decoder is built from the state parameters of the first batch after
// an ATTACH (the agent chooses them), within a memory budget the
// replicator sets: a peer cannot make the backup allocate more. It is
// dropped on every ATTACH, because the agent resets its encoder then.
//
// Threading: the replicator's io thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proto/messages.h"
#include "proto/result.h"
#include "wan/codec/decoder.h"

namespace tideway::replicator {

// What went wrong with an encoded write, and what the replicator does.
enum class WriteDecodeError {
  kNone,
  kOverBudget,  // the agent's codec state needs more memory than allowed: refuse the writer
  kBadBatch,    // corrupt, gap, diverged, wrong pages...: drop, ask for a re-attach
};

class WriteDecoder {
 public:
  WriteDecoder();

  // Decodes `w` (kWriteEncoded) into w.length bytes, valid until the next
  // call. `budget` is the memory this decoder may take (its current
  // decoder included). An error says why; last_error() tells its kind.
  proto::Result<std::span<const uint8_t>> decode(const proto::ReplWrite& w, uint64_t budget);
  WriteDecodeError last_error() const { return last_error_; }

  // The agent attached again (its encoder restarted): forget the decoder.
  void reset();
  // Memory the current decoder holds (an estimate from its geometry).
  uint64_t memory_bytes() const { return decoder_ ? memory_ : 0; }
  nlohmann::json status() const;

  // Memory a decoder with these state parameters takes (an upper bound):
  // the cache and the delta store, their per-slot bookkeeping, and the
  // batch buffers (arena, literal buffer, maps) sized by max_records.
  static uint64_t memory_for(uint32_t sub_blocks, uint64_t cache_slots, uint64_t delta_slots);

 private:
  proto::Result<std::span<const uint8_t>> fail(WriteDecodeError e, std::string why);

  std::unique_ptr<wan::codec::Decoder> decoder_;
  uint64_t memory_ = 0;
  wan::codec::CodecStats past_;  // counters of decoders dropped by reset()
  std::vector<uint8_t> out_;     // one write, kMaxWriteLen at most
  bool pending_reset_ = false;  // an ATTACH came: the next batch starts a stream
  WriteDecodeError last_error_ = WriteDecodeError::kNone;
  uint64_t failures_ = 0, over_budget_ = 0, attaches_ = 0;
  std::string last_failure_;
};

}  // namespace tideway::replicator

// The receiving half of the WAN codec. Decodes a batch into scratch using
// the committed state read-only (plus what earlier records of the same
// batch inserted), checks the content checksum, and only then commits the
// batch's inserts: a batch that fails for any reason changes nothing.
//
// Epochs: the decoder follows the encoder's epoch. The first batch (seq 0)
// of a newer epoch is decoded against empty state and, on success, replaces
// the state; older epochs are refused. Within an epoch, batches must arrive
// in sequence.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "proto/result.h"
#include "wan/codec/batch_format.h"
#include "wan/codec/cbr_slab.h"
#include "wan/codec/codec_config.h"
#include "wan/codec/codec_stats.h"
#include "wan/codec/delta_store.h"
#include "wan/codec/literal_stream.h"

namespace tideway::wan::codec {

struct DecodedRecord {
  uint64_t address = 0;
  bool zero = false;  // an all-zero page (page then views a shared zero page)
  // kPageSize bytes. Valid until the next decode()/reset() of this decoder
  // and while the batch buffer passed to decode() is alive (raw pages are
  // views into it).
  std::span<const uint8_t> page;
};

// Why a batch was refused, and what the channel should do about it.
enum class DecodeFailure : uint8_t {
  kNone = 0,
  kCorrupt,         // malformed: the sender must reset (its state moved on)
  kConfigMismatch,  // the sender's state parameters differ: fix configuration
  kStaleEpoch,      // from an epoch older than ours: drop it, nothing to do
  kDuplicate,       // this (epoch, seq) was decoded already: drop it
  kGap,             // a batch of this epoch is missing: the sender must reset
  kDiverged,        // insert count or content checksum differ: the sender must reset
};
const char* failure_name(DecodeFailure f);
// True when the encoder must reset() (start a new epoch) for the stream to
// recover.
bool needs_reset(DecodeFailure f);

class Decoder {
 public:
  static proto::Result<std::unique_ptr<Decoder>> create(const CodecConfig& config);
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes one batch. On error the state is unchanged and last_failure()
  // says what kind of error it was.
  proto::Result<std::span<const DecodedRecord>> decode(std::span<const uint8_t> batch);

  // Forgets all state and the epoch: the next batch must be the first of
  // any epoch (use when the sending encoder was replaced, e.g. restarted).
  void reset();

  uint64_t epoch() const { return epoch_; }  // 0 = none yet
  uint64_t next_seq() const { return next_seq_; }
  DecodeFailure last_failure() const { return last_failure_; }
  const CodecStats& stats() const { return stats_; }
  const CodecGeometry& geometry() const { return geo_; }
  uint64_t state_digest() const;  // see Encoder::state_digest

 private:
  Decoder(const CodecConfig& config, const CodecGeometry& geo);
  proto::Result<void> fail(DecodeFailure f, proto::Errc code, std::string detail);
  proto::Result<void> check_header(const BatchHeader& h);
  proto::Result<void> decode_records(std::span<const uint8_t> control, const BatchHeader& h, uint64_t& checksum);
  proto::Result<void> decode_blocks(const uint8_t*& p, const uint8_t* end, size_t record, uint64_t address,
                                    uint8_t* page);
  const uint8_t* cache_source(uint32_t slot) const;
  const uint8_t* base_of(uint64_t address, bool& committed) const;
  void batch_map_set(uint64_t address, uint32_t record);
  size_t map_slot(uint64_t address) const { return static_cast<size_t>((address * 0x9e3779b97f4a7c15ull) >> map_shift_); }
  void commit(const BatchHeader& h);
  void prescan(std::span<const uint8_t> control, uint32_t count);

  CodecConfig config_;
  CodecGeometry geo_;
  CbrSlab slab_;
  DeltaStore store_;
  LiteralReader literal_;
  std::unique_ptr<uint8_t[]> arena_;    // assembled pages of this batch
  std::vector<DecodedRecord> records_;  // capacity max_records, never grows
  // Per record, for the commit: sub-blocks that differ from the stored
  // version (bit j), and whether that version is the committed store page
  // (then only those sub-blocks are written, in place).
  std::vector<uint8_t> changed_;
  std::vector<uint8_t> in_place_;
  // Record addresses found by a quick pass before decoding, so the stored
  // versions of the next records can be prefetched (0 past a parse error).
  std::vector<uint64_t> ahead_;
  // Sources of this batch's cache inserts, in insert order.
  std::vector<const uint8_t*> pending_;
  // Address -> latest record of this batch (delta bases within a batch).
  struct MapEntry {
    uint64_t address;
    uint32_t record;
    uint32_t generation;
  };
  std::vector<MapEntry> batch_map_;
  uint32_t generation_ = 0;
  int map_shift_ = 0;  // 64 - log2(batch_map_.size()): top bits of a multiplicative hash
  // Per-decode view of the committed state: a batch that starts a new
  // epoch sees it empty.
  bool fresh_ = false;
  uint32_t head0_ = 0;
  uint32_t filled0_ = 0;
  uint32_t arena_used_ = 0;
  CodecStats batch_stats_;  // this batch's record counts, added on commit

  uint64_t epoch_ = 0;
  uint64_t next_seq_ = 0;
  DecodeFailure last_failure_ = DecodeFailure::kNone;
  CodecStats stats_;
};

}  // namespace tideway::wan::codec

// The sending half of the WAN codec. Per page it sends the smallest of:
// a zero flag; per sub-block a CBR cache index (bytes verified), a delta
// against this address's last version, "unchanged", or the literal bytes;
// the literal bytes of a batch go through zstd where that pays.
// docs/codec.md: the format and exactly what is inserted into the state.
//
// One encoder per stream and direction; not thread-safe. The decoder at
// the other end must be built from the same CodecConfig state parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "proto/result.h"
#include "wan/codec/cbr_index.h"
#include "wan/codec/cbr_slab.h"
#include "wan/codec/codec_config.h"
#include "wan/codec/codec_stats.h"
#include "wan/codec/delta_store.h"
#include "wan/codec/literal_stream.h"

namespace tideway::wan::codec {

// One input record: a page (or disk block) and its address (guest-physical
// address, or the block's byte offset: any 64-bit key).
struct PageRef {
  uint64_t address = 0;
  std::span<const uint8_t> data;  // exactly kPageSize bytes, read during encode() only
};

class Encoder {
 public:
  static proto::Result<std::unique_ptr<Encoder>> create(const CodecConfig& config);
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // Encodes up to max_records pages as the next batch of this epoch into
  // `out` (cleared first; its capacity is reused). kInvalid for too many
  // pages or a page that is not kPageSize bytes (nothing is consumed then).
  // Once a batch is returned the state has advanced: if the decoder rejects
  // it, call reset() before the next batch.
  proto::Result<void> encode(std::span<const PageRef> pages, std::vector<uint8_t>& out);

  // Starts a new epoch (epoch() + 1) with empty state. The decoder follows
  // when it sees the new epoch's first batch.
  void reset();
  // Same, with a chosen epoch, which must be above epoch().
  proto::Result<void> reset(uint64_t epoch);

  uint64_t epoch() const { return epoch_; }
  uint64_t next_seq() const { return seq_; }
  const CodecStats& stats() const { return stats_; }
  const CodecGeometry& geometry() const { return geo_; }
  // Digest of the mirrored state (cache slots in use, delta store); equal
  // to the decoder's after the same batches. O(state): for tests and debug.
  uint64_t state_digest() const;

 private:
  Encoder(const CodecConfig& config, const CodecGeometry& geo);
  void encode_page(uint64_t address, const uint8_t* page);
  int64_t cache_find(uint64_t h, const uint8_t* sub);
  void cache_insert(uint64_t h, const uint8_t* sub);
  uint64_t sub_hash(const uint8_t* sub) const;

  CodecConfig config_;
  CodecGeometry geo_;
  bool xxh3_lookup_;  // the lookup hash is XXH3: reuse it for the checksum
  CbrSlab slab_;
  CbrIndex index_;
  DeltaStore store_;
  LiteralWriter literal_;
  std::unique_ptr<uint8_t[]> control_;
  size_t control_len_ = 0;
  uint64_t next_address_ = 0;  // previous record's address + kPageSize
  uint64_t checksum_ = 0;
  uint64_t epoch_;
  uint64_t seq_ = 0;
  CodecStats stats_;
};

}  // namespace tideway::wan::codec

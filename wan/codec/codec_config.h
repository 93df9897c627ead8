// Configuration of the WAN data-reduction codec (docs/codec.md).
// Encoder and decoder of one stream must use the same state parameters
// (sub_blocks, cache_bytes, delta_store_bytes): every batch header carries
// them and the decoder refuses a batch that disagrees.
#pragma once

#include <cstddef>
#include <cstdint>

#include "proto/result.h"

namespace tideway::wan::codec {

// Pages and disk blocks are 4 KiB; batch format version 1 fixes this.
inline constexpr uint32_t kPageSize = 4096;
inline constexpr uint32_t kMaxSubBlocks = 8;

// Hash of one sub-block for the CBR cache lookup. Injectable so tests can
// force collisions; the default is XXH3_64bits. Only the encoder uses it
// (the decoder never hashes for lookups), and the batch checksum always
// uses XXH3 whatever is injected here.
using SubBlockHash = uint64_t (*)(const void* data, size_t len);

struct CodecConfig {
  // Sub-blocks per page: 1, 2, 4 or 8 (4 -> 1 KiB, the paper's choice).
  uint32_t sub_blocks = 4;
  // CBR cache payload bytes (FIFO of sub-blocks); 0 disables CBR. The paper
  // used 100 MB and 1 GB; 64 MiB is a per-stream default that two sites can
  // afford for several streams.
  uint64_t cache_bytes = 64ull << 20;
  // Delta store: last sent version per address, whole pages; 0 disables
  // page deltas (disk copy sends each block once, so it gains nothing).
  uint64_t delta_store_bytes = 64ull << 20;
  // zstd level for the literal bytes of a batch; 0 disables zstd.
  int zstd_level = 1;
  // Skip zstd for a literal chunk whose 4 KiB byte sample looks random
  // (order-0 entropy >= 7.9 bits/byte). Off only for measurements.
  bool zstd_entropy_check = true;
  // Records per batch, at most. 256 pages fit one channel frame in the
  // worst case (see max_batch_bytes); up to kMaxRecordsLimit.
  uint32_t max_records = 256;
  // First epoch the encoder uses; must be >= 1. A restarted sender should
  // pick one above any it used before (or reset the decoder).
  uint64_t initial_epoch = 1;
  // nullptr = XXH3_64bits.
  SubBlockHash hash = nullptr;
  // Decoder only, for the fuzzer: accept batches whose content checksum does
  // not match (so mutated input reaches the commit path). Never in products.
  bool skip_checksum_for_fuzzing = false;
};

inline constexpr uint32_t kMaxRecordsLimit = 16384;
inline constexpr uint64_t kMaxCacheBytes = 64ull << 30;
inline constexpr uint64_t kMaxDeltaStoreBytes = 64ull << 30;

// Sizes derived from a validated config; identical at both ends.
struct CodecGeometry {
  uint32_t sub_blocks = 0;    // N
  uint32_t sub_block_size = 0;  // S = kPageSize / N
  uint32_t cache_slots = 0;   // cache_bytes / S
  uint32_t delta_slots = 0;   // delta_store_bytes / kPageSize
};

// Checks every field; kInvalid with the reason on a bad value.
proto::Result<CodecGeometry> make_geometry(const CodecConfig& config);

}  // namespace tideway::wan::codec

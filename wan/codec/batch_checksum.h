// The batch checksum: a chain of XXH3 over the decoded records, so the
// decoder can tell that it rebuilt exactly what the encoder read (its cache
// or delta store diverged, or the batch was damaged after encoding).
// Always XXH3, whatever sub-block hash is injected for CBR lookups.
//   start:     acc = XXH3_64(epoch, seq as 16 LE bytes)
//   zero page: acc = XXH3_64_withSeed(address as 8 LE bytes, acc ^ kZeroTag)
//   otherwise: acc = XXH3_64_withSeed(h_0..h_{N-1} as 8N LE bytes, acc ^ address)
//              with h_j = XXH3_64(sub-block j)
#pragma once

#include <xxhash.h>

#include <bit>
#include <cstdint>

namespace tideway::wan::codec {

static_assert(std::endian::native == std::endian::little, "the codec hashes little-endian words in place");

inline constexpr uint64_t kZeroTag = 0x5a45524f50414745ull;  // "ZEROPAGE"

inline uint64_t checksum_start(uint64_t epoch, uint64_t seq) {
  const uint64_t v[2] = {epoch, seq};
  return XXH3_64bits(v, sizeof v);
}
inline uint64_t checksum_zero(uint64_t acc, uint64_t address) {
  return XXH3_64bits_withSeed(&address, sizeof address, acc ^ kZeroTag);
}
inline uint64_t checksum_page(uint64_t acc, uint64_t address, const uint64_t* sub_hashes, uint32_t n) {
  return XXH3_64bits_withSeed(sub_hashes, sizeof(uint64_t) * n, acc ^ address);
}

}  // namespace tideway::wan::codec

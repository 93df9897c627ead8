// Shared by fuzz_codec and the seed corpus generator: the small codec
// configuration the fuzzer uses, and a fixed sequence of batches (zero,
// raw, text, CBR hits, deltas) that warms a decoder up.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace tideway::wan::codec::fuzz {

// Small state so every execution is cheap and wrap-around is common:
// 64 cache slots of 1 KiB, 16 delta pages, batches of at most 64 pages.
inline CodecConfig fuzz_config() {
  CodecConfig c;
  c.sub_blocks = 4;
  c.cache_bytes = 64 * 1024;
  c.delta_store_bytes = 16 * kPageSize;
  c.max_records = 64;
  return c;
}

using Page = std::vector<uint8_t>;

// Batch k (0-based) of the fixed warm-up sequence, as pages.
inline std::vector<std::pair<uint64_t, Page>> warm_pages(int k) {
  std::vector<std::pair<uint64_t, Page>> out;
  uint64_t x = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(k + 1);
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (uint64_t i = 0; i < 6; ++i) {
    Page p(kPageSize, 0);
    const uint64_t addr = i * kPageSize;
    switch ((i + static_cast<uint64_t>(k)) % 4) {
      case 0: break;  // zero
      case 1:
        for (size_t b = 0; b < kPageSize; b += 8) {
          const uint64_t v = next();
          std::memcpy(&p[b], &v, 8);
        }
        break;
      case 2:
        for (size_t b = 0; b < kPageSize; ++b) p[b] = static_cast<uint8_t>("tideway codec "[b % 14]);
        break;
      default:  // half repeated: CBR hits within the page
        for (size_t b = 0; b < kPageSize / 2; b += 8) {
          const uint64_t v = next();
          std::memcpy(&p[b], &v, 8);
        }
        std::memcpy(&p[kPageSize / 2], &p[0], kPageSize / 2);
        break;
    }
    // Later batches re-send earlier addresses with small edits: deltas.
    if (k > 0 && i % 2 == 0) p[(next() % kPageSize)] ^= 0x5a;
    out.emplace_back(addr, std::move(p));
  }
  return out;
}

inline std::vector<uint8_t> encode_warm(Encoder& e, int k) {
  const auto pages = warm_pages(k);
  std::vector<PageRef> refs;
  for (const auto& [a, p] : pages) refs.push_back(PageRef{a, p});
  std::vector<uint8_t> out;
  if (!e.encode(refs, out).ok()) __builtin_trap();
  return out;
}

inline constexpr int kWarmBatches = 3;

}  // namespace tideway::wan::codec::fuzz

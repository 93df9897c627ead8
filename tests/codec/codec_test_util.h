// Helpers of the codec tests: reproducible seeds, page generators, and an
// encoder/decoder pair that checks every batch round-trips byte-exact.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/test_seed.h"
#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace tideway::wan::codec::testing {

using tideway::testing::test_seed;

using Page = std::vector<uint8_t>;

inline Page random_page(std::mt19937_64& rng) {
  Page p(kPageSize);
  for (size_t i = 0; i < p.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(p.data() + i, &v, 8);
  }
  return p;
}
inline Page zero_page() { return Page(kPageSize, 0); }
// Text-like bytes: compressible by zstd, unlike random_page.
inline Page text_page(std::mt19937_64& rng) {
  static const char* words[] = {"tideway ", "replica ", "page ", "delta ", "cache ", "the ", "of ", "and "};
  Page p(kPageSize);
  size_t i = 0;
  while (i < p.size()) {
    const char* w = words[rng() % 8];
    for (size_t k = 0; w[k] && i < p.size(); ++k) p[i++] = static_cast<uint8_t>(w[k]);
  }
  return p;
}
// Changes `bytes` bytes in runs of 8 at random positions.
inline void edit_page(Page& p, size_t bytes, std::mt19937_64& rng) {
  for (size_t done = 0; done < bytes; done += 8) {
    const size_t at = rng() % (kPageSize - 8);
    for (size_t k = 0; k < 8; ++k) p[at + k] = static_cast<uint8_t>(p[at + k] + 1 + (rng() % 255));
  }
}

struct Batch {
  std::vector<uint64_t> addresses;
  std::vector<Page> pages;
  void add(uint64_t a, Page p) {
    addresses.push_back(a);
    pages.push_back(std::move(p));
  }
  std::vector<PageRef> refs() const {
    std::vector<PageRef> r;
    for (size_t i = 0; i < pages.size(); ++i) r.push_back(PageRef{addresses[i], pages[i]});
    return r;
  }
};

inline CodecConfig small_config(uint32_t sub_blocks = 4, uint64_t cache_bytes = 1 << 20,
                                uint64_t delta_bytes = 1 << 20) {
  CodecConfig c;
  c.sub_blocks = sub_blocks;
  c.cache_bytes = cache_bytes;
  c.delta_store_bytes = delta_bytes;
  c.max_records = 256;
  return c;
}

// Checks that decoded records equal the batch, byte for byte.
inline ::testing::AssertionResult same_records(const Batch& b, std::span<const DecodedRecord> got) {
  if (got.size() != b.pages.size())
    return ::testing::AssertionFailure() << "decoded " << got.size() << " records, sent " << b.pages.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].address != b.addresses[i])
      return ::testing::AssertionFailure() << "record " << i << ": address " << got[i].address << " != "
                                           << b.addresses[i];
    if (got[i].page.size() != kPageSize || std::memcmp(got[i].page.data(), b.pages[i].data(), kPageSize) != 0)
      return ::testing::AssertionFailure() << "record " << i << " (address " << b.addresses[i]
                                           << "): bytes differ";
    const bool zero = std::all_of(b.pages[i].begin(), b.pages[i].end(), [](uint8_t x) { return x == 0; });
    if (got[i].zero != zero) return ::testing::AssertionFailure() << "record " << i << ": zero flag wrong";
  }
  return ::testing::AssertionSuccess();
}

// An encoder and a decoder of one stream.
struct Link {
  std::unique_ptr<Encoder> enc;
  std::unique_ptr<Decoder> dec;
  explicit Link(const CodecConfig& c) : Link(c, c) {}
  Link(const CodecConfig& ce, const CodecConfig& cd) {
    auto e = Encoder::create(ce);
    auto d = Decoder::create(cd);
    EXPECT_TRUE(e.ok() && d.ok());
    enc = std::move(*e);
    dec = std::move(*d);
  }
  std::vector<uint8_t> encode(const Batch& b) {
    std::vector<uint8_t> wire;
    auto r = enc->encode(b.refs(), wire);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
    return wire;
  }
  // Encodes, decodes and compares; returns the wire bytes.
  std::vector<uint8_t> send(const Batch& b) {
    auto wire = encode(b);
    auto got = dec->decode(wire);
    EXPECT_TRUE(got.ok()) << (got.ok() ? "" : got.error().detail);
    if (got.ok()) {
      EXPECT_TRUE(same_records(b, *got));
    }
    return wire;
  }
};

}  // namespace tideway::wan::codec::testing

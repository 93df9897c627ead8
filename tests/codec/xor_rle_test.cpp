// Page delta runs: XOR + run-length coding of a sub-block against its last
// version, and strict application of runs.
#include "wan/codec/xor_rle.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/codec/codec_test_util.h"

namespace tideway::wan::codec {
namespace {

using testing::random_page;
using testing::test_seed;

std::vector<uint8_t> encode(const std::vector<uint8_t>& cur, const std::vector<uint8_t>& base, size_t limit,
                            size_t& size) {
  std::vector<uint8_t> out(limit + kRleSlack);
  size = xor_rle_encode(cur.data(), base.data(), cur.size(), out.data(), limit);
  if (size != kNoDelta) out.resize(size);
  return out;
}

TEST(XorRle, EqualBytesEncodeToNothing) {
  std::mt19937_64 rng(1);
  const auto a = random_page(rng);
  size_t size = 1;
  encode(a, a, 100, size);
  EXPECT_EQ(size, 0u);
}

TEST(XorRle, OneChangedByteCostsThreeBytes) {
  std::mt19937_64 rng(2);
  const auto base = random_page(rng);
  for (size_t at : {size_t{0}, size_t{7}, size_t{8}, size_t{100}, size_t{4095}}) {
    auto cur = base;
    cur[at] ^= 0x40;
    size_t size = 0;
    auto runs = encode(cur, base, 4093, size);
    // skip varint (1 or 2 bytes), length 1, one XOR byte.
    EXPECT_EQ(size, (at < 128 ? 3u : 4u)) << "at " << at;
    auto dst = base;
    ASSERT_TRUE(xor_rle_apply(runs.data(), size, dst.data(), dst.size()));
    EXPECT_EQ(dst, cur) << "at " << at;
  }
}

TEST(XorRle, RandomEditsRoundTrip) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int iter = 0; iter < 2000; ++iter) {
    const size_t n = size_t{512} << (rng() % 4);  // 512 .. 4096
    std::vector<uint8_t> base(n), cur;
    for (auto& b : base) b = static_cast<uint8_t>(rng());
    cur = base;
    const size_t edits = rng() % 12;
    for (size_t e = 0; e < edits; ++e) {
      const size_t at = rng() % n;
      const size_t len = std::min(n - at, size_t{1} + rng() % 40);
      for (size_t k = 0; k < len; ++k) cur[at + k] = static_cast<uint8_t>(rng());
    }
    size_t size = 0;
    auto runs = encode(cur, base, n - 3, size);
    if (size == kNoDelta) continue;  // possible only for large edits
    ASSERT_LE(size, n - 3);
    auto dst = base;
    ASSERT_TRUE(xor_rle_apply(runs.data(), size, dst.data(), n)) << "iter " << iter;
    ASSERT_EQ(dst, cur) << "iter " << iter;
  }
}

TEST(XorRle, CompletelyChangedDataGivesUp) {
  std::mt19937_64 rng(3);
  const auto a = random_page(rng);
  const auto b = random_page(rng);
  size_t size = 0;
  encode(a, b, 4093, size);
  EXPECT_EQ(size, kNoDelta);
  // And a limit just below the true size gives up too.
  auto c = a;
  c[10] ^= 1;
  c[2000] ^= 1;
  encode(c, a, 5, size);  // needs 3 + 4
  EXPECT_EQ(size, kNoDelta);
  encode(c, a, 7, size);
  EXPECT_EQ(size, 7u);
}

TEST(XorRle, ApplyRejectsMalformedRuns) {
  std::vector<uint8_t> dst(1024, 0);
  auto bad = [&](std::vector<uint8_t> runs) { return !xor_rle_apply(runs.data(), runs.size(), dst.data(), 1024); };
  EXPECT_TRUE(bad({0x00, 0x00}));              // zero-length run
  EXPECT_TRUE(bad({0x00}));                    // truncated length
  EXPECT_TRUE(bad({0x80}));                    // truncated varint
  EXPECT_TRUE(bad({0x80, 0x80, 0x01, 0x01, 0xff}));  // three-byte varint
  EXPECT_TRUE(bad({0x00, 0x05, 1, 2, 3}));     // run longer than its bytes
  EXPECT_TRUE(bad({0x80, 0x08, 0x01, 0xff}));  // skip 1024: run starts past the end
  EXPECT_TRUE(bad({0xff, 0x07, 0x02, 1, 2}));  // run crosses the end (1023 + 2)
  EXPECT_FALSE(bad({0xff, 0x07, 0x01, 0xff}));  // last byte: fine
  EXPECT_EQ(dst[1023], 0xff);
  EXPECT_FALSE(bad({}));  // no runs: unchanged
}

}  // namespace
}  // namespace tideway::wan::codec

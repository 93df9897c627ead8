// CRC32C: published vectors (RFC 3720 appendix B.4 and the "123456789"
// check value) and agreement with a bit-at-a-time reference on every length
// and alignment the accelerated ISA-L code paths distinguish.
#include "proto/crc32c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string_view>
#include <vector>

namespace tideway::proto {
namespace {

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Reflected polynomial 0x82F63B78, one bit at a time.
uint32_t reference_crc32c(std::span<const uint8_t> data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : data) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

TEST(Crc32c, CheckValue) { EXPECT_EQ(crc32c(as_bytes("123456789")), 0xE3069283u); }

TEST(Crc32c, EmptyAndSingleByte) {
  EXPECT_EQ(crc32c({}), 0u);
  EXPECT_EQ(crc32c(as_bytes("a")), 0xC1D04330u);
}

TEST(Crc32c, Rfc3720Vectors) {
  std::vector<uint8_t> buf(32);
  std::fill(buf.begin(), buf.end(), 0x00);
  EXPECT_EQ(crc32c(buf), 0x8A9136AAu);
  std::fill(buf.begin(), buf.end(), 0xFF);
  EXPECT_EQ(crc32c(buf), 0x62A8AB43u);
  for (size_t i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(buf), 0x46DD794Eu);
  for (size_t i = 0; i < 32; ++i) buf[i] = static_cast<uint8_t>(31 - i);
  EXPECT_EQ(crc32c(buf), 0x113FDB5Cu);
  const std::vector<uint8_t> iscsi_read = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(crc32c(iscsi_read), 0xD9963A56u);
}

TEST(Crc32c, MatchesReferenceOnEveryLengthAndAlignment) {
  std::mt19937 rng(12345);
  std::vector<uint8_t> buf(1024 + 16);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t align = 0; align < 8; ++align) {
    for (size_t len = 0; len <= 1024; ++len) {
      std::span<const uint8_t> s(buf.data() + align, len);
      ASSERT_EQ(crc32c(s), reference_crc32c(s)) << "len " << len << " align " << align;
    }
  }
}

TEST(Crc32c, IncrementalEqualsOneShotAtEverySplit) {
  const auto data = as_bytes("The quick brown fox jumps over the lazy dog, twice over.");
  const uint32_t whole = crc32c(data);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    uint32_t st = crc32c_update(kCrc32cInit, data.first(cut));
    st = crc32c_update(st, data.subspan(cut));
    EXPECT_EQ(crc32c_finish(st), whole) << "split at " << cut;
  }
  // Three pieces, one of them empty.
  uint32_t st = crc32c_update(kCrc32cInit, data.first(10));
  st = crc32c_update(st, {});
  st = crc32c_update(st, data.subspan(10));
  EXPECT_EQ(crc32c_finish(st), whole);
}

TEST(Crc32c, LargeBuffer) {
  std::vector<uint8_t> big(3u << 20);
  std::mt19937 rng(7);
  for (auto& b : big) b = static_cast<uint8_t>(rng());
  EXPECT_EQ(crc32c(big), reference_crc32c(big));
}

TEST(Crc32c, DetectsEverySingleBitFlip) {
  std::vector<uint8_t> buf(64);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 7);
  const uint32_t good = crc32c(buf);
  for (size_t bit = 0; bit < buf.size() * 8; ++bit) {
    buf[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(crc32c(buf), good) << "bit " << bit;
    buf[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
}

}  // namespace
}  // namespace tideway::proto

// Malformed batches: every class is rejected with a clear error, and the
// decoder's state is unchanged afterwards (the good batch that was due
// still decodes).
#include <gtest/gtest.h>
#include <zstd.h>

#include <functional>

#include "tests/codec/codec_test_util.h"
#include "wan/codec/batch_format.h"

namespace tideway::wan::codec {
namespace {

using namespace testing;
using proto::Errc;

constexpr uint64_t kKnown = 0x100000;  // an address the decoder has a version of
constexpr uint32_t kSub = 1024;

// Record section builder.
struct Records {
  std::vector<uint8_t> ctl;
  uint32_t count = 0;
  Records& kind(uint8_t k, uint64_t address) {
    ctl.push_back(k);
    if (!(k & kRecordSequential))
      for (int i = 0; i < 8; ++i) ctl.push_back(static_cast<uint8_t>(address >> (8 * i)));
    ++count;
    return *this;
  }
  Records& bytes(std::vector<uint8_t> b) {
    ctl.insert(ctl.end(), b.begin(), b.end());
    return *this;
  }
  Records& u16(uint16_t v) { return bytes({static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)}); }
  Records& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) ctl.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
};
constexpr uint8_t kBlocks = static_cast<uint8_t>(RecordType::kBlocks);
constexpr uint8_t kRaw = static_cast<uint8_t>(RecordType::kRaw);
constexpr uint8_t kZero = static_cast<uint8_t>(RecordType::kZero);

std::vector<uint8_t> chunk(uint8_t method, uint32_t len, std::vector<uint8_t> data) {
  std::vector<uint8_t> c{method};
  for (int i = 0; i < 4; ++i) c.push_back(static_cast<uint8_t>(len >> (8 * i)));
  c.insert(c.end(), data.begin(), data.end());
  return c;
}

class Malformed : public ::testing::Test {
 protected:
  void SetUp() override {
    link_ = std::make_unique<Link>(small_config(4, 1 << 20, 1 << 20));
    std::mt19937_64 rng(1234);
    Batch w0, w1, w2;
    for (uint64_t i = 0; i < 8; ++i) w0.add(kKnown + i * kPageSize, random_page(rng));
    w0.add(0, zero_page());
    for (uint64_t i = 0; i < 8; ++i) {
      auto p = random_page(rng);
      std::copy(w0.pages[i].begin(), w0.pages[i].begin() + kSub, p.begin());
      w1.add(0x200000 + i * kPageSize, p);
    }
    w2 = w0;
    for (auto& p : w2.pages) edit_page(p, 24, rng);
    w2.pages[8] = zero_page();  // address 0 stays a zero page: no stored version
    link_->send(w0);
    link_->send(w1);
    link_->send(w2);
    // The good batch that is due next: text (zstd), hits, deltas, a zero page.
    due_ = w2;
    for (auto& p : due_.pages) edit_page(p, 8, rng);
    due_.pages[8] = zero_page();
    for (uint64_t i = 0; i < 40; ++i) due_.add(0x300000 + i * kPageSize, text_page(rng));
    good_ = link_->encode(due_);
    header_ = *parse_header(good_);
    ASSERT_GT(header_.seq, 0u);
    digest_ = link_->dec->state_digest();
    ASSERT_LT(header_.cache_inserts, 1000u);  // slots 1000..1023 are not filled yet
  }

  Decoder& dec() { return *link_->dec; }

  std::vector<uint8_t> craft(const Records& r, std::vector<uint8_t> literal, uint32_t literal_len) {
    BatchHeader h = header_;
    h.record_count = r.count;
    h.control_len = static_cast<uint32_t>(r.ctl.size());
    h.literal_len = literal_len;
    std::vector<uint8_t> b(kHeaderSize);
    write_header(h, b.data());
    b.insert(b.end(), r.ctl.begin(), r.ctl.end());
    b.insert(b.end(), literal.begin(), literal.end());
    return b;
  }
  std::vector<uint8_t> patch(size_t at, std::vector<uint8_t> bytes) {
    auto b = good_;
    std::copy(bytes.begin(), bytes.end(), b.begin() + static_cast<long>(at));
    return b;
  }

  // Decoding `bad` fails with `code` (detail mentioning `what`) and leaves
  // the state as it was.
  void expect_rejected(const std::vector<uint8_t>& bad, Errc code, const std::string& what,
                       DecodeFailure failure = DecodeFailure::kCorrupt) {
    SCOPED_TRACE(what);
    auto r = dec().decode(bad);
    ASSERT_FALSE(r.ok()) << "accepted";
    EXPECT_EQ(r.error().code, code) << proto::errc_name(r.error().code) << ": " << r.error().detail;
    EXPECT_NE(r.error().detail.find(what), std::string::npos) << r.error().detail;
    EXPECT_EQ(dec().last_failure(), failure) << failure_name(dec().last_failure());
    EXPECT_EQ(dec().state_digest(), digest_);
    EXPECT_EQ(dec().epoch(), header_.epoch);
    EXPECT_EQ(dec().next_seq(), header_.seq);
  }

  void TearDown() override {
    // The batch that was due still decodes: nothing above changed the state.
    auto r = dec().decode(good_);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_TRUE(same_records(due_, *r));
    EXPECT_EQ(dec().state_digest(), link_->enc->state_digest());
  }

  std::unique_ptr<Link> link_;
  Batch due_;
  std::vector<uint8_t> good_;
  BatchHeader header_;
  uint64_t digest_ = 0;
};

TEST_F(Malformed, HeaderFields) {
  expect_rejected({}, Errc::kTruncated, "shorter than its 64-byte header");
  expect_rejected(std::vector<uint8_t>(good_.begin(), good_.begin() + 63), Errc::kTruncated, "header");
  expect_rejected(patch(0, {'X'}), Errc::kBadMagic, "magic");
  expect_rejected(patch(4, {2}), Errc::kBadVersion, "version 2");
  expect_rejected(patch(5, {3}), Errc::kMalformed, "sub-blocks per page 3");
  expect_rejected(patch(6, {1}), Errc::kUnknownFlags, "flags");
  expect_rejected(patch(52, {1}), Errc::kMalformed, "reserved");
  expect_rejected(patch(16, {0, 0, 0, 0, 0, 0, 0, 0}), Errc::kMalformed, "epoch 0");
  expect_rejected(patch(44, {0xff, 0xff, 0xff, 0x7f}), Errc::kTruncated, "record section of");
  expect_rejected(patch(40, {0xff, 0xff, 0, 0}), Errc::kMalformed, "records cannot fit");
  expect_rejected(patch(48, {1, 0, 0, 0}), Errc::kMalformed, "literal length 1");
}

TEST_F(Malformed, StateParametersAndLimits) {
  expect_rejected(patch(5, {8}), Errc::kIncompatible, "8 sub-blocks", DecodeFailure::kConfigMismatch);
  expect_rejected(patch(8, {1, 2}), Errc::kIncompatible, "cache slots", DecodeFailure::kConfigMismatch);
  expect_rejected(patch(12, {9}), Errc::kIncompatible, "delta slots", DecodeFailure::kConfigMismatch);
  Records many;
  for (int i = 0; i < 300; ++i) many.kind(kZero | kRecordSequential, 0);
  expect_rejected(craft(many, {}, 0), Errc::kTooLarge, "300 records exceed");
}

TEST_F(Malformed, RecordKinds) {
  expect_rejected(craft(Records{}.kind(0x08 | kRecordSequential, 0), {}, 0), Errc::kMalformed, "unknown kind byte");
  expect_rejected(craft(Records{}.kind(3 | kRecordSequential, 0), {}, 0), Errc::kMalformed, "unknown kind byte");
  Records addr;
  addr.kind(kZero | kRecordSequential, 0).bytes({kZero, 1, 2, 3});
  addr.count = 2;
  expect_rejected(craft(addr, {}, 0), Errc::kTruncated, "inside record 1");
  Records two;
  two.kind(kZero, 0x5000);  // 9 bytes, then nothing for the second record
  two.count = 2;
  expect_rejected(craft(two, {}, 0), Errc::kTruncated, "inside record 1");
  expect_rejected(craft(Records{}.kind(kBlocks | kRecordSequential, 0), {}, 0), Errc::kTruncated, "code bytes");
  Records trailing;
  trailing.kind(kZero | kRecordSequential, 0).bytes({0});
  expect_rejected(craft(trailing, {}, 0), Errc::kTrailingBytes, "after the last record");
}

TEST_F(Malformed, CacheIndexes) {
  auto hit0 = [](uint32_t slot) {
    Records r;
    r.kind(kBlocks, 0x900000).bytes({0x01}).u32(slot);  // sub-block 0 a hit, the rest literal
    return r;
  };
  const std::vector<uint8_t> lit = chunk(0, 3 * kSub, std::vector<uint8_t>(3 * kSub, 7));
  expect_rejected(craft(hit0(1024), lit, 3 * kSub), Errc::kMalformed, "cache index 1024 out of range");
  expect_rejected(craft(hit0(0xffffffff), lit, 3 * kSub), Errc::kMalformed, "out of range");
  expect_rejected(craft(hit0(1010), lit, 3 * kSub), Errc::kMalformed, "cache index 1010 out of range");
  Records cut;
  cut.kind(kBlocks, 0x900000).bytes({0x55, 1, 0});  // all hits, index cut short
  expect_rejected(craft(cut, {}, 0), Errc::kTruncated, "cache index truncated");
}

TEST_F(Malformed, Deltas) {
  auto delta0 = [](uint64_t address, std::vector<uint8_t> body) {
    Records r;
    r.kind(kBlocks, address).bytes({0xFE}).bytes(std::move(body));  // sub-block 0 delta, rest unchanged
    return r;
  };
  expect_rejected(craft(delta0(0x900000, {2, 0, 0, 1, 9}), {}, 0), Errc::kMalformed, "no stored version");
  expect_rejected(craft(delta0(0, {2, 0, 0, 1, 9}), {}, 0), Errc::kMalformed, "no stored version");  // a zero page
  expect_rejected(craft(delta0(kKnown, {0, 0}), {}, 0), Errc::kMalformed, "delta of 0 bytes");
  std::vector<uint8_t> big{0x00, 0x04};
  big.resize(2 + 1024, 1);
  expect_rejected(craft(delta0(kKnown, big), {}, 0), Errc::kMalformed, "delta of 1024 bytes");
  expect_rejected(craft(delta0(kKnown, {2, 0, 0, 0}), {}, 0), Errc::kMalformed, "malformed delta runs");
  expect_rejected(craft(delta0(kKnown, {5, 0, 0xff, 0x07, 2, 1, 2}), {}, 0), Errc::kMalformed, "malformed delta runs");
  expect_rejected(craft(delta0(kKnown, {100, 0, 1, 2}), {}, 0), Errc::kTruncated, "delta runs truncated");
  expect_rejected(craft(delta0(kKnown, {100}), {}, 0), Errc::kTruncated, "delta length truncated");
}

TEST_F(Malformed, LiteralSection) {
  const Records raw = Records{}.kind(kRaw, 0x900000);
  const std::vector<uint8_t> page(kPageSize, 3);
  expect_rejected(craft(raw, {}, 0), Errc::kMalformed, "literal section too short");
  expect_rejected(craft(Records{}.kind(kZero, 0x900000), chunk(0, kSub, std::vector<uint8_t>(kSub)), kSub),
                  Errc::kMalformed, "bytes no record uses");
  expect_rejected(craft(raw, chunk(7, kPageSize, page), kPageSize), Errc::kMalformed, "unknown method 7");
  expect_rejected(craft(raw, chunk(0, kPageSize - 1, std::vector<uint8_t>(kPageSize - 1)), kPageSize),
                  Errc::kMalformed, "stored length 4095");
  expect_rejected(craft(raw, chunk(0, 5000, page), kPageSize), Errc::kTruncated, "5000 bytes announced");
  expect_rejected(craft(raw, {0, 0, 16}, kPageSize), Errc::kTruncated, "header truncated");
  expect_rejected(craft(raw, chunk(1, 100, std::vector<uint8_t>(100, 0xab)), kPageSize), Errc::kMalformed,
                  "zstd: ");
  expect_rejected(craft(raw, chunk(1, kPageSize, page), kPageSize), Errc::kMalformed, "is not below");
  // A valid zstd frame of the wrong size.
  std::vector<uint8_t> half(kPageSize / 2, 5), packed(ZSTD_compressBound(half.size()));
  packed.resize(ZSTD_compress(packed.data(), packed.size(), half.data(), half.size(), 1));
  expect_rejected(craft(raw, chunk(1, static_cast<uint32_t>(packed.size()), packed), kPageSize), Errc::kMalformed,
                  "zstd");
  auto longer = good_;
  longer.push_back(0);
  expect_rejected(longer, Errc::kTrailingBytes, "after the last literal chunk");
}

TEST_F(Malformed, ChecksumCatchesDamagedContent) {
  auto b = good_;
  b[56] ^= 1;  // the checksum itself
  expect_rejected(b, Errc::kBadChecksum, "content checksum", DecodeFailure::kDiverged);
  // A byte of a stored literal chunk (the last bytes of the batch are the
  // text pages... which zstd packs; the raw page bytes of due_ are random).
  b = good_;
  b[b.size() - 1] ^= 0x10;
  auto r = dec().decode(b);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(dec().state_digest(), digest_);
}

TEST_F(Malformed, EveryPrefixIsRejected) {
  for (size_t n = 0; n < good_.size(); ++n) {
    auto r = dec().decode(std::span<const uint8_t>(good_.data(), n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes accepted";
    ASSERT_EQ(dec().state_digest(), digest_) << "prefix of " << n;
  }
}

TEST_F(Malformed, EveryFlippedBitIsRejectedOrHarmless) {
  // A flipped bit must be rejected with the state unchanged - or, where
  // zstd's encoding has slack (a few bits of a compressed chunk decode the
  // same), decode to exactly the right pages. Nothing else is acceptable.
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const size_t literal_at = kHeaderSize + header_.control_len;
  size_t harmless = 0;
  for (size_t at = 0; at < good_.size(); ++at) {
    auto b = good_;
    b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
    auto r = dec().decode(b);
    if (r.ok()) {
      ASSERT_GE(at, literal_at) << "flip at byte " << at << " (outside the literal chunks) accepted";
      ASSERT_TRUE(same_records(due_, *r)) << "flip at byte " << at << " decoded to other pages";
      ASSERT_EQ(dec().state_digest(), link_->enc->state_digest());
      ++harmless;
      SetUp();  // back to the state before the due batch
      continue;
    }
    ASSERT_EQ(dec().state_digest(), digest_) << "flip at byte " << at;
    ASSERT_EQ(dec().next_seq(), header_.seq);
  }
  std::fprintf(stderr, "%zu of %zu flips decoded to the same pages (zstd slack)\n", harmless, good_.size());
  EXPECT_LT(harmless, good_.size() / 100);
}

TEST(MalformedCodes, BitsBeyondTheSubBlocks) {
  Link link(small_config(2));
  std::mt19937_64 rng(3);
  Batch b;
  b.add(0, random_page(rng));
  std::copy(b.pages[0].begin(), b.pages[0].begin() + 2048, b.pages[0].begin() + 2048);  // second half hits the first
  auto wire = link.encode(b);
  // The record is {kind, code byte, u32 slot}: set a code bit for sub-block 2.
  const size_t code_at = kHeaderSize + 1;
  ASSERT_EQ(wire[code_at], 0x04);  // sub-block 0 literal, 1 hit
  wire[code_at] |= 0x10;
  auto r = link.dec->decode(wire);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("code bits set beyond"), std::string::npos) << r.error().detail;
  wire[code_at] &= static_cast<uint8_t>(~0x10);
  auto ok = link.dec->decode(wire);
  ASSERT_TRUE(ok.ok()) << ok.error().detail;
  EXPECT_TRUE(same_records(b, *ok));
}

}  // namespace
}  // namespace tideway::wan::codec

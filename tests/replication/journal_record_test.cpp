// The journal record codec: round trip, strictness, and that every single
// byte corruption and every truncation of a record is detected.
#include <gtest/gtest.h>

#include <cstring>

#include "proto/bytes.h"
#include "proto/crc32c.h"
#include "tests/proto/compare.h"
#include "tests/replication/repl_test_util.h"

namespace tideway::testing {
namespace {

using proto::Errc;
using proto::WriteOp;

// Field by field, data compared by content (the views point into different buffers).
void expect_same(const proto::ReplWrite& a, const proto::ReplWrite& b) {
  proto::testing::expect_message_eq(proto::Message{a}, proto::Message{b});
}

TEST(JournalRecord, RoundTripEveryOp) {
  std::vector<OwnedWrite> ws;
  ws.push_back(make_write(3, 1, 4096, 8192, WriteOp::kWrite, {1, 2, 3}));
  ws.push_back(make_write(3, 2, 1, UINT64_MAX - 1));
  ws.push_back(make_write(4, 7, proto::kMaxWriteLen, 0, WriteOp::kDiscard));
  ws.push_back(make_write(5, UINT64_MAX, 512, 4096, WriteOp::kWriteZeroes,
                          std::vector<uint32_t>(proto::kMaxVectorLen, 0xFFFFFFFFu)));
  ws[0].w.flags = proto::kWriteFua;
  std::vector<uint8_t> buf;
  for (const auto& o : ws) {
    const size_t before = buf.size();
    proto::append_journal_record(o.w, buf);
    EXPECT_EQ(buf.size() - before, proto::journal_record_size(o.w));
  }
  // Decode them back one after the other from the concatenation.
  std::span<const uint8_t> in(buf);
  for (const auto& o : ws) {
    auto r = proto::decode_journal_record(in);
    ASSERT_TRUE(r) << r.error().detail;
    EXPECT_EQ(r->size, proto::journal_record_size(o.w));
    expect_same(r->write, o.w);
    in = in.subspan(r->size);
  }
  EXPECT_TRUE(in.empty());
}

TEST(JournalRecord, MaximalRecordFitsTheBound) {
  auto o = make_write(1, 1, proto::kMaxWriteLen, 0, WriteOp::kWrite,
                      std::vector<uint32_t>(proto::kMaxVectorLen, 7));
  auto buf = encode(o.w);
  EXPECT_EQ(buf.size(), proto::kJournalMaxRecord);
  auto r = proto::decode_journal_record(buf);
  ASSERT_TRUE(r) << r.error().detail;
  expect_same(r->write, o.w);
}

// CRC32C detects every burst of up to 32 bits: every value of every byte
// must be refused (by the magic, the length bounds or the CRC).
TEST(JournalRecord, EverySingleByteCorruptionIsDetected) {
  for (auto op : {WriteOp::kWrite, WriteOp::kDiscard}) {
    auto o = make_write(9, 42, 100, 4096, op, {5, 6});
    const auto good = encode(o.w);
    ASSERT_TRUE(proto::decode_journal_record(good));
    uint64_t checked = 0;
    for (size_t i = 0; i < good.size(); ++i) {
      for (int x = 1; x < 256; ++x) {
        auto bad = good;
        bad[i] ^= static_cast<uint8_t>(x);
        auto r = proto::decode_journal_record(bad);
        ASSERT_FALSE(r) << "byte " << i << " xor " << x << " went undetected";
        ++checked;
      }
    }
    EXPECT_EQ(checked, good.size() * 255);
  }
}

TEST(JournalRecord, EveryTruncationIsReportedAsTruncated) {
  auto o = make_write(1, 5, 300, 0, WriteOp::kWrite, {1});
  const auto good = encode(o.w);
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = proto::decode_journal_record({good.data(), n});
    ASSERT_FALSE(r) << "prefix of " << n << " bytes accepted";
    EXPECT_EQ(r.error().code, Errc::kTruncated) << "prefix " << n << ": " << r.error().detail;
  }
}

// Bytes after the record (the next record) are not part of it.
TEST(JournalRecord, TrailingBytesBelongToTheNextRecord) {
  auto o = make_write(1, 5, 64);
  auto buf = encode(o.w);
  const size_t size = buf.size();
  buf.resize(size + 17, 0xAB);
  auto r = proto::decode_journal_record(buf);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->size, size);
}

// A record whose CRC matches but whose fields are inconsistent (a writer
// bug, not a torn write) is refused too: re-seal after editing.
void reseal(std::vector<uint8_t>& rec) {
  const uint32_t crc = proto::crc32c({rec.data(), rec.size() - 4});
  std::vector<uint8_t> tail;
  proto::ByteWriter(tail).u32(crc);
  std::memcpy(rec.data() + rec.size() - 4, tail.data(), 4);
}

TEST(JournalRecord, ResealedInvalidFieldsAreRefused) {
  auto o = make_write(1, 5, 64, 0, WriteOp::kWrite, {1});
  const auto good = encode(o.w);
  struct Case {
    const char* what;
    size_t at;
    uint8_t value;
    Errc code;
  };
  // Offsets from the layout in proto/journal_record.h.
  const Case cases[] = {
      {"op 0", 24, 0, Errc::kMalformed},
      {"op 4", 24, 4, Errc::kMalformed},
      {"vector length disagrees", 25, 2, Errc::kMalformed},
      {"vector too long", 25, proto::kMaxVectorLen + 1, Errc::kTooLarge},
      {"reserved bits", 26, 1, Errc::kMalformed},
      {"unknown flag", 31, 0x80, Errc::kMalformed},
  };
  for (const auto& c : cases) {
    auto bad = good;
    bad[c.at] = c.value;
    reseal(bad);
    auto r = proto::decode_journal_record(bad);
    ASSERT_FALSE(r) << c.what;
    EXPECT_EQ(r.error().code, c.code) << c.what << ": " << r.error().detail;
  }
  // seq 0.
  auto bad = good;
  std::memset(bad.data() + 16, 0, 8);
  reseal(bad);
  auto r = proto::decode_journal_record(bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kMalformed);
}

TEST(JournalRecord, RandomRecordsRoundTripAndDetectRandomDamage) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 2000; ++i) {
    const auto op = static_cast<WriteOp>(1 + rng() % 3);
    const uint32_t len = 1 + static_cast<uint32_t>(rng() % 9000);
    std::vector<uint32_t> vec(rng() % (proto::kMaxVectorLen + 1));
    for (auto& v : vec) v = static_cast<uint32_t>(rng());
    auto o = make_write(static_cast<uint32_t>(rng()), 1 + rng() % 1000000, len, rng() % (1ull << 40), op, vec);
    auto buf = encode(o.w);
    auto r = proto::decode_journal_record(buf);
    ASSERT_TRUE(r) << "record " << i << ": " << r.error().detail;
    expect_same(r->write, o.w);
    // Damage 1 to 4 adjacent bytes (a burst of <= 32 bits).
    const size_t at = rng() % buf.size();
    const size_t n = std::min<size_t>(1 + rng() % 4, buf.size() - at);
    for (size_t k = 0; k < n; ++k) buf[at + k] ^= static_cast<uint8_t>(1 + rng() % 255);
    ASSERT_FALSE(proto::decode_journal_record(buf)) << "record " << i << ": burst at " << at << " undetected";
  }
}

}  // namespace
}  // namespace tideway::testing

// Divergence and recovery: missing, repeated and stale batches, a decoder
// with other state parameters, and a decoder whose state came from another
// history are all detected; the encoder's reset (a new epoch) recovers.
#include <gtest/gtest.h>

#include "tests/codec/codec_test_util.h"
#include "tests/codec/workload.h"
#include "wan/codec/batch_format.h"

namespace tideway::wan::codec {
namespace {

using namespace testing;
using proto::Errc;

struct Stream {
  explicit Stream(uint64_t seed, const CodecConfig& c = small_config()) : link(c), work(seed, c.sub_blocks, 64) {}
  Link link;
  Workload work;
  Batch last;
  std::vector<uint8_t> next() {
    last = work.next(24);
    return link.encode(last);
  }
};

void expect_failure(Decoder& d, const std::vector<uint8_t>& wire, DecodeFailure f, Errc code) {
  const uint64_t digest = d.state_digest();
  const uint64_t seq = d.next_seq();
  auto r = d.decode(wire);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(d.last_failure(), f) << failure_name(d.last_failure()) << ": " << r.error().detail;
  EXPECT_EQ(r.error().code, code) << r.error().detail;
  EXPECT_EQ(d.state_digest(), digest);
  EXPECT_EQ(d.next_seq(), seq);
}

void expect_decodes(Decoder& d, const std::vector<uint8_t>& wire, const Batch& b) {
  auto r = d.decode(wire);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_TRUE(same_records(b, *r));
}

TEST(Divergence, SkippedBatchIsAGapAndResetRecovers) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Stream s(seed);
  Decoder& d = *s.link.dec;
  expect_decodes(d, s.next(), s.last);
  s.next();  // lost on the way
  expect_failure(d, s.next(), DecodeFailure::kGap, Errc::kIncompatible);
  EXPECT_TRUE(needs_reset(d.last_failure()));
  s.link.enc->reset();
  EXPECT_EQ(s.link.enc->epoch(), 2u);
  for (int i = 0; i < 5; ++i) expect_decodes(d, s.next(), s.last);
  EXPECT_EQ(d.epoch(), 2u);
  EXPECT_EQ(d.stats().resets, 2u);  // epoch 1 and epoch 2
  EXPECT_EQ(s.link.enc->state_digest(), d.state_digest());
}

TEST(Divergence, DuplicateBatchIsDroppedWithoutReset) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Stream s(seed);
  Decoder& d = *s.link.dec;
  const auto b0 = s.next();
  expect_decodes(d, b0, s.last);
  expect_failure(d, b0, DecodeFailure::kDuplicate, Errc::kIncompatible);
  EXPECT_FALSE(needs_reset(d.last_failure()));
  expect_decodes(d, s.next(), s.last);  // the stream simply continues
}

TEST(Divergence, StaleEpochIsRefused) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Stream s(seed);
  Decoder& d = *s.link.dec;
  expect_decodes(d, s.next(), s.last);
  const auto old = s.next();  // epoch 1, batch 1: still in flight
  ASSERT_TRUE(s.link.enc->reset(7).ok());
  EXPECT_FALSE(s.link.enc->reset(7).ok());  // epochs only go up
  expect_decodes(d, s.next(), s.last);      // epoch 7 starts
  expect_failure(d, old, DecodeFailure::kStaleEpoch, Errc::kIncompatible);
  EXPECT_FALSE(needs_reset(d.last_failure()));
  expect_decodes(d, s.next(), s.last);
}

TEST(Divergence, NewEpochMustStartAtItsFirstBatch) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Stream s(seed);
  Decoder& d = *s.link.dec;
  expect_decodes(d, s.next(), s.last);
  s.link.enc->reset();
  s.next();  // epoch 2 batch 0: lost
  expect_failure(d, s.next(), DecodeFailure::kGap, Errc::kIncompatible);
  EXPECT_EQ(d.epoch(), 1u);
}

TEST(Divergence, DamagedFirstBatchOfANewEpochKeepsTheOldState) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Stream s(seed);
  Decoder& d = *s.link.dec;
  expect_decodes(d, s.next(), s.last);
  // A copy of the stream's encoder state before it resets, to continue epoch 1.
  Stream twin(seed);
  expect_decodes(*twin.link.dec, twin.next(), twin.last);
  s.link.enc->reset();
  auto damaged = s.next();
  damaged.back() ^= 0x20;
  const uint64_t digest = d.state_digest();
  auto r = d.decode(damaged);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(d.epoch(), 1u);
  EXPECT_EQ(d.state_digest(), digest);
  expect_decodes(d, twin.next(), twin.last);  // epoch 1 batch 1 still fits
}

TEST(Divergence, OtherCacheSizeIsAConfigMismatch) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Link link(small_config(4, 1 << 20), small_config(4, 2 << 20));
  Workload w(seed, 4, 64);
  const Batch b = w.next(16);
  auto wire = link.encode(b);
  expect_failure(*link.dec, wire, DecodeFailure::kConfigMismatch, Errc::kIncompatible);
  EXPECT_NE(link.dec->decode(wire).error().detail.find("cache slots"), std::string::npos);
}

TEST(Divergence, DecoderWithAnotherHistoryIsCaughtByTheChecksum) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // Two senders, same config and epoch, different first batches of the
  // same shape (same number of cache inserts). The decoder follows B, then
  // receives A's second batch, whose hits and deltas refer to A's first.
  Link a(small_config()), b(small_config());
  Batch a0, b0, a1;
  for (uint64_t i = 0; i < 8; ++i) {
    a0.add(i * kPageSize, random_page(rng));
    b0.add(i * kPageSize, random_page(rng));
  }
  for (uint64_t i = 0; i < 8; ++i) {
    auto p = a0.pages[i];
    edit_page(p, 16, rng);
    a1.add(i * kPageSize, p);  // deltas against a0
  }
  for (uint64_t i = 0; i < 4; ++i) a1.add((100 + i) * kPageSize, a0.pages[i]);  // hits on a0
  a.send(a0);
  const auto a1_wire = a.encode(a1);
  expect_decodes(*b.dec, b.encode(b0), b0);
  expect_failure(*b.dec, a1_wire, DecodeFailure::kDiverged, Errc::kBadChecksum);
  EXPECT_TRUE(needs_reset(b.dec->last_failure()));
  // A resets; its new epoch replaces B's history at the decoder.
  a.enc->reset();
  expect_decodes(*b.dec, a.encode(a1), a1);
  EXPECT_EQ(b.dec->state_digest(), a.enc->state_digest());
}

TEST(Divergence, DifferentInsertCountIsCaughtByTheHeader) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Link a(small_config()), b(small_config());
  Batch a0, b0;
  a0.add(0, random_page(rng));
  b0.add(0, zero_page());  // no inserts
  a.send(a0);
  expect_decodes(*b.dec, b.encode(b0), b0);
  Batch a1;
  a1.add(kPageSize, random_page(rng));
  expect_failure(*b.dec, a.encode(a1), DecodeFailure::kDiverged, Errc::kIncompatible);
}

TEST(Divergence, DecoderResetAcceptsAnyEpochsFirstBatch) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  Stream s(seed);
  Decoder& d = *s.link.dec;
  ASSERT_TRUE(s.link.enc->reset(50).ok());
  expect_decodes(d, s.next(), s.last);
  // The sender is replaced by a new one that starts at epoch 1 again.
  Stream fresh(seed + 1);
  const auto first = fresh.next();
  expect_failure(d, first, DecodeFailure::kStaleEpoch, Errc::kIncompatible);
  d.reset();
  EXPECT_EQ(d.epoch(), 0u);
  expect_decodes(d, first, fresh.last);
  expect_decodes(d, fresh.next(), fresh.last);
  EXPECT_EQ(d.state_digest(), fresh.link.enc->state_digest());
}

}  // namespace
}  // namespace tideway::wan::codec

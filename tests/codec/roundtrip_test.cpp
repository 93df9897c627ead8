// Round trips: random and adversarial workloads decode byte-exact at every
// sub-block count, and both ends end with the same state.
#include <gtest/gtest.h>

#include "proto/frame.h"
#include "tests/codec/codec_test_util.h"
#include "tests/codec/workload.h"
#include "wan/codec/batch_format.h"

namespace tideway::wan::codec {
namespace {

using namespace testing;

class RoundTrip : public ::testing::TestWithParam<uint32_t> {};

void run_workload(const CodecConfig& c, uint64_t seed, int batches, uint64_t pages) {
  Link link(c);
  Workload w(seed, c.sub_blocks, pages);
  std::mt19937_64 rng(seed ^ 0x5555);
  for (int i = 0; i < batches; ++i) {
    const Batch b = w.next(rng() % 64 + 1);
    link.send(b);
    if (::testing::Test::HasFailure()) return;
    if (i % 16 == 0) {
      ASSERT_EQ(link.enc->state_digest(), link.dec->state_digest()) << "batch " << i;
    }
  }
  EXPECT_EQ(link.enc->state_digest(), link.dec->state_digest());
  const CodecStats& e = link.enc->stats();
  const CodecStats& d = link.dec->stats();
  // Both ends count the same records the same way.
  EXPECT_EQ(e.records, d.records);
  EXPECT_EQ(e.zero_records, d.zero_records);
  EXPECT_EQ(e.raw_records, d.raw_records);
  EXPECT_EQ(e.cbr_records, d.cbr_records);
  EXPECT_EQ(e.delta_records, d.delta_records);
  EXPECT_EQ(e.mixed_records, d.mixed_records);
  EXPECT_EQ(e.sub_hit, d.sub_hit);
  EXPECT_EQ(e.sub_delta, d.sub_delta);
  EXPECT_EQ(e.sub_unchanged, d.sub_unchanged);
  EXPECT_EQ(e.page_bytes, d.page_bytes);
  EXPECT_EQ(e.wire_bytes, d.wire_bytes);
  // The workload exercises every encoding.
  EXPECT_GT(e.zero_records, 0u);
  EXPECT_GT(e.raw_records, 0u);
  if (c.cache_bytes) {
    EXPECT_GT(e.sub_hit, 0u);
  }
  if (c.delta_store_bytes) {
    EXPECT_GT(e.sub_delta, 0u);
    EXPECT_GT(e.sub_unchanged, 0u);
  }
  EXPECT_LT(e.wire_bytes, e.page_bytes);
}

TEST_P(RoundTrip, RandomWorkload) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  run_workload(small_config(GetParam()), seed, 200, 300);
}

TEST_P(RoundTrip, CacheMuchSmallerThanTheData) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  // 8 sub-blocks of cache and 3 pages of delta store: constant wrap-around
  // and eviction, including inside one batch.
  auto c = small_config(GetParam(), 8 * (kPageSize / GetParam()), 3 * 4 * kPageSize);
  run_workload(c, seed, 200, 40);
}

TEST_P(RoundTrip, ForcedHashCollisions) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  auto c = small_config(GetParam());
  c.hash = [](const void*, size_t) -> uint64_t { return 42; };  // every sub-block collides
  Link link(c);
  Workload w(seed, c.sub_blocks, 100);
  for (int i = 0; i < 100 && !HasFailure(); ++i) link.send(w.next(32));
  EXPECT_GT(link.enc->stats().hash_collisions, 0u);
  EXPECT_EQ(link.enc->state_digest(), link.dec->state_digest());
}

TEST_P(RoundTrip, FewHashValuesCollideOften) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  auto c = small_config(GetParam());
  c.hash = [](const void* p, size_t) -> uint64_t { return static_cast<const uint8_t*>(p)[7] % 4; };
  Link link(c);
  Workload w(seed, c.sub_blocks, 100);
  for (int i = 0; i < 100 && !HasFailure(); ++i) link.send(w.next(32));
  EXPECT_GT(link.enc->stats().hash_collisions, 0u);
  EXPECT_GT(link.enc->stats().sub_hit, 0u);  // some lookups still verify
}

TEST_P(RoundTrip, OnlyCbrOnlyDeltaOnlyZstd) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  auto cbr = small_config(GetParam(), 1 << 20, 0);
  auto delta = small_config(GetParam(), 0, 1 << 20);
  auto none = small_config(GetParam(), 0, 0);
  none.zstd_level = 0;
  for (const auto& c : {cbr, delta, none}) {
    Link link(c);
    Workload w(seed, c.sub_blocks, 100);
    for (int i = 0; i < 40 && !HasFailure(); ++i) link.send(w.next(32));
    EXPECT_EQ(link.enc->stats().sub_hit > 0, c.cache_bytes > 0);
    EXPECT_EQ(link.enc->stats().sub_delta > 0, c.delta_store_bytes > 0);
  }
}

INSTANTIATE_TEST_SUITE_P(SubBlocks, RoundTrip, ::testing::Values(1u, 2u, 4u, 8u),
                         [](const ::testing::TestParamInfo<uint32_t>& p) { return "N" + std::to_string(p.param); });

TEST(Codec, ZeroPagesCostAByteOrTwo) {
  Link link(small_config());
  Batch b;
  for (uint64_t i = 0; i < 200; ++i) b.add(i * kPageSize, zero_page());
  b.add(1ull << 40, zero_page());  // a jump: the address is sent
  const auto wire = link.send(b);
  EXPECT_EQ(link.enc->stats().zero_records, 201u);
  EXPECT_EQ(wire.size(), kHeaderSize + 200 + 9);
}

TEST(Codec, ZeroPageForgetsTheLastVersion) {
  std::mt19937_64 rng(7);
  Link link(small_config());
  auto p = random_page(rng);
  Batch a, b, c;
  a.add(0, p);
  b.add(0, zero_page());
  p[5] ^= 1;
  c.add(0, p);
  link.send(a);
  link.send(b);
  link.send(c);
  // After the zero page there is no last version to delta against: the
  // edited page is sent as three cache hits and one literal sub-block.
  EXPECT_EQ(link.enc->stats().sub_delta, 0u);
  EXPECT_EQ(link.enc->stats().sub_unchanged, 0u);
  EXPECT_EQ(link.enc->stats().sub_hit, 3u);
  EXPECT_EQ(link.enc->stats().raw_records, 1u);
}

TEST(Codec, SmallEditsTravelAsDeltas) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Link link(small_config());
  Batch b;
  for (uint64_t i = 0; i < 64; ++i) b.add(i * kPageSize, random_page(rng));
  link.send(b);
  uint64_t before = link.enc->stats().wire_bytes;
  for (auto& p : b.pages) edit_page(p, 24, rng);
  link.send(b);
  const uint64_t resend = link.enc->stats().wire_bytes - before;
  EXPECT_LT(resend, 64 * 120u) << "24 changed bytes per page should cost well under 120 bytes";
  EXPECT_EQ(link.enc->stats().raw_records, 64u);  // only the first sending
  EXPECT_GT(link.enc->stats().sub_delta, 0u);
  EXPECT_GT(link.enc->stats().sub_unchanged, 0u);
}

TEST(Codec, CompletelyChangedPagesGoRawNotDelta) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Link link(small_config());
  Batch b;
  for (uint64_t i = 0; i < 32; ++i) b.add(i * kPageSize, random_page(rng));
  link.send(b);
  for (auto& p : b.pages) p = random_page(rng);
  const auto wire = link.send(b);
  EXPECT_EQ(link.enc->stats().sub_delta, 0u);
  EXPECT_EQ(link.enc->stats().raw_records, 64u);
  EXPECT_LE(wire.size(), kHeaderSize + 32 * (1 + kPageSize) + kChunkHeaderSize);
}

TEST(Codec, AddressReuseWithinAndAcrossBatches) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Link link(small_config());
  // One address written many times in one batch: each version deltas
  // against the one just before it in the same batch.
  Batch b;
  auto p = random_page(rng);
  for (int i = 0; i < 20; ++i) {
    b.add(8 * kPageSize, p);
    if (i % 5 == 4) b.add(8 * kPageSize, zero_page());
    edit_page(p, 16, rng);
  }
  link.send(b);
  link.send(b);  // and the whole sequence again
  EXPECT_GT(link.enc->stats().sub_delta, 0u);
  EXPECT_EQ(link.enc->state_digest(), link.dec->state_digest());
}

TEST(Codec, DuplicateSubBlocksHitTheCache) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  Link link(small_config(4));
  Batch first, second;
  for (uint64_t i = 0; i < 50; ++i) first.add(i * kPageSize, random_page(rng));
  // New addresses whose sub-block 2 repeats a sub-block sent before.
  for (uint64_t i = 0; i < 50; ++i) {
    auto p = random_page(rng);
    const auto& src = first.pages[rng() % 50];
    std::copy(src.begin() + 1024, src.begin() + 2048, p.begin() + 2048);
    second.add((1000 + i) * kPageSize, p);
  }
  link.send(first);
  link.send(second);
  EXPECT_EQ(link.enc->stats().sub_hit, 50u);
  EXPECT_EQ(link.enc->stats().mixed_records, 50u);
}

TEST(Codec, CompressibleLiteralsUseZstdRandomOnesSkipIt) {
  std::mt19937_64 rng(11);
  Link link(small_config(4, 0, 0));
  Batch text, noise;
  for (uint64_t i = 0; i < 64; ++i) text.add(i * kPageSize, text_page(rng));
  for (uint64_t i = 0; i < 64; ++i) noise.add((100 + i) * kPageSize, random_page(rng));
  const auto t = link.send(text);
  EXPECT_GT(link.enc->stats().zstd_chunks, 0u);
  EXPECT_LT(t.size(), 64 * kPageSize / 2);
  link.send(noise);
  EXPECT_EQ(link.enc->stats().zstd_skipped, 2u);  // two 128 KiB chunks, not compressed
  auto c = small_config(4, 0, 0);
  c.zstd_entropy_check = false;
  Link unchecked(c);
  unchecked.send(noise);
  EXPECT_EQ(unchecked.enc->stats().zstd_not_smaller, 2u);  // zstd ran and lost
}

TEST(Codec, EmptyBatchRoundTrips) {
  Link link(small_config());
  link.send(Batch{});
  link.send(Batch{});
  EXPECT_EQ(link.dec->next_seq(), 2u);
}

TEST(Codec, EncoderRejectsBadPagesAndChangesNothing) {
  Link link(small_config());
  std::vector<uint8_t> short_page(100), out;
  std::vector<PageRef> refs{PageRef{0, short_page}};
  auto r = link.enc->encode(refs, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, proto::Errc::kInvalid);
  std::vector<uint8_t> page(kPageSize, 1);
  std::vector<PageRef> many(257, PageRef{0, page});
  r = link.enc->encode(many, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(link.enc->next_seq(), 0u);
  Batch b;
  b.add(0, page);
  link.send(b);  // still in step with the decoder
}

TEST(Codec, ConfigIsValidated) {
  auto bad = [](auto mutate) {
    CodecConfig c;
    mutate(c);
    return !Encoder::create(c).ok() && !Decoder::create(c).ok();
  };
  EXPECT_TRUE(bad([](CodecConfig& c) { c.sub_blocks = 3; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.sub_blocks = 16; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.cache_bytes = 100; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.cache_bytes = kMaxCacheBytes + 1; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.delta_store_bytes = 4095; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.max_records = 0; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.max_records = kMaxRecordsLimit + 1; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.zstd_level = 40; }));
  EXPECT_TRUE(bad([](CodecConfig& c) { c.initial_epoch = 0; }));
  EXPECT_FALSE(bad([](CodecConfig&) {}));
}

TEST(Codec, WorstCaseBatchFitsItsBoundAndAFrame) {
  std::mt19937_64 rng(5);
  auto c = small_config(8);
  Link link(c);
  Batch b;
  // Random pages at random addresses: raw records with 8-byte addresses.
  for (int i = 0; i < 256; ++i) b.add(rng() & ~uint64_t{4095}, random_page(rng));
  const auto wire = link.send(b);
  EXPECT_LE(wire.size(), max_batch_bytes(256));
  EXPECT_LE(max_batch_bytes(256), proto::kMaxPayload);
}

TEST(Codec, StatsCountBytesAndCpu) {
  std::mt19937_64 rng(9);
  Link link(small_config());
  Batch b;
  for (uint64_t i = 0; i < 100; ++i) b.add(i * kPageSize, i % 2 ? random_page(rng) : zero_page());
  const auto wire = link.send(b);
  const auto& e = link.enc->stats();
  EXPECT_EQ(e.batches, 1u);
  EXPECT_EQ(e.page_bytes, 100 * kPageSize);
  EXPECT_EQ(e.wire_bytes, wire.size());
  EXPECT_EQ(e.zero_records + e.raw_records, 100u);
  EXPECT_GT(e.cpu_ns, 0u);
  EXPECT_GT(link.dec->stats().cpu_ns, 0u);
  EXPECT_NEAR(reduction_ratio(e), 2.0, 0.05);
}

}  // namespace
}  // namespace tideway::wan::codec

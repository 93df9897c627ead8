// The migration simulator is sane: bytes are conserved (what it counts is
// what the codec produced), a guest that does not write needs one
// iteration, every page arrives right, time adds up, and a seed replays.
#include <gtest/gtest.h>

#include "tests/bench/migsim/migration_sim.h"
#include "tests/test_seed.h"

namespace tideway::migsim {
namespace {

using namespace std::chrono_literals;

SimConfig small(const std::string& profile, uint64_t seed, wan::StopRule rule = wan::StopRule::kSmart) {
  SimConfig c;
  c.guest = {*sim::find_profile(profile), 4096, seed};  // 16 MiB
  c.stop = wan::preset(rule);
  c.codec.cache_bytes = 4 << 20;
  c.codec.delta_store_bytes = 4 << 20;
  c.link.rate_bits_per_s = 10e6;  // 16 MiB at 10 Mbit/s ~ 1 GiB at 640 Mbit/s
  c.verify = true;
  return c;
}

SimResult run(const SimConfig& c) {
  auto r = run_migration(c);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
  return r.ok() ? std::move(*r) : SimResult{};
}

void expect_conserved(const SimConfig& c, const SimResult& r) {
  ASSERT_GE(r.iterations.size(), 2u);
  uint64_t codec = 0, channel = 0;
  double time = 0;
  for (size_t i = 0; i < r.iterations.size(); ++i) {
    const auto& it = r.iterations[i];
    SCOPED_TRACE("iteration " + std::to_string(it.iteration));
    EXPECT_EQ(it.iteration, i + 1);
    EXPECT_EQ(it.final, i + 1 == r.iterations.size());
    EXPECT_EQ(it.pages_sent + it.pages_skipped, it.pages_to_send);
    if (i == 0) {
      EXPECT_EQ(it.pages_to_send, c.guest.pages);
    }
    // What an iteration leaves dirty is exactly what the next one starts with.
    if (i > 0) {
      EXPECT_EQ(it.pages_to_send, r.iterations[i - 1].pages_remaining);
    }
    if (it.final) {
      EXPECT_EQ(it.pages_skipped, 0u);
    }
    const auto& e = it.by_encoding;
    EXPECT_EQ(e.wire_headers + e.wire_control + e.wire_literal, it.codec_bytes);
    EXPECT_EQ(e.zero + e.raw + e.literal + e.cbr_hit + e.delta + e.unchanged, it.pages_sent * sim::kSimPageSize);
    EXPECT_GE(it.channel_bytes, it.codec_bytes);
    EXPECT_LE(it.channel_bytes, channel_bytes(it.codec_bytes) + it.batches * (32 + 22));
    EXPECT_NEAR(it.duration_s, transfer_seconds(c.link, it.channel_bytes), 1e-9 * (1 + it.batches));
    EXPECT_NEAR(it.start_s, time, 1e-6);
    codec += it.codec_bytes;
    channel += it.channel_bytes;
    time += it.duration_s;
  }
  EXPECT_EQ(codec, r.codec_bytes);
  EXPECT_EQ(channel, r.channel_bytes);
  if (c.use_codec) {
    EXPECT_EQ(codec, r.codec.wire_bytes) << "bytes counted must be the bytes the codec produced";
  }
  const double half_rtt = std::chrono::duration<double>(c.link.rtt).count() / 2;
  EXPECT_NEAR(r.total_time_s, time + half_rtt, 1e-6);
  EXPECT_NEAR(r.pause_time_s, r.iterations.back().duration_s + half_rtt, 1e-9);
  EXPECT_TRUE(r.verified);
  EXPECT_EQ(r.mismatched_pages, 0u);
}

TEST(MigSim, ConservesBytesAndDeliversEveryPage) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  for (const char* profile : {"tpcw", "kernel", "specjbb"}) {
    SCOPED_TRACE(profile);
    for (auto rule : {wan::StopRule::kSmart, wan::StopRule::kXenDefault}) {
      SimConfig c = small(profile, seed, rule);
      expect_conserved(c, run(c));
      c.use_codec = false;
      expect_conserved(c, run(c));
      c.use_codec = true;
      c.skip_redirtied = false;
      expect_conserved(c, run(c));
    }
  }
}

TEST(MigSim, AGuestThatDoesNotWriteNeedsOneIteration) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  SimConfig c = small("kernel", seed);
  c.guest.profile.hot_writes_per_s = c.guest.profile.warm_writes_per_s = 0;
  const SimResult r = run(c);
  expect_conserved(c, r);
  ASSERT_EQ(r.iterations.size(), 2u) << "one live iteration, then an empty stop-and-copy";
  EXPECT_EQ(r.iterations[0].pages_sent, c.guest.pages);
  EXPECT_EQ(r.iterations[1].pages_sent, 0u);
  EXPECT_EQ(r.iterations[1].codec_bytes, 0u);
  EXPECT_EQ(r.codec_bytes, r.iterations[0].codec_bytes);
  EXPECT_NEAR(r.pause_time_s, 0.01, 1e-9);  // half the RTT: nothing left to send
  // Raw: exactly pages x (4 KiB + 8).
  c.use_codec = false;
  const SimResult raw = run(c);
  ASSERT_EQ(raw.iterations.size(), 2u);
  EXPECT_EQ(raw.codec_bytes, c.guest.pages * (sim::kSimPageSize + 8));
  EXPECT_LT(r.codec_bytes, raw.codec_bytes);  // zero and duplicate pages
  // Xen's rule looks at what an iteration sent, so it needs an empty second one.
  c.stop = wan::preset(wan::StopRule::kXenDefault);
  const SimResult xen = run(c);
  ASSERT_EQ(xen.iterations.size(), 3u);
  EXPECT_EQ(xen.iterations[1].pages_to_send, 0u);
  EXPECT_EQ(xen.codec_bytes, raw.codec_bytes);
}

TEST(MigSim, ASeedReplaysExactly) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  const SimConfig c = small("tpcw", seed);
  const SimResult a = run(c), b = run(c);
  ASSERT_EQ(a.iterations.size(), b.iterations.size());
  for (size_t i = 0; i < a.iterations.size(); ++i) {
    EXPECT_EQ(a.iterations[i].pages_sent, b.iterations[i].pages_sent);
    EXPECT_EQ(a.iterations[i].pages_remaining, b.iterations[i].pages_remaining);
    EXPECT_EQ(a.iterations[i].codec_bytes, b.iterations[i].codec_bytes);
    EXPECT_EQ(a.iterations[i].decision, b.iterations[i].decision);
  }
  EXPECT_EQ(a.guest_writes, b.guest_writes);
  EXPECT_EQ(a.total_time_s, b.total_time_s);
  // Another seed is another guest.
  const SimResult other = run(small("tpcw", seed + 1));
  EXPECT_NE(other.codec_bytes, a.codec_bytes);
}

TEST(MigSim, StopRulesEndWhereTheySay) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  // SPECjbb's hot set never converges: Xen's default runs its 29 live iterations.
  const SimResult xen = run(small("specjbb", seed, wan::StopRule::kXenDefault));
  EXPECT_EQ(xen.iterations.size(), 30u);
  EXPECT_NE(xen.stop_reason.find("iteration cap"), std::string::npos) << xen.stop_reason;
  const SimResult x410 = run(small("specjbb", seed, wan::StopRule::kXen410));
  EXPECT_EQ(x410.iterations.size(), 6u);
  const SimResult smart = run(small("specjbb", seed));
  EXPECT_LT(smart.iterations.size(), xen.iterations.size());
  EXPECT_LT(smart.channel_bytes, xen.channel_bytes);
}

TEST(MigSim, BadConfigurationIsAnError) {
  SimConfig c = small("tpcw", 1);
  c.link.rate_bits_per_s = 0;
  EXPECT_FALSE(run_migration(c).ok());
  c = small("tpcw", 1);
  c.codec.sub_blocks = 3;
  EXPECT_FALSE(run_migration(c).ok());
  c = small("tpcw", 1);
  c.stop.window = 0;
  EXPECT_FALSE(run_migration(c).ok());
  c = small("tpcw", 1);
  c.guest.pages = 0;
  EXPECT_FALSE(run_migration(c).ok());
}

}  // namespace
}  // namespace tideway::migsim

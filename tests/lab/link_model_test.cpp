// The emulated link's scheduling logic, with time injected: no root, no
// sleeping, deterministic (seeds are fixed and printed).
#include "wan/wanem/link_model.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

namespace tideway::wanem {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr Nanos kT0 = std::chrono::seconds{100};

LinkParams params(double delay_ms, double rate_mbit, uint64_t queue_bytes = 0) {
  LinkParams p;
  p.delay = Nanos{static_cast<int64_t>(delay_ms * 1e6)};
  p.rate_bps = static_cast<uint64_t>(rate_mbit * 1e6);
  p.queue_bytes = queue_bytes;
  return p;
}

uint64_t seed_for(const char* test) {
  const uint64_t seed = 20261123;
  std::printf("[ seed     ] %s seed=%llu\n", test, static_cast<unsigned long long>(seed));
  return seed;
}

TEST(LinkModel, IdlePacketDepartsAfterExactlyTheDelay) {
  LinkModel m(params(25, 0), 1);
  for (int i = 0; i < 5; ++i) {
    const Nanos now = kT0 + milliseconds{100 * i};
    const Decision d = m.offer(now, 84);
    ASSERT_EQ(d.verdict, Verdict::kForward);
    EXPECT_EQ(d.depart - now, milliseconds{25});
  }
}

TEST(LinkModel, SerialisationTimeIsSizeTimesEightOverRate) {
  // 1500 B at 12 Mbit/s = 1 ms on the wire, then 10 ms of delay.
  LinkModel m(params(10, 12), 1);
  const Decision d = m.offer(kT0, 1500);
  ASSERT_EQ(d.verdict, Verdict::kForward);
  EXPECT_EQ(d.depart - kT0, milliseconds{11});
}

TEST(LinkModel, BackToBackPacketsLeaveOneSerialisationTimeApart) {
  LinkModel m(params(10, 12, 1 << 20), 1);
  Nanos prev{0};
  for (int i = 0; i < 100; ++i) {
    const Decision d = m.offer(kT0, 1500);  // a burst: all arrive at once
    ASSERT_EQ(d.verdict, Verdict::kForward) << "packet " << i;
    if (i > 0) {
      EXPECT_EQ(d.depart - prev, milliseconds{1});
    }
    prev = d.depart;
  }
  // The 100th leaves after 100 serialisation times + the delay.
  EXPECT_EQ(prev - kT0, milliseconds{110});
}

TEST(LinkModel, LongRunThroughputEqualsTheRate) {
  // Offer 2x the rate for 10 s; what gets through must be the rate.
  LinkModel m(params(25, 100, 256 * 1024), 1);
  uint64_t forwarded = 0;
  Nanos last{0};
  const Nanos gap = microseconds{60};  // 1500 B / 60 us = 200 Mbit/s offered
  for (Nanos now = kT0; now < kT0 + std::chrono::seconds{10}; now += gap) {
    const Decision d = m.offer(now, 1500);
    if (d.verdict == Verdict::kForward) {
      forwarded += 1500;
      last = d.depart;
    }
  }
  const double seconds = static_cast<double>((last - milliseconds{25} - kT0).count()) / 1e9;
  const double mbit = static_cast<double>(forwarded) * 8 / seconds / 1e6;
  EXPECT_NEAR(mbit, 100.0, 0.5);
}

TEST(LinkModel, QueueCapTailDropsAndBacklogNeverExceedsIt) {
  const uint64_t cap = 30'000;  // 20 packets of 1500
  LinkModel m(params(5, 8, cap), 1);
  int accepted = 0, dropped = 0;
  for (int i = 0; i < 100; ++i) {
    const Decision d = m.offer(kT0, 1500);
    if (d.verdict == Verdict::kForward) ++accepted;
    if (d.verdict == Verdict::kDropQueue) ++dropped;
    EXPECT_LE(m.backlog_bytes(kT0), cap);
  }
  EXPECT_EQ(accepted, 20);
  EXPECT_EQ(dropped, 80);
  // Drops are at the tail: once 1.5 ms (one packet at 8 Mbit/s) has
  // drained, exactly one more packet fits.
  const Nanos later = kT0 + microseconds{1500};
  EXPECT_EQ(m.offer(later, 1500).verdict, Verdict::kForward);
  EXPECT_EQ(m.offer(later, 1500).verdict, Verdict::kDropQueue);
  // After the whole backlog drains the queue is empty again.
  EXPECT_EQ(m.backlog_bytes(kT0 + milliseconds{100}), 0u);
  EXPECT_EQ(m.offer(kT0 + milliseconds{100}, 1500).verdict, Verdict::kForward);
}

TEST(LinkModel, BacklogOvershootsTheCapByAtMostOnePacket) {
  const uint64_t cap = 10'000;
  LinkModel m(params(5, 8, cap), 1);
  for (int i = 0; i < 50; ++i) {
    (void)m.offer(kT0, 1400);  // 10000 is not a multiple of 1400
    EXPECT_LT(m.backlog_bytes(kT0), cap + 1400);
  }
  EXPECT_EQ(m.backlog_bytes(kT0), 8u * 1400);  // 7 fit under 10000, the 8th overshoots
}

TEST(LinkModel, EmptyQueueAcceptsAPacketBiggerThanTheCap) {
  // A 64 KiB GSO super-packet meeting an empty 16 KiB queue: a router would
  // have taken its first segments; taking it whole is the closer model.
  LinkModel m(params(5, 100, 16 * 1024), 1);
  EXPECT_EQ(m.offer(kT0, 65'000).verdict, Verdict::kForward);
  EXPECT_EQ(m.offer(kT0, 1500).verdict, Verdict::kDropQueue);
}

TEST(LinkModel, DefaultQueueIsOneBdpAtLeastTwoMsAndAtLeast64KiB) {
  EXPECT_EQ(params(25, 100).default_queue_bytes(), 625'000u);  // 100 Mbit/s x 50 ms
  EXPECT_EQ(params(25, 1000).default_queue_bytes(), 6'250'000u);
  EXPECT_EQ(params(0, 100).default_queue_bytes(), 64u * 1024);      // 2 ms = 25 KB < 64 KiB
  EXPECT_EQ(params(0, 1000).default_queue_bytes(), 250'000u);       // 2 ms at 1 Gbit/s
  EXPECT_EQ(params(0.5, 1000).default_queue_bytes(), 250'000u);     // BDP 125 KB < 2 ms
  EXPECT_EQ(params(25, 0).default_queue_bytes(), 64u * 1024);
  EXPECT_EQ(params(25, 100, 1000).effective_queue_bytes(), 1000u);
}

TEST(LinkModel, JitterStaysInRangeAndNeverReorders) {
  const uint64_t seed = seed_for("JitterStaysInRangeAndNeverReorders");
  LinkParams p = params(25, 0);
  p.jitter = milliseconds{5};
  LinkModel m(p, seed);
  // Sparse packets (100 ms apart): each sees delay +- jitter, unclamped.
  double sum_ms = 0;
  Nanos lo = Nanos::max(), hi = Nanos::min();
  const int n = 2000;
  for (int i = 0; i < n; ++i) {
    const Nanos now = kT0 + milliseconds{100 * i};
    const Decision d = m.offer(now, 100);
    ASSERT_EQ(d.verdict, Verdict::kForward);
    const Nanos one_way = d.depart - now;
    ASSERT_GE(one_way, milliseconds{20});
    ASSERT_LE(one_way, milliseconds{30});
    lo = std::min(lo, one_way);
    hi = std::max(hi, one_way);
    sum_ms += static_cast<double>(one_way.count()) / 1e6;
  }
  EXPECT_NEAR(sum_ms / n, 25.0, 0.2);  // uniform: sd 2.9 ms / sqrt(2000) = 0.06
  EXPECT_LT(lo, milliseconds{21});     // the range is really used
  EXPECT_GT(hi, milliseconds{29});
  // Dense packets (10 us apart, jitter 5 ms): departures never go backwards.
  Nanos prev{0};
  for (int i = 0; i < 10'000; ++i) {
    const Nanos now = kT0 + std::chrono::seconds{1000} + microseconds{10 * i};
    const Decision d = m.offer(now, 100);
    ASSERT_GE(d.depart, prev) << "packet " << i << " would overtake its predecessor";
    ASSERT_GE(d.depart - now, milliseconds{20});
    prev = d.depart;
  }
}

TEST(LinkModel, LossFractionMatchesTheSettingForAFixedSeed) {
  const uint64_t seed = seed_for("LossFractionMatchesTheSettingForAFixedSeed");
  LinkParams p = params(1, 0);
  p.loss = 0.10;
  LinkModel m(p, seed);
  const int n = 100'000;
  int lost = 0;
  std::vector<bool> pattern;
  for (int i = 0; i < n; ++i) {
    const Decision d = m.offer(kT0 + microseconds{i}, 100);
    lost += d.verdict == Verdict::kDropLoss;
    if (i < 1000) pattern.push_back(d.verdict == Verdict::kDropLoss);
  }
  // Binomial sd = sqrt(0.1 * 0.9 / 1e5) = 0.00095; 5 sd = 0.0047.
  EXPECT_NEAR(static_cast<double>(lost) / n, 0.10, 0.0047);
  // Same seed, same drops: a run can be replayed.
  LinkModel again(p, seed);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(again.offer(kT0 + microseconds{i}, 100).verdict == Verdict::kDropLoss, pattern[static_cast<size_t>(i)]);
  }
}

TEST(LinkModel, ZeroAndFullLoss) {
  LinkParams p = params(1, 0);
  LinkModel none(p, 7);
  p.loss = 1.0;
  LinkModel all(p, 7);
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_EQ(none.offer(kT0 + microseconds{i}, 100).verdict, Verdict::kForward);
    ASSERT_EQ(all.offer(kT0 + microseconds{i}, 100).verdict, Verdict::kDropLoss);
  }
}

TEST(LinkModel, PartitionDropsEverythingUntilHealed) {
  LinkParams p = params(25, 100);
  p.loss = 0.5;  // partition wins over loss in the counters
  LinkModel m(p, 3);
  m.set_partitioned(true);
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(m.offer(kT0 + milliseconds{i}, 1500).verdict, Verdict::kDropPartition);
  }
  EXPECT_EQ(m.backlog_bytes(kT0 + milliseconds{100}), 0u);  // dropped packets use no queue
  m.set_partitioned(false);
  p.loss = 0;
  p.partitioned = false;
  m.set_params(p);
  const Decision d = m.offer(kT0 + milliseconds{200}, 1500);
  EXPECT_EQ(d.verdict, Verdict::kForward);
  EXPECT_EQ(d.depart - (kT0 + milliseconds{200}), milliseconds{25} + microseconds{120});
}

TEST(LinkModel, LoweringTheDelayWhileRunningDoesNotReorder) {
  LinkModel m(params(100, 0), 1);
  const Decision first = m.offer(kT0, 100);
  m.set_params(params(10, 0));
  const Decision second = m.offer(kT0 + milliseconds{1}, 100);
  EXPECT_EQ(first.depart - kT0, milliseconds{100});
  EXPECT_EQ(second.depart, first.depart);  // held back, not sent ahead
  const Decision third = m.offer(kT0 + milliseconds{200}, 100);
  EXPECT_EQ(third.depart - (kT0 + milliseconds{200}), milliseconds{10});
}

TEST(LinkParams, ValidateExplainsBadSettings) {
  LinkParams p = params(25, 100);
  EXPECT_EQ(p.validate(), "");
  p.loss = 1.5;
  EXPECT_NE(p.validate().find("loss"), std::string::npos);
  p = params(5, 100);
  p.jitter = milliseconds{6};
  EXPECT_NE(p.validate().find("jitter"), std::string::npos);
  p = params(5, 0.001);
  EXPECT_NE(p.validate().find("rate"), std::string::npos);
  p = params(20'000, 100);
  EXPECT_NE(p.validate().find("delay"), std::string::npos);
}

}  // namespace
}  // namespace tideway::wanem

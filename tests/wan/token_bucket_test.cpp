#include "wan/token_bucket.h"

#include <gtest/gtest.h>

namespace tideway::wan {
namespace {

using namespace std::chrono_literals;

TEST(TokenBucket, UnlimitedIsAlwaysReady) {
  TokenBucket b;
  EXPECT_TRUE(b.unlimited());
  b.consume(1 << 30);
  EXPECT_TRUE(b.ready(Nanos{0}));
  EXPECT_EQ(b.wait_time(Nanos{0}), Nanos{0});
}

TEST(TokenBucket, LongRunRateIsExact) {
  ManualClock clock;
  TokenBucket b(1'000'000, 10'000, clock.now());  // 1 MB/s, 10 KB burst
  uint64_t sent = 0;
  const Nanos start = clock.now();
  // Send 1500-byte frames whenever allowed, for 10 simulated seconds.
  while (clock.now() - start < 10s) {
    if (b.ready(clock.now())) {
      b.consume(1500);
      sent += 1500;
    } else {
      clock.advance(b.wait_time(clock.now()));
    }
  }
  // 10 s at 1 MB/s plus at most the burst and one frame of debt.
  EXPECT_GE(sent, 10'000'000u);
  EXPECT_LE(sent, 10'000'000u + 10'000 + 1500);
}

TEST(TokenBucket, BurstIsBounded) {
  ManualClock clock;
  TokenBucket b(1'000'000, 4096, clock.now());
  clock.advance(100s);  // a long idle period must not bank 100 MB
  size_t burst = 0;
  while (b.ready(clock.now())) {
    b.consume(1000);
    burst += 1000;
  }
  EXPECT_EQ(burst, 5000u);  // 4096 tokens: 5 frames, the last one in debt
}

TEST(TokenBucket, WaitTimeMatchesDebt) {
  ManualClock clock;
  TokenBucket b(1'000'000, 1000, clock.now());
  b.consume(1000 + 50'000);  // 50 KB of debt
  const Nanos w = b.wait_time(clock.now());
  EXPECT_NEAR(static_cast<double>(w.count()), 50e6, 0.01e6);  // ~50 ms
  clock.advance(w - 1ms);
  EXPECT_FALSE(b.ready(clock.now()));
  clock.advance(1ms);
  EXPECT_TRUE(b.ready(clock.now()));
}

}  // namespace
}  // namespace tideway::wan

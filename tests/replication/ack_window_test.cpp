// The committed counter: it advances only over a contiguous prefix of acked
// seqs; out-of-order acks are held until the gap closes.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>

#include "agent/ack_window.h"
#include "tests/replication/repl_test_util.h"

namespace tideway::testing {
namespace {

using agent::AckWindow;

TEST(AckWindow, InOrderAcksAdvance) {
  AckWindow w;
  EXPECT_EQ(w.committed(), 0u);
  for (uint64_t s = 1; s <= 10; ++s) {
    EXPECT_TRUE(w.ack_one(s));
    EXPECT_EQ(w.committed(), s);
    EXPECT_EQ(w.held(), 0u);
  }
}

TEST(AckWindow, GapHoldsLaterAcksUntilItCloses) {
  AckWindow w;
  EXPECT_FALSE(w.ack_one(2));
  EXPECT_FALSE(w.ack_one(3));
  EXPECT_FALSE(w.ack_one(5));
  EXPECT_EQ(w.committed(), 0u);
  EXPECT_EQ(w.held(), 3u);
  EXPECT_TRUE(w.ack_one(1));  // closes the first gap: 1 2 3
  EXPECT_EQ(w.committed(), 3u);
  EXPECT_EQ(w.held(), 1u);
  EXPECT_TRUE(w.ack_one(4));  // 4 5
  EXPECT_EQ(w.committed(), 5u);
  EXPECT_EQ(w.held(), 0u);
}

TEST(AckWindow, DuplicatesAreIgnored) {
  AckWindow w;
  EXPECT_TRUE(w.ack_one(1));
  EXPECT_FALSE(w.ack_one(1));
  EXPECT_FALSE(w.ack_one(3));
  EXPECT_FALSE(w.ack_one(3));  // a held duplicate is held once
  EXPECT_EQ(w.held(), 1u);
  EXPECT_EQ(w.committed(), 1u);
  EXPECT_FALSE(w.ack_through(1));
  EXPECT_TRUE(w.ack_one(2));
  EXPECT_EQ(w.committed(), 3u);
  EXPECT_EQ(w.held(), 0u);
  EXPECT_FALSE(w.ack_one(2));
  EXPECT_FALSE(w.ack_through(3));
  EXPECT_EQ(w.committed(), 3u);
}

TEST(AckWindow, CumulativeAckCoversHeldAndAbsorbsAboveIt) {
  AckWindow w;
  w.ack_one(3);
  w.ack_one(6);
  w.ack_one(7);
  EXPECT_EQ(w.held(), 3u);
  EXPECT_TRUE(w.ack_through(5));  // covers 3; 6 7 join
  EXPECT_EQ(w.committed(), 7u);
  EXPECT_EQ(w.held(), 0u);
  EXPECT_FALSE(w.ack_through(2));  // never goes back
  EXPECT_EQ(w.committed(), 7u);
}

TEST(AckWindow, ResetStartsCountingAgain) {
  AckWindow w;
  w.ack_one(1);
  w.ack_one(3);
  w.reset(100);
  EXPECT_EQ(w.committed(), 100u);
  EXPECT_EQ(w.held(), 0u);
  EXPECT_FALSE(w.ack_one(50));
  EXPECT_FALSE(w.ack_one(102));
  EXPECT_TRUE(w.ack_one(101));
  EXPECT_EQ(w.committed(), 102u);
}

// Random permutations of 1..n, with duplicates and occasional cumulative
// acks mixed in, against a model: committed is always the longest prefix
// of seqs acked so far.
TEST(AckWindow, RandomPermutationsMatchTheModel) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 200; ++round) {
    const uint64_t n = 1 + rng() % 500;
    std::vector<uint64_t> order(n);
    std::iota(order.begin(), order.end(), 1);
    // Locally shuffled (realistic: acks within a window) or fully shuffled.
    if (rng() % 2) {
      std::shuffle(order.begin(), order.end(), rng);
    } else {
      const size_t win = 1 + rng() % 16;
      for (size_t i = 0; i < n; i += win)
        std::shuffle(order.begin() + static_cast<ptrdiff_t>(i),
                     order.begin() + static_cast<ptrdiff_t>(std::min<size_t>(n, i + win)), rng);
    }
    AckWindow w;
    std::set<uint64_t> acked;
    uint64_t model = 0;
    auto advance_model = [&] {
      while (acked.count(model + 1)) ++model;
    };
    for (size_t i = 0; i < order.size(); ++i) {
      const uint64_t before = w.committed();
      bool advanced = false;
      if (rng() % 20 == 0 && model > 0) {
        // A cumulative ack of something at or below what is committed: no-op.
        advanced = w.ack_through(1 + rng() % model);
      } else if (rng() % 10 == 0 && i > 0) {
        advanced = w.ack_one(order[rng() % i]);  // duplicate of an earlier ack
      } else {
        acked.insert(order[i]);
        advanced = w.ack_one(order[i]);
      }
      if (acked.count(order[i]) == 0) {
        // The step above was a duplicate/cumulative one; deliver order[i] too.
        acked.insert(order[i]);
        advanced = w.ack_one(order[i]) || advanced;
      }
      advance_model();
      ASSERT_EQ(w.committed(), model) << "round " << round << " step " << i;
      ASSERT_EQ(advanced, w.committed() > before) << "round " << round << " step " << i;
      ASSERT_EQ(w.held(), acked.size() - model) << "round " << round << " step " << i;
    }
    EXPECT_EQ(w.committed(), n);
    EXPECT_EQ(w.held(), 0u);
  }
}

}  // namespace
}  // namespace tideway::testing

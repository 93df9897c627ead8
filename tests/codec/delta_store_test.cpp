// The delta store: bounded, in-place updates, FIFO eviction of the oldest
// address, no conflict misses while the working set fits.
#include "wan/codec/delta_store.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/codec/codec_test_util.h"
#include "wan/codec/state_digest.h"

namespace tideway::wan::codec {
namespace {

using testing::Page;

Page filled(uint8_t v) { return Page(kPageSize, v); }

TEST(DeltaStore, PutFindUpdateErase) {
  DeltaStore s(4);
  EXPECT_EQ(s.find(4096), nullptr);
  s.put(4096, filled(1).data());
  ASSERT_NE(s.find(4096), nullptr);
  EXPECT_EQ(s.find(4096)[100], 1);
  s.put(4096, filled(2).data());
  EXPECT_EQ(s.find(4096)[100], 2);
  EXPECT_EQ(s.size(), 1u);
  s.erase(4096);
  EXPECT_EQ(s.find(4096), nullptr);
  EXPECT_EQ(s.size(), 0u);
  s.erase(8192);  // absent: no-op
}

TEST(DeltaStore, DisabledStoresNothing) {
  DeltaStore s(0);
  EXPECT_FALSE(s.enabled());
  s.put(0, filled(1).data());
  EXPECT_EQ(s.find(0), nullptr);
}

TEST(DeltaStore, WorkingSetThatFitsIsNeverEvicted) {
  // Addresses 4096 apart (the pattern that defeats a set-associative store
  // with a weak hash) filling the store exactly, re-sent many times.
  DeltaStore s(256);
  for (int round = 0; round < 20; ++round)
    for (uint64_t a = 0; a < 256; ++a) s.put(a * kPageSize, filled(static_cast<uint8_t>(round + a)).data());
  for (uint64_t a = 0; a < 256; ++a) {
    const uint8_t* p = s.find(a * kPageSize);
    ASSERT_NE(p, nullptr) << a;
    EXPECT_EQ(p[kPageSize - 1], static_cast<uint8_t>(19 + a));
  }
  EXPECT_EQ(s.size(), 256u);
}

TEST(DeltaStore, EvictsTheOldestNewAddressFirst) {
  DeltaStore s(3);
  s.put(1, filled(1).data());
  s.put(2, filled(2).data());
  s.put(3, filled(3).data());
  s.put(1, filled(11).data());  // an update keeps its place in the ring
  s.put(4, filled(4).data());   // takes address 1's slot: the oldest
  EXPECT_EQ(s.find(1), nullptr);
  ASSERT_NE(s.find(2), nullptr);
  ASSERT_NE(s.find(3), nullptr);
  ASSERT_NE(s.find(4), nullptr);
  EXPECT_EQ(s.find(4)[0], 4);
  s.erase(3);                  // a hole, ahead of the head...
  s.put(5, filled(5).data());  // ...so the next oldest, 2, goes first
  EXPECT_EQ(s.find(2), nullptr);
  EXPECT_EQ(s.size(), 2u);     // 4 and 5
  s.put(6, filled(6).data());  // the head reaches the hole: nobody evicted
  EXPECT_EQ(s.size(), 3u);
  EXPECT_NE(s.find(4), nullptr);
  EXPECT_NE(s.find(5), nullptr);
  EXPECT_NE(s.find(6), nullptr);
}

TEST(DeltaStore, BoundedAndKeepsTheNewest) {
  const uint32_t slots = 32;
  DeltaStore s(slots);
  std::map<uint64_t, uint8_t> last;
  for (uint64_t i = 0; i < 1000; ++i) {
    const uint64_t a = (i * 7919 % 300) * kPageSize;
    const auto v = static_cast<uint8_t>(i);
    s.put(a, filled(v).data());
    last[a] = v;
    ASSERT_LE(s.size(), size_t{slots});
    const uint8_t* p = s.find(a);  // the most recent put is always present
    ASSERT_NE(p, nullptr);
    ASSERT_EQ(p[kPageSize / 2], v);
  }
  size_t found = 0;
  for (const auto& [a, v] : last) {
    if (const uint8_t* p = s.find(a)) {
      ++found;
      ASSERT_EQ(p[0], v);
    }
  }
  EXPECT_EQ(found, size_t{slots});
}

TEST(DeltaStore, SameOperationsSameState) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  DeltaStore a(64), b(64);
  CbrSlab none(0, 1024);
  for (int i = 0; i < 3000; ++i) {
    const uint64_t addr = (rng() % 200) * kPageSize;
    if (rng() % 5 == 0) {
      a.erase(addr);
      b.erase(addr);
    } else {
      const auto p = filled(static_cast<uint8_t>(rng()));
      a.put(addr, p.data());
      b.put(addr, p.data());
    }
  }
  EXPECT_EQ(state_digest(none, a), state_digest(none, b));
  b.put(12345 * kPageSize, filled(9).data());
  EXPECT_NE(state_digest(none, a), state_digest(none, b));
}

}  // namespace
}  // namespace tideway::wan::codec

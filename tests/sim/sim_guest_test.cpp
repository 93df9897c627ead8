// The simulated guest: content is a pure function of (seed, page,
// version), writes do not depend on how time is sliced, the dirty set is
// exact, and the profiles are what they claim.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "agent/sim_guest/sim_guest.h"
#include "tests/test_seed.h"

namespace tideway::sim {
namespace {

using namespace std::chrono_literals;
using Page = std::vector<uint8_t>;

SimProfile test_profile() {
  SimProfile p = *find_profile("tpcw");
  p.hot_fraction = 0.05;
  p.warm_fraction = 0.2;
  return p;
}

std::unique_ptr<SimGuest> make(const SimProfile& p, uint64_t pages, uint64_t seed) {
  auto g = SimGuest::create({p, pages, seed});
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().detail);
  return std::move(*g);
}

Page read(const SimGuest& g, uint64_t page) {
  Page out(kSimPageSize);
  g.read_page(page, out);
  return out;
}

TEST(SimGuest, SameWritesHoweverTimeIsSliced) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  SimProfile p = test_profile();
  p.burst_spread = 0.5;
  p.burst_period_s = 0.3;
  auto a = make(p, 4096, seed);
  auto b = make(p, 4096, seed);
  a->advance(7s);
  std::mt19937_64 rng(seed);
  while (b->now() < 7s) {
    auto step = std::chrono::nanoseconds(rng() % 50'000'000);
    b->advance(std::min<std::chrono::nanoseconds>(step, 7s - b->now()));
  }
  ASSERT_EQ(a->now(), b->now());
  EXPECT_GT(a->writes(), 0u);
  EXPECT_EQ(a->writes(), b->writes());
  for (uint64_t pg = 0; pg < a->pages(); ++pg) ASSERT_EQ(a->version(pg), b->version(pg)) << "page " << pg;
  EXPECT_EQ(a->take_dirty(), b->take_dirty());
}

TEST(SimGuest, ContentIsAFunctionOfSeedPageAndVersion) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  auto a = make(test_profile(), 2048, seed);
  auto b = make(test_profile(), 2048, seed);
  auto other = make(test_profile(), 2048, seed + 1);
  a->advance(3s);
  Page at(kSimPageSize);
  uint64_t differ_from_other_seed = 0, nonzero = 0;
  for (uint64_t pg = 0; pg < a->pages(); ++pg) {
    // The same bytes whether read as "current" or by version, in another
    // guest of the same seed that never ran.
    b->read_page_version(pg, a->version(pg), at);
    ASSERT_EQ(read(*a, pg), at) << "page " << pg;
    if (a->page_class(pg) == PageClass::kZero) {
      ASSERT_EQ(at, Page(kSimPageSize, 0));
      continue;
    }
    ++nonzero;
    if (read(*other, pg) != read(*b, pg)) ++differ_from_other_seed;
  }
  // Duplicate pages of two seeds can coincide only by pattern: rare.
  EXPECT_GT(differ_from_other_seed, nonzero * 8 / 10);
}

TEST(SimGuest, PartialWritesChangeOneFieldAndFullWritesTheWholePage) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  const SimProfile p = test_profile();
  auto g = make(p, 2048, seed);
  PageContent content(p, seed);
  Page prev(kSimPageSize), cur(kSimPageSize);
  int partial = 0, full = 0;
  for (uint64_t pg = 0; pg < g->pages() && (partial < 20 || full < 20); ++pg) {
    const PageClass c = g->page_class(pg);
    if (c != PageClass::kPartial && c != PageClass::kFull) continue;
    for (uint32_t v = 1; v <= 2 * p.fields_per_page + 1; ++v) {
      content.fill(pg, v - 1, prev);
      content.fill(pg, v, cur);
      size_t first = kSimPageSize, last = 0, changed = 0;
      for (size_t i = 0; i < kSimPageSize; ++i)
        if (prev[i] != cur[i]) first = std::min(first, i), last = i, ++changed;
      if (c == PageClass::kPartial) {
        const uint32_t off = content.field_offset(pg, v);
        ASSERT_LE(off + p.write_bytes, kSimPageSize);
        ASSERT_GE(first, off) << "page " << pg << " version " << v;
        ASSERT_LT(last, off + p.write_bytes) << "page " << pg << " version " << v;
        ASSERT_GT(changed, p.write_bytes / 2);  // random bytes: a few may match by chance
      } else {
        ASSERT_GT(changed, kSimPageSize * 9 / 10);
      }
    }
    (c == PageClass::kPartial ? partial : full)++;
  }
  EXPECT_GE(partial, 20);
  EXPECT_GE(full, 20);
}

TEST(SimGuest, TakeDirtyIsExactSortedAndClears) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  auto g = make(test_profile(), 4096, seed);
  std::vector<uint32_t> before(g->pages());
  for (int round = 0; round < 5; ++round) {
    for (uint64_t pg = 0; pg < g->pages(); ++pg) before[pg] = g->version(pg);
    g->advance(std::chrono::milliseconds(50 + 200 * round));
    const uint64_t count = g->dirty_count();
    std::set<uint32_t> expect;
    for (uint64_t pg = 0; pg < g->pages(); ++pg) {
      ASSERT_EQ(g->is_dirty(pg), g->version(pg) != before[pg]) << "page " << pg;
      if (g->version(pg) != before[pg]) expect.insert(static_cast<uint32_t>(pg));
    }
    const auto dirty = g->take_dirty();
    EXPECT_EQ(dirty.size(), count);
    EXPECT_EQ(dirty, std::vector<uint32_t>(expect.begin(), expect.end()));
    EXPECT_EQ(g->dirty_count(), 0u);
    for (uint32_t pg : dirty) ASSERT_FALSE(g->is_dirty(pg));
  }
}

TEST(SimGuest, RatesSetsAndZeroPagesFollowTheProfile) {
  SimProfile p = test_profile();
  p.burst_spread = 0;
  const uint64_t pages = 16384;  // 64 MiB: rates scale by 1/16
  auto g = make(p, pages, 7);
  g->advance(10s);
  const double expect = (p.hot_writes_per_s + p.warm_writes_per_s) * 10 / 16;
  EXPECT_NEAR(static_cast<double>(g->writes()), expect, expect * 0.001 + 2);
  EXPECT_NEAR(static_cast<double>(g->hot_pages()), p.hot_fraction * pages, 0.15 * p.hot_fraction * pages);
  EXPECT_NEAR(static_cast<double>(g->warm_pages()), p.warm_fraction * pages, 0.1 * p.warm_fraction * pages);
  uint64_t zero = 0;
  for (uint64_t pg = 0; pg < pages; ++pg) {
    if (g->page_class(pg) != PageClass::kZero) continue;
    ++zero;
    ASSERT_EQ(g->version(pg), 0u) << "zero page " << pg << " was written";
  }
  EXPECT_NEAR(static_cast<double>(zero), p.zero_fraction * pages, 0.1 * p.zero_fraction * pages);
}

TEST(SimGuest, NoWritesWithoutRates) {
  SimProfile p = test_profile();
  p.hot_writes_per_s = p.warm_writes_per_s = 0;
  auto g = make(p, 1024, 3);
  g->advance(100s);
  EXPECT_EQ(g->writes(), 0u);
  EXPECT_TRUE(g->take_dirty().empty());
}

TEST(SimGuest, EveryProfileIsValidAndBadOnesAreRefused) {
  for (const auto& name : profile_names()) {
    auto p = find_profile(name);
    ASSERT_TRUE(p) << name;
    EXPECT_TRUE(validate(*p).ok()) << name;
  }
  EXPECT_FALSE(find_profile("nope"));
  SimProfile p = test_profile();
  p.hot_fraction = 0.9;  // with warm 0.2 and zero 0.12: more than the non-zero pages
  EXPECT_FALSE(SimGuest::create({p, 1024, 1}).ok());
  p = test_profile();
  p.write_bytes = 0;
  EXPECT_FALSE(SimGuest::create({p, 1024, 1}).ok());
  p = test_profile();
  p.fields_per_page = 1000;
  EXPECT_FALSE(SimGuest::create({p, 1024, 1}).ok());
  p = test_profile();
  p.hot_writes_per_s = -1;
  EXPECT_FALSE(SimGuest::create({p, 1024, 1}).ok());
  EXPECT_FALSE(SimGuest::create({test_profile(), 0, 1}).ok());
  EXPECT_FALSE(SimGuest::create({test_profile(), kMaxSimPages + 1, 1}).ok());
}

}  // namespace
}  // namespace tideway::sim

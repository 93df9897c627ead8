// The encoder's CBR index against a model: FIFO eviction over a ring of
// slots, at most one slot per hash (the newest), with good and with
// colliding hashes, through many wrap-arounds.
#include "wan/codec/cbr_index.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "tests/codec/codec_test_util.h"

namespace tideway::wan::codec {
namespace {

// Model: hash -> newest slot, and slot -> hash for the slots in use.
struct Model {
  std::map<uint64_t, uint32_t> by_hash;
  std::map<uint32_t, uint64_t> by_slot;
  void insert(uint64_t h, uint32_t slot) {
    if (auto it = by_slot.find(slot); it != by_slot.end()) {
      auto hit = by_hash.find(it->second);
      if (hit != by_hash.end() && hit->second == slot) by_hash.erase(hit);
    }
    by_slot[slot] = h;
    by_hash[h] = slot;
  }
  int64_t find(uint64_t h) const {
    auto it = by_hash.find(h);
    return it == by_hash.end() ? -1 : int64_t{it->second};
  }
};

void run_fifo(uint32_t slots, uint64_t hash_space, uint64_t seed, int inserts) {
  std::mt19937_64 rng(seed);
  CbrIndex index(slots);
  Model model;
  uint64_t count = 0;
  for (int i = 0; i < inserts; ++i) {
    const uint64_t h = hash_space ? rng() % hash_space : rng();
    const uint32_t slot = static_cast<uint32_t>(count % slots);
    if (count >= slots) index.erase_slot(slot);
    index.insert(h, slot);
    model.insert(h, slot);
    ++count;
    // Probe a few hashes, present and absent.
    for (int k = 0; k < 3; ++k) {
      const uint64_t q = hash_space ? rng() % hash_space : (k == 0 ? h : rng());
      ASSERT_EQ(index.find(q), model.find(q)) << "insert " << i << " query " << q;
    }
    ASSERT_EQ(index.size(), model.by_hash.size()) << "insert " << i;
  }
  for (const auto& [h, slot] : model.by_hash) ASSERT_EQ(index.find(h), int64_t{slot});
}

TEST(CbrIndex, MatchesFifoModelWithDistinctHashes) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  run_fifo(64, 0, seed, 5000);
}

TEST(CbrIndex, MatchesFifoModelWithManyCollisions) {
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  run_fifo(64, 40, seed, 5000);  // fewer hash values than slots
  run_fifo(7, 3, seed + 1, 2000);
  run_fifo(16, 1, seed + 2, 500);  // a constant hash
}

TEST(CbrIndex, ClusteredHomesSurviveDeletion) {
  // Hashes that share their low bits land in one probe run; deleting from
  // the middle must keep the rest findable.
  const uint64_t seed = testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  CbrIndex index(32);
  Model model;
  for (uint32_t i = 0; i < 2000; ++i) {
    const uint64_t h = (rng() << 8) | (rng() % 3);  // only 3 home positions
    const uint32_t slot = i % 32;
    if (i >= 32) index.erase_slot(slot);
    index.insert(h, slot);
    model.insert(h, slot);
  }
  for (const auto& [h, slot] : model.by_hash) ASSERT_EQ(index.find(h), int64_t{slot});
  EXPECT_EQ(index.size(), 32u);
}

TEST(CbrIndex, ResetEmpties) {
  CbrIndex index(8);
  index.insert(5, 0);
  index.insert(6, 1);
  EXPECT_EQ(index.find(5), 0);
  index.reset();
  EXPECT_EQ(index.find(5), -1);
  EXPECT_EQ(index.find(6), -1);
  EXPECT_EQ(index.size(), 0u);
}

}  // namespace
}  // namespace tideway::wan::codec

// Seeds for randomized tests, TigerBeetle style: every randomized test
// prints its seed; TIDEWAY_SEED replays it.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace tideway::testing {

inline uint64_t test_seed() {
  uint64_t seed = 0;
  if (const char* env = std::getenv("TIDEWAY_SEED"); env && *env) {
    seed = std::strtoull(env, nullptr, 0);
  } else {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::fprintf(stderr, "[seed] %s.%s: seed %llu (rerun with TIDEWAY_SEED=%llu)\n",
               info ? info->test_suite_name() : "?", info ? info->name() : "?",
               static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

}  // namespace tideway::testing

// Failure messages of randomized tests carry the seed too.
#define TIDEWAY_SEED_TRACE(seed) SCOPED_TRACE("TIDEWAY_SEED=" + std::to_string(seed))

// Workload profiles of the simulated guest: what its memory holds and how
// it is written. Three are calibrated to the workloads of seeds/004
// chapter 6 (TPC-W, kernel compile, SPECjbb, 1 GB VMs); the numbers each
// was fitted to are in sim_profile.cpp and docs/migsim/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace tideway::sim {

inline constexpr uint32_t kSimPageSize = 4096;
// Rates below are per GiB of guest memory (262144 pages), so a smaller
// test guest is dirtied at the same per-page intensity.
inline constexpr uint64_t kPagesPerGiB = (1ull << 30) / kSimPageSize;

struct SimProfile {
  std::string name;
  std::string calibration;  // one line: what it was fitted to
  // Content. Fractions of all pages; the rest are "data" pages.
  double zero_fraction = 0.1;        // all-zero, never written (free memory)
  double duplicate_fraction = 0.1;   // whole page = one of duplicate_patterns
  uint32_t duplicate_patterns = 256;
  // Data pages: a write changes one field of write_bytes (cycling through
  // fields_per_page fields spread over the page), except full-write pages,
  // where every write replaces the whole page.
  double full_write_fraction = 0.2;
  uint32_t write_bytes = 64;
  uint32_t fields_per_page = 8;
  // Data pages whose last 1 KiB is one of 64 shared blocks (sub-page CBR hits).
  double shared_subblock_fraction = 0.2;
  // Dirtying: two disjoint sets of non-zero pages, each written uniformly
  // at random at its own rate (page writes per second per GiB).
  double hot_fraction = 0.02;
  double warm_fraction = 0.05;
  double hot_writes_per_s = 0;
  double warm_writes_per_s = 0;
  // Rate variability: every burst_period_s both rates are multiplied by a
  // factor drawn uniformly from [1 - burst_spread, 1 + burst_spread].
  double burst_period_s = 1.0;
  double burst_spread = 0.0;
};

// "tpcw", "kernel", "specjbb".
std::optional<SimProfile> find_profile(std::string_view name);
std::vector<std::string> profile_names();
// kInvalid with the reason for fractions outside [0,1], sets that overlap
// or exceed the non-zero pages, a write size that does not fit, etc.
proto::Result<void> validate(const SimProfile& p);

}  // namespace tideway::sim

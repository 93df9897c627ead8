// The simulated guest: a hypervisor driver's model of a running VM for
// benchmarks (DESIGN.md 3.4). N pages whose content is a pure function of
// (seed, page, version) (page_content.h), dirtied in virtual time by the
// profile's hot and warm write streams. Deterministic: the same profile,
// size and seed give the same writes at the same virtual times, however
// advance() is sliced.
//
// It never replaces the real QEMU path in tests; it lets a benchmark
// migrate 1-2 GiB guests in seconds and reproducibly.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "agent/sim_guest/page_content.h"
#include "agent/sim_guest/sim_profile.h"
#include "proto/result.h"

namespace tideway::sim {

// 64 GiB: versions and dirty bits stay a few hundred MiB at most.
inline constexpr uint64_t kMaxSimPages = 1ull << 24;

struct SimGuestConfig {
  SimProfile profile;
  uint64_t pages = kPagesPerGiB;
  uint64_t seed = 1;
};

class SimGuest {
 public:
  // kInvalid for a bad profile or a size of 0 or above kMaxSimPages.
  static proto::Result<std::unique_ptr<SimGuest>> create(const SimGuestConfig& config);
  SimGuest(const SimGuest&) = delete;
  SimGuest& operator=(const SimGuest&) = delete;

  uint64_t pages() const { return versions_.size(); }
  std::chrono::nanoseconds now() const { return std::chrono::nanoseconds(now_ns_); }

  // Applies every write of the next `d` of guest time (d >= 0).
  void advance(std::chrono::nanoseconds d);

  // The page's current content (kSimPageSize bytes into `out`).
  void read_page(uint64_t page, std::span<uint8_t> out) const;
  // The content of `page` at any `version` (for checking a copy).
  void read_page_version(uint64_t page, uint32_t version, std::span<uint8_t> out) const;
  uint32_t version(uint64_t page) const { return versions_[page]; }
  PageClass page_class(uint64_t page) const { return content_.page_class(page); }

  // Pages written since the last call, ascending; clears the dirty set
  // (what a hypervisor's dirty log gives a migration iteration).
  std::vector<uint32_t> take_dirty();
  bool is_dirty(uint64_t page) const { return (dirty_bits_[page / 64] >> (page % 64)) & 1; }
  uint64_t dirty_count() const { return dirty_list_.size(); }

  uint64_t writes() const { return writes_; }
  uint64_t hot_pages() const { return streams_[0].set.size(); }
  uint64_t warm_pages() const { return streams_[1].set.size(); }
  const SimProfile& profile() const { return profile_; }

 private:
  // One write stream (hot or warm): writes at evenly spaced times within
  // each burst period, targets drawn by hash, so the sequence does not
  // depend on how time is sliced.
  struct Stream {
    std::vector<uint32_t> set;  // pages it writes
    double rate = 0;            // writes per second (scaled to the guest size)
    uint64_t tag = 0;
    uint64_t period = 0;        // current burst period
    uint64_t next = 0;          // next write within it
    uint64_t count = 0;         // writes in it
  };

  SimGuest(const SimGuestConfig& config);
  uint64_t period_writes(const Stream& s, uint64_t period) const;
  void run_stream(Stream& s, uint64_t until_ns);
  void write(uint32_t page);

  SimProfile profile_;
  uint64_t seed_;
  PageContent content_;
  uint64_t period_ns_;
  uint64_t now_ns_ = 0;
  uint64_t writes_ = 0;
  std::vector<uint32_t> versions_;
  std::vector<uint64_t> dirty_bits_;
  std::vector<uint32_t> dirty_list_;  // each dirty page once: bounded by pages()
  Stream streams_[2];
};

}  // namespace tideway::sim

// A random page workload for round-trip tests: a small guest "memory" whose
// pages are zeroed, rewritten, lightly edited, copied from other pages,
// built from a shared pool of sub-blocks (CBR hits), or left unchanged, and
// sent in batches with sequential runs and random addresses.
#pragma once

#include <map>
#include <random>

#include "tests/codec/codec_test_util.h"

namespace tideway::wan::codec::testing {

class Workload {
 public:
  Workload(uint64_t seed, uint32_t sub_blocks, uint64_t pages)
      : rng_(seed), sub_size_(kPageSize / sub_blocks), pages_(pages) {
    for (int i = 0; i < 24; ++i) {
      Page sub(sub_size_);
      if (i % 6 == 0) {
        std::fill(sub.begin(), sub.end(), 0);  // zero sub-blocks are common in memory
      } else {
        for (auto& b : sub) b = static_cast<uint8_t>(rng_());
      }
      pool_.push_back(std::move(sub));
    }
  }

  Batch next(size_t count) {
    Batch b;
    uint64_t addr = pick_address();
    for (size_t i = 0; i < count; ++i) {
      if (rng_() % 4 == 0) addr = pick_address();  // else a sequential run
      addr %= pages_ * kPageSize;
      Page& cur = memory_[addr];
      if (cur.empty()) cur = zero_page();
      mutate(cur);
      b.add(addr, cur);
      addr += kPageSize;
    }
    return b;
  }

 private:
  uint64_t pick_address() { return (rng_() % pages_) * kPageSize; }
  void mutate(Page& p) {
    switch (rng_() % 10) {
      case 0: p = zero_page(); break;
      case 1: p = random_page(rng_); break;
      case 2: p = text_page(rng_); break;
      case 3:
      case 4: edit_page(p, 8 + 8 * (rng_() % 4), rng_); break;
      case 5: {  // copy of another page
        auto it = memory_.find(pick_address());
        if (it != memory_.end() && !it->second.empty()) p = it->second;
        break;
      }
      case 6:
      case 7:  // pool sub-blocks, sometimes with an edit on top
        for (size_t off = 0; off < kPageSize; off += sub_size_) {
          const Page& s = pool_[rng_() % pool_.size()];
          std::copy(s.begin(), s.end(), p.begin() + static_cast<long>(off));
        }
        if (rng_() % 2) edit_page(p, 8, rng_);
        break;
      default: break;  // unchanged: re-sent as is
    }
  }

  std::mt19937_64 rng_;
  size_t sub_size_;
  uint64_t pages_;
  std::vector<Page> pool_;
  std::map<uint64_t, Page> memory_;
};

}  // namespace tideway::wan::codec::testing

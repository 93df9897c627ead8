// The committed counter: the highest seq such that every write up to it is
// durably acknowledged by the backup. Acks for single writes may arrive out
// of order (several journals, scatter-gather batches); they are held until
// the gap below them closes. Cumulative acks cover everything below them.
//
// Pure and single-threaded: the owner serialises calls.
#pragma once

#include <cassert>
#include <cstdint>
#include <set>

namespace tideway::agent {

class AckWindow {
 public:
  // Bound on out-of-order acks held: more than this many writes in flight
  // beyond a gap means the peer is broken.
  explicit AckWindow(size_t max_held = 1u << 20) : max_held_(max_held) {}

  uint64_t committed() const { return committed_; }
  size_t held() const { return held_.size(); }

  // One write acknowledged. Returns true if committed advanced.
  bool ack_one(uint64_t seq) {
    assert(seq > 0);
    if (seq <= committed_) return false;  // duplicate
    if (seq != committed_ + 1) {
      assert(held_.size() < max_held_);
      held_.insert(seq);
      return false;
    }
    committed_ = seq;
    absorb();
    return true;
  }

  // Every write up to `seq` acknowledged. Returns true if committed advanced.
  bool ack_through(uint64_t seq) {
    if (seq <= committed_) return false;
    committed_ = seq;
    held_.erase(held_.begin(), held_.upper_bound(seq));
    absorb();
    return true;
  }

  // After a restart of the protection: counting resumes at `seq`.
  void reset(uint64_t seq) {
    committed_ = seq;
    held_.clear();
  }

 private:
  void absorb() {
    while (!held_.empty() && *held_.begin() == committed_ + 1) {
      committed_ = *held_.begin();
      held_.erase(held_.begin());
    }
  }

  size_t max_held_;
  uint64_t committed_ = 0;
  std::set<uint64_t> held_;
};

}  // namespace tideway::agent

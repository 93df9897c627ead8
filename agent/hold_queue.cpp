#include "agent/hold_queue.h"

#include <algorithm>
#include <cassert>

namespace tideway::agent {

HoldQueue::HoldQueue(size_t max_packets, uint64_t max_bytes)
    : max_packets_(max_packets), max_bytes_(max_bytes) {
  assert(max_packets_ >= 1);
}

HoldQueue::Push HoldQueue::push(uint32_t id, uint64_t tag, wan::Nanos now, uint32_t bytes) {
  // The byte bound still admits one packet into an empty queue, so a single
  // packet larger than the bound cannot wedge the flow forever.
  bool over_bytes = max_bytes_ != 0 && !q_.empty() && bytes_ + bytes > max_bytes_;
  if (q_.size() >= max_packets_ || over_bytes) {
    ++totals_.total_dropped_full;
    return Push::kFull;
  }
  if (!q_.empty() && tag < q_.back().tag) {
    tag = q_.back().tag;
    ++totals_.tags_raised;
  }
  q_.push_back(Packet{id, tag, now, bytes});
  bytes_ += bytes;
  ++totals_.total_held;
  return Push::kHeld;
}

size_t HoldQueue::release(uint64_t committed, wan::Nanos now, std::vector<uint32_t>& out) {
  size_t n = 0;
  while (!q_.empty() && q_.front().tag <= committed) {
    const Packet& p = q_.front();
    totals_.max_hold = std::max(totals_.max_hold, now - p.arrival);
    out.push_back(p.id);
    assert(bytes_ >= p.bytes);
    bytes_ -= p.bytes;
    q_.pop_front();
    ++n;
  }
  totals_.total_released += n;
  // Invariant: whatever is left is not yet releasable.
  assert(q_.empty() || q_.front().tag > committed);
  return n;
}

size_t HoldQueue::drain(std::vector<uint32_t>& out) {
  size_t n = q_.size();
  for (const Packet& p : q_) out.push_back(p.id);
  q_.clear();
  bytes_ = 0;
  totals_.total_drained += n;
  return n;
}

HoldQueueStats HoldQueue::stats(wan::Nanos now) const {
  HoldQueueStats s = totals_;
  s.held = q_.size();
  s.held_bytes = bytes_;
  s.oldest_age = q_.empty() ? wan::Nanos{0} : std::max(wan::Nanos{0}, now - q_.front().arrival);
  return s;
}

}  // namespace tideway::agent

// Output buffering's core (PipeCloud, DESIGN 2.1): a bounded FIFO of held
// packets, each tagged with the writer's pending counter at arrival, released
// once the committed counter reaches its tag. Pure logic: no I/O, time is a
// parameter (callers read wan::Clock), so tests drive it directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "wan/clock.h"

namespace tideway::agent {

struct HoldQueueStats {
  size_t held = 0;               // packets held now
  uint64_t held_bytes = 0;       // their bytes (as given to push)
  wan::Nanos oldest_age{0};      // age of the head at `now` (0 when empty)
  uint64_t total_held = 0;       // packets ever accepted into the queue
  uint64_t total_released = 0;   // packets released by release()
  uint64_t total_dropped_full = 0;  // refused by push(): queue at its bound
  uint64_t total_drained = 0;    // removed by drain() (stop: dropped, not released)
  uint64_t tags_raised = 0;      // pushes whose tag was below the tail's (see push)
  wan::Nanos max_hold{0};        // longest hold of a released packet
};

class HoldQueue {
 public:
  struct Packet {
    uint32_t id;         // the kernel's packet id (NFQUEUE)
    uint64_t tag;        // pending counter at arrival (never below its predecessor's)
    wan::Nanos arrival;
    uint32_t bytes;
  };

  // max_packets >= 1; max_bytes 0 = no byte bound.
  explicit HoldQueue(size_t max_packets, uint64_t max_bytes = 0);

  enum class Push { kHeld, kFull };

  // Appends a packet. kFull: the queue is at its bound and the packet was NOT
  // added; the caller must drop it (TCP retransmits) - never release it early.
  //
  // Tags must not decrease (the pending counter only grows and packets arrive
  // in order). A lower tag than the tail's is raised to the tail's tag, so the
  // packet leaves together with the tail: later than its own tag allows, never
  // earlier, and the queue stays FIFO. Counted in tags_raised.
  Push push(uint32_t id, uint64_t tag, wan::Nanos now, uint32_t bytes = 0);

  // Removes every packet whose tag <= committed, in FIFO order, appending
  // their ids to `out`. Returns how many. Since tags do not decrease along
  // the queue, they form a prefix. A committed value lower than an earlier
  // one releases nothing (it cannot undo a release).
  size_t release(uint64_t committed, wan::Nanos now, std::vector<uint32_t>& out);

  // Removes every packet without releasing it (the holder drops them on
  // stop: fail-closed). Appends ids to `out` in FIFO order.
  size_t drain(std::vector<uint32_t>& out);

  bool empty() const { return q_.empty(); }
  size_t size() const { return q_.size(); }
  const Packet* head() const { return q_.empty() ? nullptr : &q_.front(); }
  HoldQueueStats stats(wan::Nanos now) const;

 private:
  size_t max_packets_;
  uint64_t max_bytes_;
  std::deque<Packet> q_;
  uint64_t bytes_ = 0;
  HoldQueueStats totals_;
};

}  // namespace tideway::agent

// Per-direction counters. Each direction has one writer (its forwarding
// thread); the control thread reads them, so relaxed atomics are enough.
// Packets are counted as packets on the emulated wire: a GSO super-packet of
// N segments counts N (and all N segments' header bytes).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace tideway::wanem {

struct StatsSnapshot {
  uint64_t rx_packets = 0, rx_bytes = 0;                  // read from the source TUN
  uint64_t fwd_packets = 0, fwd_bytes = 0;                // written to the far TUN
  uint64_t drop_queue_packets = 0, drop_queue_bytes = 0;  // bottleneck tail drop
  uint64_t drop_loss_packets = 0, drop_loss_bytes = 0;    // random loss
  uint64_t drop_partition_packets = 0, drop_partition_bytes = 0;
  uint64_t drop_overflow_packets = 0, drop_overflow_bytes = 0;  // delay-line hard cap
  uint64_t write_errors = 0;
  uint64_t inflight_packets = 0, inflight_bytes = 0;  // now in queue + on the wire
  uint64_t max_inflight_bytes = 0;
  uint64_t late_ns_max = 0;  // worst lateness of a departure vs its schedule
};

class DirStats {
 public:
  struct Counter {
    std::atomic<uint64_t> v{0};
    void add(uint64_t n) { v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
    void set(uint64_t n) { v.store(n, std::memory_order_relaxed); }
    void raise_to(uint64_t n) { if (n > get()) set(n); }
    uint64_t get() const { return v.load(std::memory_order_relaxed); }
  };

  Counter rx_packets, rx_bytes, fwd_packets, fwd_bytes, drop_queue_packets, drop_queue_bytes,
      drop_loss_packets, drop_loss_bytes, drop_partition_packets, drop_partition_bytes,
      drop_overflow_packets, drop_overflow_bytes, write_errors, inflight_packets, inflight_bytes,
      max_inflight_bytes, late_ns_max;

  StatsSnapshot snapshot() const;
  // Only the writer thread may call this (the control thread asks for it).
  void reset_totals();
};

// {"a_to_b": {...}, "b_to_a": {...}, "partition": {...}, "uptime_s": ...}
std::string stats_json(const StatsSnapshot& ab, const StatsSnapshot& ba, bool partition_ab,
                       bool partition_ba, double uptime_s);

}  // namespace tideway::wanem

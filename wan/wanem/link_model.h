// The emulated link, one direction, as pure logic: what happens to a packet
// offered at time `now` (dropped, and why, or when it leaves the far end).
//
// Model: a remote bottleneck router with a tail-drop FIFO of `queue_bytes`,
// draining at `rate_bps`, followed by a wire of one-way `delay` (+- `jitter`).
//   * partition: every packet is dropped (also checked again at departure by
//     the caller, so packets "on the wire" when the cable is cut are lost).
//   * loss: each packet is dropped with probability `loss` (seeded RNG).
//   * queue: backlog(now) = bytes not yet serialised; a packet arriving
//     when the backlog has reached queue_bytes is tail-dropped (so the
//     backlog may exceed the cap by at most one packet).
//   * rate: serialisation takes size*8/rate; back-to-back packets queue.
//   * delay/jitter: depart = serialised + delay + uniform[-jitter, +jitter],
//     but never before the previous packet's departure (no reordering), so
//     jitter can only be "seen" as extra delay when packets are close.
// Time is injected (`now`), so this class is unit-testable without a clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace tideway::wanem {

using Nanos = std::chrono::nanoseconds;

struct LinkParams {
  Nanos delay{0};            // one-way propagation delay
  Nanos jitter{0};           // uniform +- around delay (clamped, no reordering)
  uint64_t rate_bps = 0;     // bottleneck rate in bit/s; 0 = unlimited
  uint64_t queue_bytes = 0;  // bottleneck FIFO cap in bytes; 0 = default_queue_bytes()
  double loss = 0.0;         // drop probability per packet, [0, 1]
  bool partitioned = false;  // drop everything

  // One bandwidth-delay product of a symmetric RTT (2 * delay), at least
  // 2 ms at the rate and at least 64 KiB: enough for one TCP flow to keep
  // the link busy.
  uint64_t default_queue_bytes() const;
  uint64_t effective_queue_bytes() const { return queue_bytes ? queue_bytes : default_queue_bytes(); }
  // Empty string when valid, else a human-readable reason.
  std::string validate() const;
};

enum class Verdict : uint8_t {
  kForward,
  kDropPartition,
  kDropLoss,
  kDropQueue,
};

const char* to_string(Verdict v);

struct Decision {
  Verdict verdict = Verdict::kForward;
  Nanos depart{0};  // valid when verdict == kForward
};

class LinkModel {
 public:
  LinkModel(const LinkParams& params, uint64_t seed);

  // A packet of `wire_bytes` (IP bytes on the wire, all segments of a GSO
  // packet included) arrives at the bottleneck at `now`. `now` must not go
  // backwards between calls.
  Decision offer(Nanos now, uint64_t wire_bytes);

  // Bytes waiting in (or being serialised by) the bottleneck at `now`.
  uint64_t backlog_bytes(Nanos now) const;

  // New parameters apply to packets offered from now on; packets already
  // scheduled keep their departure, and the no-reordering rule still holds.
  void set_params(const LinkParams& params) { params_ = params; }
  const LinkParams& params() const { return params_; }
  void set_partitioned(bool on) { params_.partitioned = on; }
  uint64_t seed() const { return seed_; }

 private:
  Nanos serialisation_time(uint64_t bytes) const;

  LinkParams params_;
  uint64_t seed_;
  std::mt19937_64 loss_rng_;    // one draw per offered packet
  std::mt19937_64 jitter_rng_;  // one draw per forwarded packet when jitter > 0
  Nanos busy_until_{0};     // when the bottleneck finishes its backlog
  Nanos last_depart_{0};    // departure of the previous forwarded packet
};

}  // namespace tideway::wanem

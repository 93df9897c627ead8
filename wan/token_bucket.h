// Token bucket rate limiter over the injectable clock. Pure: no timers.
// A sender may go into debt by one frame (tokens below zero) so frames of any
// size pass; the debt is paid back before the next frame, so the long-run
// rate is exact and the burst is bounded by `burst + one frame`.
#pragma once

#include <cstddef>
#include <cstdint>

#include "wan/clock.h"

namespace tideway::wan {

class TokenBucket {
 public:
  // Unlimited: always ready.
  TokenBucket() = default;
  TokenBucket(uint64_t bytes_per_sec, uint64_t burst_bytes, Nanos now);

  bool unlimited() const { return rate_ == 0; }
  // True when a frame may be sent now (tokens > 0 after refilling).
  bool ready(Nanos now);
  // Takes n bytes' worth of tokens; may leave the bucket in debt.
  void consume(size_t n);
  // How long until ready(); zero if ready now.
  Nanos wait_time(Nanos now);

 private:
  void refill(Nanos now);
  uint64_t rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  Nanos last_{0};
};

}  // namespace tideway::wan

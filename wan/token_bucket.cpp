#include "wan/token_bucket.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace tideway::wan {

TokenBucket::TokenBucket(uint64_t bytes_per_sec, uint64_t burst_bytes, Nanos now)
    : rate_(bytes_per_sec), burst_(static_cast<double>(std::max<uint64_t>(burst_bytes, 1))),
      tokens_(burst_), last_(now) {}

void TokenBucket::refill(Nanos now) {
  if (unlimited() || now <= last_) return;
  const double dt = static_cast<double>((now - last_).count()) * 1e-9;
  tokens_ = std::min(burst_, tokens_ + dt * static_cast<double>(rate_));
  last_ = now;
}

bool TokenBucket::ready(Nanos now) {
  if (unlimited()) return true;
  refill(now);
  return tokens_ > 0;
}

void TokenBucket::consume(size_t n) {
  if (unlimited()) return;
  tokens_ -= static_cast<double>(n);
}

Nanos TokenBucket::wait_time(Nanos now) {
  if (ready(now)) return Nanos{0};
  // Time to climb from tokens_ (<= 0) to just above zero.
  const double secs = (-tokens_ + 1.0) / static_cast<double>(rate_);
  return Nanos{static_cast<int64_t>(std::ceil(secs * 1e9))};
}

}  // namespace tideway::wan

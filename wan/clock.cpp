#include "wan/clock.h"

#include <cassert>

namespace tideway::wan {

Nanos SystemClock::now() const {
  return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

Clock& system_clock() {
  static SystemClock clock;
  return clock;
}

DilatedClock::DilatedClock(double factor) : factor_(factor), origin_(system_clock().now()) {
  assert(factor > 0);
}

Nanos DilatedClock::now() const {
  const Nanos real = system_clock().now() - origin_;
  return origin_ + Nanos{static_cast<int64_t>(static_cast<double>(real.count()) / factor_)};
}

Nanos DilatedClock::to_real(Nanos d) const {
  return Nanos{static_cast<int64_t>(static_cast<double>(d.count()) * factor_)};
}

}  // namespace tideway::wan

// The one clock every timer in Tideway reads. Production uses the system's
// monotonic clock; tests inject a manual clock (advance by hand) or a dilated
// one (DieCast-style time dilation: the system runs slower than the clock it
// reads, so a small machine can emulate a faster network).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tideway::wan {

using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time since an arbitrary epoch.
  virtual Nanos now() const = 0;
  // How long a real (OS) timer must wait for `d` of this clock to pass.
  virtual Nanos to_real(Nanos d) const { return d; }
};

class SystemClock final : public Clock {
 public:
  Nanos now() const override;
};

// Returns a process-wide SystemClock.
Clock& system_clock();

// Time moves only when the test says so. Timers still wait real time, so
// tests drive time-dependent logic through now(), not through sleeps.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = Nanos{1'000'000'000}) : now_(start.count()) {}
  Nanos now() const override { return Nanos{now_.load(std::memory_order_acquire)}; }
  void advance(Nanos d) { now_.fetch_add(d.count(), std::memory_order_acq_rel); }
  void set(Nanos t) { now_.store(t.count(), std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

// Virtual time runs `factor` times slower than real time (factor 10: ten
// real seconds are one virtual second).
class DilatedClock final : public Clock {
 public:
  explicit DilatedClock(double factor);
  Nanos now() const override;
  Nanos to_real(Nanos d) const override;

 private:
  double factor_;
  Nanos origin_;
};

inline uint64_t to_ns(Nanos d) { return static_cast<uint64_t>(d.count()); }

}  // namespace tideway::wan

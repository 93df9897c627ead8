// The running emulator: two TUN devices (one per namespace), two Directions
// (a_to_b reads A and writes B; b_to_a the reverse), one or two forwarding
// threads, and the handler for control commands.
#pragma once

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "wan/wanem/forwarder.h"

namespace tideway::wanem {

enum class OffloadMode { kAuto, kOn, kOff };

struct EmulatorOptions {
  std::array<std::string, 2> netns;  // A, B
  std::array<std::string, 2> dev;    // TUN names in A, B
  std::array<LinkParams, 2> params;  // a_to_b, b_to_a
  uint64_t seed = 0;
  // 1: both directions on one thread; 2: one each. At 1 Gbit/s with TSO on
  // 2 cores, one thread forwarded the same (~960 Mbit/s) for 0.35 cores
  // instead of 0.5: the ACK our write triggers is read without a wakeup.
  int threads = 1;
  OffloadMode offload = OffloadMode::kAuto;
  int rt_priority = 10;  // SCHED_FIFO priority of forwarding threads; 0 = normal
  Limits limits;
};

class Emulator {
 public:
  // Opens both TUN devices; throws std::runtime_error on failure.
  explicit Emulator(const EmulatorOptions& opts);
  ~Emulator();
  Emulator(const Emulator&) = delete;
  Emulator& operator=(const Emulator&) = delete;

  void start();
  void stop();  // idempotent; joins the threads

  // A control command line -> one reply line.
  std::string handle(std::string_view line);
  // SIGUSR1: partition both ways, or heal if both ways were cut.
  void toggle_partition();
  std::string describe() const;  // one line: devices, settings, seed

 private:
  void apply_offloads();  // per direction, from settings (call with cfg_.mu held)
  void publish();         // bump generation + wake loops (call with cfg_.mu held)
  std::string set_partition(uint8_t dirs, int mode);  // mode: 1 on, 0 off, -1 toggle

  EmulatorOptions opts_;
  std::array<Tun, 2> tuns_;
  SharedConfig cfg_;
  std::array<DirStats, 2> stats_;
  std::array<std::unique_ptr<Direction>, 2> dirs_;
  std::vector<std::unique_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
  std::array<std::optional<bool>, 2> tso_;  // unset until first applied
  std::chrono::steady_clock::time_point started_;
};

}  // namespace tideway::wanem

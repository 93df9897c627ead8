// Moving packets: one Direction reads a source TUN, runs each packet through
// its LinkModel and holds it in a FIFO delay line until its departure time,
// then writes it to the far TUN. A Loop drives one or more Directions with
// epoll (TUN readable, a timerfd armed at the earliest departure, an
// eventfd to wake it for new settings or stop).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "wan/wanem/control_protocol.h"
#include "wan/wanem/link_model.h"
#include "wan/wanem/stats.h"
#include "wan/wanem/tun.h"

namespace tideway::wanem {

// Settings shared with the control thread. Writers hold `mu`, update
// `params`, bump `generation`, then wake the loops.
struct SharedConfig {
  std::mutex mu;
  std::array<LinkParams, 2> params;
  std::atomic<uint64_t> generation{0};
};

// Hard caps on the delay line (queue + wire), whatever the settings.
struct Limits {
  size_t max_packets = 100'000;
  uint64_t max_bytes = 256ull << 20;
};

Nanos monotonic_now();
inline constexpr Nanos kNever = Nanos::max();

class Direction {
 public:
  Direction(Dir dir, const Tun& in, const Tun& out, SharedConfig& cfg, DirStats& stats,
            uint64_t seed, Limits limits);

  Dir dir() const { return dir_; }
  int in_fd() const { return in_fd_; }
  // Picks up new settings and stats resets (cheap when nothing changed).
  void sync();
  // Reads up to a burst of packets from the source TUN and admits them.
  void read_burst();
  // Writes every packet whose departure time is <= now.
  void send_due(Nanos now);
  // Departure of the oldest held packet, or kNever.
  Nanos next_departure() const;

  std::atomic<bool> reset_requested{false};

 private:
  struct Packet {
    Nanos depart;
    uint32_t len;       // bytes in data (vnet header included)
    uint32_t segments;  // packets on the wire
    uint64_t wire_bytes;
    std::unique_ptr<uint8_t[]> data;
  };

  void admit(Nanos now, const uint8_t* buf, size_t len);
  void drop(DirStats::Counter& packets, DirStats::Counter& bytes, uint64_t n_packets, uint64_t n_bytes);

  Dir dir_;
  int in_fd_, out_fd_;
  bool vnet_hdr_;
  SharedConfig& cfg_;
  DirStats& stats_;
  LinkModel model_;
  Limits limits_;
  uint64_t generation_ = ~uint64_t{0};
  std::deque<Packet> line_;
  uint64_t line_bytes_ = 0;
  std::vector<uint8_t> scratch_;
  uint64_t write_errors_logged_ = 0;
};

class Loop {
 public:
  explicit Loop(std::vector<Direction*> dirs);
  ~Loop();
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  void run();   // returns after stop()
  void wake();  // any thread: re-sync settings now
  void stop();  // any thread

 private:
  std::vector<Direction*> dirs_;
  int epfd_ = -1, timerfd_ = -1, eventfd_ = -1;
  std::atomic<bool> stop_{false};
};

}  // namespace tideway::wanem

#include "wan/wanem/forwarder.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "wan/wanem/packet.h"

namespace tideway::wanem {

namespace {
constexpr size_t kVnetHdrLen = sizeof(VnetHdr);
// Largest GSO packet a TUN hands out (64 KiB legacy GSO max) + headers.
constexpr size_t kScratchBytes = 128 * 1024;
// Packets read per readiness event before departures get a turn.
constexpr int kReadBurst = 64;

std::runtime_error sys_error(const char* what) {
  return std::runtime_error(std::string(what) + ": " + std::strerror(errno));
}
}  // namespace

Nanos monotonic_now() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return Nanos{static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec};
}

Direction::Direction(Dir dir, const Tun& in, const Tun& out, SharedConfig& cfg, DirStats& stats,
                     uint64_t seed, Limits limits)
    : dir_(dir),
      in_fd_(in.fd()),
      out_fd_(out.fd()),
      vnet_hdr_(in.vnet_hdr()),
      cfg_(cfg),
      stats_(stats),
      model_(LinkParams{}, seed),
      limits_(limits),
      scratch_(kScratchBytes) {
  sync();
}

void Direction::sync() {
  if (reset_requested.exchange(false, std::memory_order_acq_rel)) stats_.reset_totals();
  const uint64_t gen = cfg_.generation.load(std::memory_order_acquire);
  if (gen == generation_) return;
  std::lock_guard lock(cfg_.mu);
  model_.set_params(cfg_.params[dir_]);
  generation_ = cfg_.generation.load(std::memory_order_relaxed);
}

void Direction::drop(DirStats::Counter& packets, DirStats::Counter& bytes, uint64_t n_packets,
                     uint64_t n_bytes) {
  packets.add(n_packets);
  bytes.add(n_bytes);
}

void Direction::read_burst() {
  for (int i = 0; i < kReadBurst; ++i) {
    const ssize_t n = ::read(in_fd_, scratch_.data(), scratch_.size());
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      throw sys_error("read from TUN");
    }
    admit(monotonic_now(), scratch_.data(), static_cast<size_t>(n));
  }
}

void Direction::admit(Nanos now, const uint8_t* buf, size_t len) {
  WireSize ws;
  if (vnet_hdr_) {
    if (len < kVnetHdrLen) return;  // cannot happen with a sane kernel
    VnetHdr hdr;
    std::memcpy(&hdr, buf, kVnetHdrLen);
    ws = wire_size(hdr, {buf + kVnetHdrLen, len - kVnetHdrLen});
  } else {
    ws = wire_size_plain({buf, len});
  }
  stats_.rx_packets.add(ws.segments);
  stats_.rx_bytes.add(ws.bytes);

  if (line_.size() >= limits_.max_packets || line_bytes_ + len > limits_.max_bytes) {
    drop(stats_.drop_overflow_packets, stats_.drop_overflow_bytes, ws.segments, ws.bytes);
    return;
  }
  const Decision d = model_.offer(now, ws.bytes);
  switch (d.verdict) {
    case Verdict::kForward: break;
    case Verdict::kDropPartition:
      drop(stats_.drop_partition_packets, stats_.drop_partition_bytes, ws.segments, ws.bytes);
      return;
    case Verdict::kDropLoss:
      drop(stats_.drop_loss_packets, stats_.drop_loss_bytes, ws.segments, ws.bytes);
      return;
    case Verdict::kDropQueue:
      drop(stats_.drop_queue_packets, stats_.drop_queue_bytes, ws.segments, ws.bytes);
      return;
  }
  auto data = std::make_unique_for_overwrite<uint8_t[]>(len);
  std::memcpy(data.get(), buf, len);
  line_.push_back(Packet{d.depart, static_cast<uint32_t>(len), ws.segments, ws.bytes, std::move(data)});
  line_bytes_ += len;
  stats_.inflight_packets.set(line_.size());
  stats_.inflight_bytes.set(line_bytes_);
  stats_.max_inflight_bytes.raise_to(line_bytes_);
}

void Direction::send_due(Nanos now) {
  bool changed = false;
  while (!line_.empty() && line_.front().depart <= now) {
    Packet& p = line_.front();
    if (model_.params().partitioned) {
      // The cable was cut while this packet was on it.
      drop(stats_.drop_partition_packets, stats_.drop_partition_bytes, p.segments, p.wire_bytes);
    } else if (::write(out_fd_, p.data.get(), p.len) == static_cast<ssize_t>(p.len)) {
      stats_.fwd_packets.add(p.segments);
      stats_.fwd_bytes.add(p.wire_bytes);
      stats_.late_ns_max.raise_to(static_cast<uint64_t>((now - p.depart).count()));
    } else {
      stats_.write_errors.add(1);
      if (write_errors_logged_++ < 10) {
        std::fprintf(stderr, "tideway-wanem: %s: write to TUN failed: %s\n", dir_name(dir_),
                     std::strerror(errno));
      }
    }
    line_bytes_ -= p.len;
    line_.pop_front();
    changed = true;
  }
  if (changed) {
    stats_.inflight_packets.set(line_.size());
    stats_.inflight_bytes.set(line_bytes_);
  }
}

Nanos Direction::next_departure() const {
  return line_.empty() ? kNever : line_.front().depart;
}

Loop::Loop(std::vector<Direction*> dirs) : dirs_(std::move(dirs)) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  timerfd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  eventfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epfd_ < 0 || timerfd_ < 0 || eventfd_ < 0) throw sys_error("epoll/timerfd/eventfd");
  auto add = [this](int fd, uint64_t tag) {
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) throw sys_error("epoll_ctl");
  };
  for (size_t i = 0; i < dirs_.size(); ++i) add(dirs_[i]->in_fd(), i);
  add(timerfd_, 1000);
  add(eventfd_, 1001);
}

Loop::~Loop() {
  for (int fd : {epfd_, timerfd_, eventfd_}) if (fd >= 0) ::close(fd);
}

void Loop::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t r = ::write(eventfd_, &one, sizeof one);
}

void Loop::stop() {
  stop_.store(true, std::memory_order_release);
  wake();
}

void Loop::run() {
  Nanos armed = kNever;
  struct epoll_event events[8];
  while (!stop_.load(std::memory_order_acquire)) {
    Nanos next = kNever;
    for (Direction* d : dirs_) {
      d->sync();
      next = std::min(next, d->next_departure());
    }
    if (next != armed) {
      struct itimerspec its {};  // all zero = disarm
      if (next != kNever) {
        const int64_t ns = std::max<int64_t>(next.count(), 1);
        its.it_value.tv_sec = ns / 1'000'000'000;
        its.it_value.tv_nsec = ns % 1'000'000'000;
      }
      if (::timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, nullptr) != 0) throw sys_error("timerfd_settime");
      armed = next;
    }
    const int n = ::epoll_wait(epfd_, events, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      uint64_t count;
      if (tag < dirs_.size()) {
        dirs_[tag]->read_burst();
      } else if (tag == 1000) {
        [[maybe_unused]] ssize_t r = ::read(timerfd_, &count, sizeof count);
        armed = kNever;  // expired: re-arm for the next departure
      } else {
        [[maybe_unused]] ssize_t r = ::read(eventfd_, &count, sizeof count);
      }
    }
    const Nanos now = monotonic_now();
    for (Direction* d : dirs_) d->send_due(now);
  }
}

}  // namespace tideway::wanem

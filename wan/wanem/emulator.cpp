#include "wan/wanem/emulator.h"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <type_traits>

namespace tideway::wanem {

namespace {
Tun open_tun(const EmulatorOptions& o, size_t i) {
  return Tun::open(o.netns[i], o.dev[i], o.offload != OffloadMode::kOff);
}

void log_line(const std::string& msg) {
  const std::time_t t = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%F %T", std::localtime(&t));
  std::fprintf(stderr, "tideway-wanem: %s %s\n", ts, msg.c_str());
}
}  // namespace

Emulator::Emulator(const EmulatorOptions& opts)
    : opts_(opts), tuns_{open_tun(opts, 0), open_tun(opts, 1)} {
  if (opts_.threads != 1 && opts_.threads != 2) throw std::runtime_error("--threads must be 1 or 2");
  for (size_t d = 0; d < 2; ++d) {
    if (auto err = opts_.params[d].validate(); !err.empty()) {
      throw std::runtime_error(std::string(dir_name(static_cast<Dir>(d))) + ": " + err);
    }
  }
  {
    std::lock_guard lock(cfg_.mu);
    cfg_.params = opts_.params;
    apply_offloads();
  }
  // Direction d reads the TUN in namespace d and writes the other one.
  // Seeds differ per direction but both derive from the one printed seed.
  dirs_[0] = std::make_unique<Direction>(kDirAB, tuns_[0], tuns_[1], cfg_, stats_[0], opts_.seed, opts_.limits);
  dirs_[1] = std::make_unique<Direction>(kDirBA, tuns_[1], tuns_[0], cfg_, stats_[1], opts_.seed + 1, opts_.limits);
}

Emulator::~Emulator() { stop(); }

void Emulator::start() {
  started_ = std::chrono::steady_clock::now();
  if (opts_.threads == 1) {
    loops_.push_back(std::make_unique<Loop>(std::vector<Direction*>{dirs_[0].get(), dirs_[1].get()}));
  } else {
    loops_.push_back(std::make_unique<Loop>(std::vector<Direction*>{dirs_[0].get()}));
    loops_.push_back(std::make_unique<Loop>(std::vector<Direction*>{dirs_[1].get()}));
  }
  for (auto& loop : loops_) {
    threads_.emplace_back([l = loop.get(), prio = opts_.rt_priority] {
      if (prio > 0) {
        // Departures must not wait behind a busy machine's other work (a
        // compile on 2 cores delayed packets by 5 ms under SCHED_OTHER).
        // The threads sleep in epoll between packets, so this costs others
        // little; the kernel's RT throttling caps a runaway at 95% of a core.
        sched_param sp{};
        sp.sched_priority = prio;
        if (const int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); err != 0) {
          log_line(std::string("warning: SCHED_FIFO priority ") + std::to_string(prio) +
                   " refused (" + std::strerror(err) + "); departures may be late on a busy machine");
        }
      }
      try {
        l->run();
      } catch (const std::exception& e) {
        log_line(std::string("fatal: ") + e.what());
        std::fflush(stderr);
        std::_Exit(1);  // a dead forwarder must not look like a partition
      }
    });
  }
}

void Emulator::stop() {
  for (auto& loop : loops_) loop->stop();
  for (auto& t : threads_) if (t.joinable()) t.join();
  threads_.clear();
  loops_.clear();
}

void Emulator::apply_offloads() {
  for (size_t d = 0; d < 2; ++d) {
    // Loss must hit wire packets, not 64 KiB super-packets: with loss set,
    // let the kernel segment before we see the packets.
    const bool tso = opts_.offload == OffloadMode::kOn ||
                     (opts_.offload == OffloadMode::kAuto && cfg_.params[d].loss == 0.0);
    if (opts_.offload != OffloadMode::kOff && tso_[d] != tso) tuns_[d].set_offload(tso);
    tso_[d] = tso;
  }
}

void Emulator::publish() {
  cfg_.generation.fetch_add(1, std::memory_order_acq_rel);
  for (auto& loop : loops_) loop->wake();
}

std::string Emulator::set_partition(uint8_t dirs, int mode) {
  std::lock_guard lock(cfg_.mu);
  for (size_t d = 0; d < 2; ++d) {
    if (!(dirs & (1u << d))) continue;
    bool& p = cfg_.params[d].partitioned;
    p = mode < 0 ? !p : mode == 1;
  }
  publish();
  const std::string state = std::string("partition a_to_b=") + (cfg_.params[0].partitioned ? "on" : "off") +
                            " b_to_a=" + (cfg_.params[1].partitioned ? "on" : "off");
  log_line(state);
  return "ok " + state;
}

void Emulator::toggle_partition() {
  bool both;
  {
    std::lock_guard lock(cfg_.mu);
    both = cfg_.params[0].partitioned && cfg_.params[1].partitioned;
  }
  set_partition(kMaskBoth, both ? 0 : 1);
}

std::string Emulator::handle(std::string_view line) {
  const Command cmd = parse_command(line);
  return std::visit(
      [this](const auto& c) -> std::string {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, ParseError>) {
          return "error: " + c.message;
        } else if constexpr (std::is_same_v<T, PartitionCmd>) {
          const int mode = c.mode == PartitionMode::kOn ? 1 : c.mode == PartitionMode::kOff ? 0 : -1;
          if (c.dirs == kMaskBoth && mode < 0) {
            toggle_partition();
            std::lock_guard lock(cfg_.mu);
            return std::string("ok partition a_to_b=") + (cfg_.params[0].partitioned ? "on" : "off") +
                   " b_to_a=" + (cfg_.params[1].partitioned ? "on" : "off");
          }
          return set_partition(c.dirs, mode);
        } else if constexpr (std::is_same_v<T, SetCmd>) {
          std::lock_guard lock(cfg_.mu);
          if (auto err = apply_settings(cfg_.params, c.settings); !err.empty()) return "error: " + err;
          try {
            apply_offloads();
          } catch (const std::exception& e) {
            return std::string("error: settings applied but ") + e.what();
          }
          publish();
          const std::string json = config_json(cfg_.params);
          log_line("set " + json);
          return "ok " + json;
        } else if constexpr (std::is_same_v<T, StatsCmd>) {
          bool pab, pba;
          {
            std::lock_guard lock(cfg_.mu);
            pab = cfg_.params[0].partitioned;
            pba = cfg_.params[1].partitioned;
          }
          const double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
          return stats_json(stats_[0].snapshot(), stats_[1].snapshot(), pab, pba, up);
        } else if constexpr (std::is_same_v<T, ConfigCmd>) {
          std::lock_guard lock(cfg_.mu);
          return config_json(cfg_.params);
        } else if constexpr (std::is_same_v<T, ResetStatsCmd>) {
          for (auto& d : dirs_) d->reset_requested.store(true, std::memory_order_release);
          for (auto& loop : loops_) loop->wake();
          return "ok stats reset";
        } else {
          return help_text();
        }
      },
      cmd);
}

std::string Emulator::describe() const {
  std::string s = "A=" + tuns_[0].label() + " B=" + tuns_[1].label() + " seed=" + std::to_string(opts_.seed) +
                  " threads=" + std::to_string(opts_.threads) +
                  " rt_priority=" + std::to_string(opts_.rt_priority) + " offload=" +
                  (opts_.offload == OffloadMode::kAuto ? "auto" : opts_.offload == OffloadMode::kOn ? "on" : "off");
  return s + " config=" + config_json(opts_.params);
}

}  // namespace tideway::wanem

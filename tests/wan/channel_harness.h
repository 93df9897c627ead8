// A server and a client channel on loopback for tests, with the streams the
// product uses: 1 acks (control class), 2 replication, 3 bulk.
#pragma once

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <gtest/gtest.h>

#include <cstdio>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "tests/wan/io_thread.h"
#include "tests/wan/test_certs.h"
#include "wan/channel.h"

namespace tideway::testing {

using namespace std::chrono_literals;

inline constexpr uint32_t kAckStream = 1;
inline constexpr uint32_t kReplStream = 2;
inline constexpr uint32_t kBulkStream = 3;

inline wan::ChannelOptions base_options(const std::string& site) {
  wan::ChannelOptions o;
  o.site = site;
  o.streams = {{kAckStream, wan::Priority::kControl},
               {kReplStream, wan::Priority::kReplication},
               {kBulkStream, wan::Priority::kBulk}};
  o.heartbeat_interval = 100ms;
  o.dead_peer_timeout = 1s;
  o.handshake_timeout = 2s;
  o.reconnect_min = 20ms;
  o.reconnect_max = 200ms;
  return o;
}

inline void use_certs(wan::ChannelOptions& o, const TestPki& pki, std::pair<std::string, std::string> cert) {
  o.tls.ca_file = pki.ca;
  o.tls.cert_file = cert.first;
  o.tls.key_file = cert.second;
}

// Polls `pred` (evaluated on the io thread) until it holds or `limit` passes.
template <typename Pred>
bool eventually(IoThread& io, Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (io.call(pred)) return true;
    std::this_thread::sleep_for(5ms);
  }
  return io.call(pred);
}

// Captures log lines so tests can check that refusals are logged.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(512)) {
    previous_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", spdlog::sinks_init_list{sink_});
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() {
    if (::testing::Test::HasFailure())
      for (const auto& line : sink_->last_formatted()) std::fprintf(stderr, "log: %s", line.c_str());
    spdlog::set_default_logger(previous_);
  }
  bool contains(const std::string& needle) const {
    for (const auto& line : sink_->last_formatted())
      if (line.find(needle) != std::string::npos) return true;
    return false;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

}  // namespace tideway::testing

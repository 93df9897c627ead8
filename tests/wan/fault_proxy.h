// A TCP relay between a channel client and server that injects link faults
// below the real interface: cut (close every connection at once, like a
// reset), blackhole (stop forwarding but keep sockets open, like a silent
// partition), and refuse (close new connections). Runs on its own thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tideway::testing {

class FaultProxy {
 public:
  explicit FaultProxy(uint16_t target_port);
  ~FaultProxy();
  uint16_t port() const { return port_; }

  void cut();                  // close every open relay now
  void blackhole(bool on);     // stop/resume forwarding on open relays
  void refuse(bool on);        // close new connections immediately
  uint64_t connections() const { return connections_.load(); }
  uint64_t bytes_forwarded() const { return bytes_.load(); }

 private:
  struct Relay;
  void accept();

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t target_port_;
  uint16_t port_;
  std::atomic<bool> blackhole_{false};
  std::atomic<bool> refuse_{false};
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> bytes_{0};
  std::mutex mu_;
  std::vector<std::weak_ptr<Relay>> relays_;
  std::thread thread_;
};

}  // namespace tideway::testing

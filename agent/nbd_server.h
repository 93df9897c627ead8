// The NBD tap: the agent as a QEMU VM's NBD server. Every guest read, write,
// flush and discard of the export goes to one BlockTarget.
//
// Threads: the server does not own threads. It runs on the io_context the
// caller passes in, which may be run by any number of threads; each
// connection is serialised by its own strand, so connections proceed in
// parallel. BlockTarget completions may arrive on any thread; they are
// posted back to their connection's strand.
//
// Lifetimes: the caller owns the io_context and the BlockTarget; both must
// outlive the server. stop() (also run by the destructor) closes the
// listeners, lets every connection finish its in-flight requests, and
// returns only once no connection, listener or BlockTarget completion
// remains, so the target may be destroyed right after. The io_context must
// keep running while stop() waits, and stop() must not be called from one
// of its threads.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/block_target.h"
#include "proto/nbd.h"
#include "proto/result.h"

namespace tideway::agent {

struct NbdServerOptions {
  // The one export this server serves. Clients asking for another name get
  // NBD_REP_ERR_UNKNOWN (GO/INFO) or a closed connection (EXPORT_NAME); the
  // empty name selects it too (the protocol's "default export").
  std::string export_name = "disk";
  // Listen on this unix socket path (a stale socket file is replaced).
  std::string unix_path;
  // Also listen on TCP, e.g. 127.0.0.1; port 0 picks a free port.
  std::optional<std::string> tcp_address;
  uint16_t tcp_port = 0;

  // Per connection, requests received but not yet answered. Reading stops
  // while either bound is reached (bytes may overshoot by one request).
  size_t max_inflight_requests = 64;
  size_t max_inflight_bytes = 64u << 20;
  size_t max_connections = 64;
  // Block size constraints sent with NBD_INFO_BLOCK_SIZE. LocalVolume needs
  // no alignment, so the minimum is 1; max is the largest READ/WRITE.
  uint32_t min_block = 1;
  uint32_t preferred_block = 4096;
  uint32_t max_request = proto::nbd::kMaxRequestLength;
  // How long stop() lets a connection drain replies to a client that does
  // not read them before the socket is closed under it.
  std::chrono::milliseconds drain_timeout{5000};
};

class NbdShared;
class NbdListener;

class NbdServer {
 public:
  NbdServer(boost::asio::io_context& io, BlockTarget& target, NbdServerOptions options);
  ~NbdServer();
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // Binds and starts accepting. Fails on a bad option or a bind error.
  proto::Result<bool> start();
  // Blocks until everything has drained (see above). Idempotent.
  void stop();

  // The TCP port actually bound (after start with tcp_address set), else 0.
  uint16_t tcp_port() const { return bound_tcp_port_; }
  // The flags sent to clients with the export size.
  static uint16_t transmission_flags();
  // Connections currently open (for tests and status).
  size_t connections() const;

 private:
  boost::asio::io_context& io_;
  std::shared_ptr<NbdShared> shared_;
  std::vector<std::shared_ptr<NbdListener>> listeners_;
  uint16_t bound_tcp_port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace tideway::agent

// One NBD client connection: the fixed newstyle handshake
// (nbd_handshake.cpp), then the transmission phase (nbd_transmission.cpp).
// Internal to the NBD tap; NbdServer creates these.
//
// Every member runs on the connection's strand (the socket's executor), so
// no member needs a lock. Asynchronous operations and BlockTarget
// completions hold a shared_ptr to the connection: it lives until the last
// of them has run, and its LiveToken tells NbdServer::stop() when that is.
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "agent/block_target.h"
#include "agent/nbd_server.h"
#include "proto/nbd.h"

namespace tideway::agent {

class NbdConnection;

// What the server, its listeners and its connections share. Outlives the
// NbdServer object if a completion is still running when it is destroyed.
class NbdShared {
 public:
  NbdShared(BlockTarget& t, NbdServerOptions o) : target(t), options(std::move(o)) {}

  // Held by every object that may still touch `target`; stop() waits until
  // none is left.
  class LiveToken {
   public:
    explicit LiveToken(std::shared_ptr<NbdShared> s);
    ~LiveToken();
    LiveToken(const LiveToken&) = delete;
    LiveToken& operator=(const LiveToken&) = delete;

   private:
    std::shared_ptr<NbdShared> shared_;
  };

  // Refuses (false) once stopping, or at max_connections.
  bool add_connection(uint64_t id, const std::shared_ptr<NbdConnection>& c, std::string& why);
  void remove_connection(uint64_t id);
  // Marks the server stopping and returns the connections to shut down.
  std::vector<std::shared_ptr<NbdConnection>> begin_stop();
  bool stopping() const { return stopping_.load(); }
  size_t connection_count() const;
  uint64_t next_id() { return next_id_.fetch_add(1) + 1; }
  // Blocks until no LiveToken is left (logs while waiting).
  void wait_idle();

  BlockTarget& target;
  const NbdServerOptions options;

 private:
  mutable std::mutex mu_;
  std::condition_variable idle_;
  size_t live_ = 0;
  std::map<uint64_t, std::weak_ptr<NbdConnection>> conns_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{0};
};

class NbdConnection : public std::enable_shared_from_this<NbdConnection> {
 public:
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
  using Socket = boost::asio::basic_stream_socket<boost::asio::generic::stream_protocol, Strand>;

  NbdConnection(Socket socket, std::shared_ptr<NbdShared> shared, uint64_t id, std::string peer);
  ~NbdConnection();
  NbdConnection(const NbdConnection&) = delete;
  NbdConnection& operator=(const NbdConnection&) = delete;

  // Both may be called from any thread; they post to the strand.
  void start();
  // Server stopping: stop reading, answer what is in flight, then close.
  void shutdown();

 private:
  using Buffer = std::vector<uint8_t>;
  struct Reply {
    std::array<uint8_t, proto::nbd::kSimpleReplySize> header;
    Buffer data;       // READ payload, empty otherwise
    size_t bytes = 0;  // in-flight bytes released once written
  };
  struct Pending {
    uint64_t cookie = 0;
    size_t bytes = 0;
  };

  // Handshake (nbd_handshake.cpp).
  void send_greeting();
  void read_client_flags();
  void read_option();
  void on_option(const proto::nbd::OptionHeader& h);
  void handle_export_name();
  void handle_go(uint32_t option);
  void option_reply(uint32_t option, proto::nbd::Rep type, std::span<const uint8_t> data = {});
  void option_error(uint32_t option, proto::nbd::Rep type, const std::string& message);
  // Sends what option_reply() queued, then runs `next` (or closes on error).
  template <typename Next>
  void flush_handshake(Next next);
  bool export_matches(const std::string& name) const;

  // Transmission (nbd_transmission.cpp).
  void enter_transmission();
  void read_request();
  void fill_read_buffer();
  void read_payload(const proto::nbd::Request& r);
  void on_request(const proto::nbd::Request& r, std::span<const uint8_t> data);
  void execute(const proto::nbd::Request& r, Pending p, std::span<const uint8_t> data);
  void zero_fill(const proto::nbd::Request& r, Pending p);
  IoDone on_strand(Pending p, bool flush_after = false);
  void complete(Pending p, int err, Buffer data = {});
  void release(Pending p);
  void pump_writes();
  void on_written(const boost::system::error_code& ec);
  void discard_outbox();
  bool budget_full() const;
  void maybe_resume_reading();
  void begin_drain(const std::string& reason, bool error);
  void maybe_finish();
  // Closes the socket now; `error`: log as a warning (a misbehaving client).
  void close(const std::string& reason, bool error = false);

  // First member, so destroyed last: its release may let stop() return.
  NbdShared::LiveToken token_;
  std::shared_ptr<NbdShared> shared_;
  BlockTarget& target_;
  const NbdServerOptions& opt_;
  Socket socket_;
  boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                    boost::asio::wait_traits<std::chrono::steady_clock>, Strand>
      drain_timer_;
  const uint64_t id_;
  const std::string peer_;

  // Handshake state.
  uint32_t client_flags_ = 0;
  unsigned options_seen_ = 0;
  std::array<uint8_t, proto::nbd::kOptionHeaderSize> opt_header_{};
  Buffer opt_data_;
  Buffer handshake_out_;

  // Transmission state.
  bool transmitting_ = false;
  bool reading_ = false;       // a read-ahead or payload read is outstanding
  bool read_paused_ = false;   // stopped at the in-flight bound
  bool draining_ = false;      // no more reads: answer what is in flight, then close
  bool closed_ = false;
  std::string drain_reason_;
  bool drain_error_ = false;
  size_t inflight_requests_ = 0;
  size_t inflight_bytes_ = 0;
  Buffer rbuf_;                // read-ahead: requests not yet parsed sit in [rbeg_, rend_)
  size_t rbeg_ = 0, rend_ = 0;
  Buffer payload_;             // a WRITE larger than what was buffered; reusable once write() returned
  std::deque<Reply> outbox_;   // bounded by inflight_requests_
  bool writing_ = false;
  size_t writing_count_ = 0;   // replies in the current async_write
};

}  // namespace tideway::agent

// A QMP client: QEMU's JSON control protocol over a unix socket. One JSON
// object per line each way; commands carry an "id" and QEMU echoes it, so
// replies are matched by id, and events may arrive between replies.
//
// Threading: everything runs on the io_context's thread. Call every method
// from that thread (or before io.run()). Callbacks are never invoked from
// inside execute() or connect(); they run later on the io thread (close()
// is the exception: it fails the pending replies before it returns).
//
// Errors given to replies (proto::Error code and detail):
//   kInvalid    QEMU refused the command: "COMMAND: CLASS: DESC" (QMP's
//               error class and description, e.g. GenericError)
//   kSystem     not connected, connection lost or closed, timed out
//   kMalformed  QEMU sent something that is not QMP (the connection closes)
//   kTooLarge   too many commands outstanding, or a line over kMaxLine
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proto/result.h"

namespace tideway::agent {

// The detail of the kSystem error when QEMU closes the socket (after "quit"
// this is the expected end).
inline constexpr const char* kQmpPeerClosed = "QEMU closed the QMP connection";

class QmpClient : public std::enable_shared_from_this<QmpClient> {
 public:
  // The "return" value of a command, or an error (see the table above).
  using Reply = std::function<void(proto::Result<nlohmann::json>)>;
  using EventHandler = std::function<void(const std::string& event, const nlohmann::json& data)>;
  using CloseHandler = std::function<void(const proto::Error& why)>;

  // Bounds: commands in flight (QEMU runs them one at a time anyway) and the
  // longest line accepted from QEMU (query-qmp-schema is ~200 KB).
  static constexpr size_t kMaxOutstanding = 64;
  static constexpr size_t kMaxLine = 8u << 20;
  // pmemsave of 512 MiB takes ~2 s under TCG; a command that needs longer
  // than this is stuck.
  static constexpr std::chrono::milliseconds kDefaultCommandTimeout{60000};

  static std::shared_ptr<QmpClient> create(boost::asio::io_context& io, std::string socket_path);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Connects, retrying while the socket does not exist or refuses (QEMU is
  // still starting), reads the greeting and leaves capabilities-negotiation
  // mode (qmp_capabilities). `done` runs once, after at most `timeout`.
  // Once per client: a second call fails.
  void connect(std::function<void(proto::Result<void>)> done, std::chrono::milliseconds timeout);

  // Sends {"execute": command, "arguments": arguments, "id": N}; `arguments`
  // null or an empty object sends none. `reply` runs exactly once. A reply
  // arriving after its timeout is dropped (QEMU still ran the command).
  void execute(const std::string& command, nlohmann::json arguments, Reply reply,
               std::chrono::milliseconds timeout = kDefaultCommandTimeout);

  // Handlers are added, not replaced; each sees every event, in order.
  void on_event(EventHandler h);
  // Runs once when an established connection ends (EOF, error, malformed
  // input), not on close().
  void on_close(CloseHandler h);

  // Fails every pending reply with kSystem "closed" and closes the socket.
  void close();
  bool connected() const { return state_ == State::kReady; }
  // QEMU's greeting ({"QMP": {"version": ..., "capabilities": ...}}).
  const nlohmann::json& greeting() const { return greeting_; }
  const std::string& socket_path() const { return path_; }
  size_t outstanding() const { return pending_.size(); }
  boost::asio::io_context& io_context() const { return io_; }

 private:
  enum class State { kIdle, kConnecting, kGreeting, kNegotiating, kReady, kClosed };
  struct Pending {
    std::string command;
    Reply reply;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  QmpClient(boost::asio::io_context& io, std::string socket_path);
  void try_connect();
  void connect_failed(proto::Error e);
  void read_line();
  void handle_line(const std::string& line);
  void handle_reply(const nlohmann::json& msg);
  void send(nlohmann::json msg);
  void write_next();
  void finish_pending(uint64_t id, proto::Result<nlohmann::json> r);
  // Ends the connection: every pending reply fails with `why`.
  void fail(proto::Error why, bool notify);

  boost::asio::io_context& io_;
  std::string path_;
  boost::asio::local::stream_protocol::socket sock_;
  boost::asio::steady_timer connect_timer_;   // retry pacing
  boost::asio::steady_timer deadline_timer_;  // connect() deadline
  std::chrono::steady_clock::time_point deadline_{};
  std::function<void(proto::Result<void>)> connect_done_;
  State state_ = State::kIdle;
  boost::asio::streambuf in_;
  std::deque<std::string> out_;  // lines to write; bounded by kMaxOutstanding + 1
  bool writing_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Pending> pending_;
  std::vector<EventHandler> event_handlers_;
  CloseHandler close_handler_;
  nlohmann::json greeting_;
};

}  // namespace tideway::agent

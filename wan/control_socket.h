// The local control API of the daemons: a unix socket speaking one JSON
// object per line, one request and one reply per connection. The `tideway`
// CLI is its client. Only root (the socket is mode 0600) may use it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "proto/result.h"

namespace tideway::wan {

inline constexpr size_t kMaxControlRequest = 1u << 20;

class ControlServer : public std::enable_shared_from_this<ControlServer> {
 public:
  using Reply = std::function<void(nlohmann::json)>;
  // Runs on the io thread; may reply later (long operations).
  using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;

  // Replaces a stale socket file (nobody listening); refuses a live one.
  static proto::Result<std::shared_ptr<ControlServer>> create(boost::asio::io_context& io, const std::string& path,
                                                              Handler handler);
  ~ControlServer();
  void stop();
  const std::string& path() const { return path_; }

 private:
  ControlServer(boost::asio::io_context& io, std::string path, Handler handler);
  void accept();

  boost::asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
  Handler handler_;
  bool stopped_ = false;
};

// Client side (blocking, for the CLI): sends `request`, returns the reply.
proto::Result<nlohmann::json> control_call(const std::string& path, const nlohmann::json& request,
                                           std::chrono::milliseconds timeout);

}  // namespace tideway::wan

// The two ends of the WAN channel. A ChannelClient dials a site and keeps
// its session connected (reconnecting with backoff and resuming); a
// ChannelServer accepts sites, authenticates them (mutual TLS), negotiates
// version and features, and resumes or starts their sessions.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "wan/options.h"
#include "wan/session.h"

namespace tideway::wan {

class ChannelClient : public std::enable_shared_from_this<ChannelClient> {
 public:
  // Throws std::runtime_error for unusable TLS material.
  static std::shared_ptr<ChannelClient> create(asio::io_context& io, const ChannelOptions& opts,
                                               std::string host, uint16_t port);
  void start();
  void stop();
  // The session exists from creation: messages sent before the first link
  // comes up are queued (within the streams' retention limits).
  const std::shared_ptr<Session>& session() const { return session_; }
  uint64_t connect_attempts() const { return attempts_; }

 private:
  ChannelClient(asio::io_context& io, const ChannelOptions& opts, std::string host, uint16_t port);
  void connect();
  void handshake(std::shared_ptr<Link> link);
  void retry(const std::string& why);

  asio::io_context& io_;
  ChannelOptions opts_;
  std::string host_;
  uint16_t port_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::shared_ptr<Session> session_;
  asio::steady_timer retry_timer_;
  Nanos backoff_;
  bool stopped_ = true;
  bool connecting_ = false;
  uint64_t attempts_ = 0;
};

class ChannelServer : public std::enable_shared_from_this<ChannelServer> {
 public:
  using SessionHandler = std::function<void(const std::shared_ptr<Session>&)>;

  static std::shared_ptr<ChannelServer> create(asio::io_context& io, const ChannelOptions& opts,
                                               const tcp::endpoint& listen);
  // Called for every new session before any of its messages is delivered:
  // install on_message handlers here.
  void on_session(SessionHandler h) { on_session_ = std::move(h); }
  void start();
  void stop();
  uint16_t port() const;
  uint64_t refused() const { return refused_; }

 private:
  ChannelServer(asio::io_context& io, const ChannelOptions& opts, const tcp::endpoint& listen);
  void accept();
  void handshake(std::shared_ptr<Link> link);
  void on_hello(std::shared_ptr<Link> link, proto::FrameParser parser, const proto::Hello& hello,
                std::shared_ptr<asio::steady_timer> deadline);
  void refuse(std::shared_ptr<Link> link, proto::ErrorCode code, const std::string& reason);
  void linger(const std::shared_ptr<Session>& s);

  asio::io_context& io_;
  ChannelOptions opts_;
  tcp::acceptor acceptor_;
  std::shared_ptr<asio::ssl::context> tls_;
  std::map<proto::SessionId, std::shared_ptr<Session>> sessions_;
  std::map<proto::SessionId, std::shared_ptr<asio::steady_timer>> linger_timers_;
  SessionHandler on_session_;
  bool stopped_ = true;
  uint64_t refused_ = 0;
};

}  // namespace tideway::wan

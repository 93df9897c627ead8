#include "wan/channel.h"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

#include "wan/handshake_io.h"
#include "wan/tls.h"

namespace tideway::wan {

namespace {

// After the TLS handshake: "" if the peer may talk to us (and its name is
// recorded on the link), else the reason it may not.
std::string authenticate(Link& link, const boost::system::error_code& handshake, const TlsOptions& tls) {
  if (handshake) return "TLS handshake failed: " + handshake.message();
  link.peer_name = peer_common_name(link.ssl());
  const auto& allowed = tls.allowed_peers;
  if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), link.peer_name) == allowed.end())
    return "certificate '" + link.peer_name + "' is not an allowed peer";
  return "";
}

std::shared_ptr<asio::ssl::context> tls_for(const ChannelOptions& opts, bool server) {
  if (opts.tls.plaintext_for_tests) {
    spdlog::warn("channel: PLAINTEXT mode (tests only): no encryption, no authentication");
    return nullptr;
  }
  return make_tls_context(opts.tls, server);
}

// Closes the link if the handshake has not finished by the deadline.
std::shared_ptr<asio::steady_timer> arm_deadline(asio::io_context& io, const ChannelOptions& opts,
                                                 const std::shared_ptr<Link>& link, const char* who) {
  auto t = std::make_shared<asio::steady_timer>(io);
  t->expires_after(opts.clock->to_real(opts.handshake_timeout));
  std::weak_ptr<Link> weak = link;
  t->async_wait([weak, who](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto l = weak.lock(); l && !l->closed()) {
      spdlog::warn("channel: {} handshake with {} timed out", who, l->remote());
      l->close();
    }
  });
  return t;
}

}  // namespace

// ---------------------------------------------------------------- client --

std::shared_ptr<ChannelClient> ChannelClient::create(asio::io_context& io, const ChannelOptions& opts,
                                                     std::string host, uint16_t port) {
  return std::shared_ptr<ChannelClient>(new ChannelClient(io, opts, std::move(host), port));
}

ChannelClient::ChannelClient(asio::io_context& io, const ChannelOptions& opts, std::string host,
                             uint16_t port)
    : io_(io),
      opts_(opts),
      host_(std::move(host)),
      port_(port),
      tls_(tls_for(opts, false)),
      session_(std::make_shared<Session>(io, opts, proto::SessionId{})),
      retry_timer_(io),
      backoff_(opts.reconnect_min) {}

void ChannelClient::start() {
  stopped_ = false;
  std::weak_ptr<ChannelClient> weak = shared_from_this();
  session_->on_link_down([weak](const std::string& why) {
    if (auto self = weak.lock()) self->retry(why);
  });
  connect();
}

void ChannelClient::stop() {
  stopped_ = true;
  retry_timer_.cancel();
  session_->close();
}

void ChannelClient::retry(const std::string& why) {
  if (stopped_) return;
  connecting_ = false;
  spdlog::info("channel: reconnecting to {}:{} in {} ms ({})", host_, port_, backoff_.count() / 1'000'000,
               why);
  retry_timer_.expires_after(opts_.clock->to_real(backoff_));
  backoff_ = std::min(backoff_ * 2, opts_.reconnect_max);
  retry_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->connect();
  });
}

void ChannelClient::connect() {
  if (stopped_ || connecting_ || session_->has_link()) return;
  connecting_ = true;
  ++attempts_;
  auto resolver = std::make_shared<tcp::resolver>(io_);
  resolver->async_resolve(
      host_, std::to_string(port_),
      [self = shared_from_this(), resolver](const boost::system::error_code& ec,
                                            tcp::resolver::results_type results) {
        if (self->stopped_) return;
        if (ec) return self->retry("cannot resolve " + self->host_ + ": " + ec.message());
        auto sock = std::make_shared<tcp::socket>(self->io_);
        asio::async_connect(*sock, results,
                            [self, sock](const boost::system::error_code& cec, const tcp::endpoint&) {
                              if (self->stopped_) return;
                              if (cec) return self->retry("connect: " + cec.message());
                              auto link = std::make_shared<Link>(std::move(*sock), self->tls_.get());
                              link->tune(self->opts_.tcp_notsent_lowat);
                              self->handshake(std::move(link));
                            });
      });
}

void ChannelClient::handshake(std::shared_ptr<Link> link) {
  auto deadline = arm_deadline(io_, opts_, link, "client");
  auto send_hello = [self = shared_from_this(), link, deadline]() {
    proto::Hello hello;
    hello.features = self->opts_.features;
    hello.session = self->session_->id();
    hello.site = self->opts_.site;
    hello.received = self->session_->received_positions();
    auto bytes = std::make_shared<std::vector<uint8_t>>(proto::encode_message(hello));
    link->async_write(asio::buffer(*bytes), [self, link, deadline, bytes](const boost::system::error_code& ec,
                                                                         size_t) {
      if (self->stopped_) return link->close();
      if (ec) return self->retry("sending HELLO: " + ec.message());
      read_handshake_message(link, [self, link, deadline](const std::string& err, proto::FrameParser parser,
                                                          proto::Message msg) {
        deadline->cancel();
        if (self->stopped_) return link->close();
        if (!err.empty()) {
          link->close();
          return self->retry("handshake: " + err);
        }
        if (auto* e = std::get_if<proto::ErrorMsg>(&msg)) {
          spdlog::error("channel: {}:{} refused us: {}", self->host_, self->port_, e->reason);
          link->close();
          return self->retry("refused: " + e->reason);
        }
        auto* w = std::get_if<proto::Welcome>(&msg);
        if (w == nullptr) {
          link->close();
          return self->retry("expected WELCOME");
        }
        const bool had_session = self->session_->id() != proto::SessionId{};
        // Features first: the reset's handlers already send for the new peer.
        self->session_->set_features(w->features);
        if (had_session && !w->resumed) self->session_->reset_for_new_peer_session();
        self->session_->set_id(w->session);
        spdlog::info("channel: connected to {} ({}) session {} {} v{} features 0x{:x}", w->site, link->remote(),
                     session_hex(w->session), w->resumed ? "resumed" : "new", w->version, w->features);
        self->connecting_ = false;
        self->backoff_ = self->opts_.reconnect_min;
        self->session_->attach(link, std::move(parser), w->received, w->site);
      });
    });
  };
  if (!link->tls()) return send_hello();
  link->async_handshake(asio::ssl::stream_base::client,
                        [self = shared_from_this(), link, send_hello](const boost::system::error_code& ec) {
                          if (self->stopped_) return link->close();
                          if (auto why = authenticate(*link, ec, self->opts_.tls); !why.empty()) {
                            spdlog::warn("channel: server {}: {}", link->remote(), why);
                            link->close();
                            return self->retry(why);
                          }
                          send_hello();
                        });
}

// ---------------------------------------------------------------- server --

std::shared_ptr<ChannelServer> ChannelServer::create(asio::io_context& io, const ChannelOptions& opts,
                                                     const tcp::endpoint& listen) {
  return std::shared_ptr<ChannelServer>(new ChannelServer(io, opts, listen));
}

ChannelServer::ChannelServer(asio::io_context& io, const ChannelOptions& opts, const tcp::endpoint& listen)
    : io_(io), opts_(opts), acceptor_(io), tls_(tls_for(opts, true)) {
  acceptor_.open(listen.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(listen);
  acceptor_.listen();
}

uint16_t ChannelServer::port() const { return acceptor_.local_endpoint().port(); }

void ChannelServer::start() {
  stopped_ = false;
  accept();
}

void ChannelServer::stop() {
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& [id, t] : linger_timers_) t->cancel();
  for (auto& [id, s] : sessions_) s->close();
  sessions_.clear();
  linger_timers_.clear();
}

void ChannelServer::accept() {
  acceptor_.async_accept([self = shared_from_this()](const boost::system::error_code& ec, tcp::socket sock) {
    if (self->stopped_) return;
    if (!ec) {
      auto link = std::make_shared<Link>(std::move(sock), self->tls_.get());
      link->tune(self->opts_.tcp_notsent_lowat);
      self->handshake(std::move(link));
    }
    self->accept();
  });
}

void ChannelServer::handshake(std::shared_ptr<Link> link) {
  auto deadline = arm_deadline(io_, opts_, link, "server");
  auto read_hello = [self = shared_from_this(), link, deadline]() {
    read_handshake_message(link, [self, link, deadline](const std::string& err, proto::FrameParser parser,
                                                        proto::Message msg) {
      if (self->stopped_) return link->close();
      if (!err.empty()) {
        deadline->cancel();
        spdlog::warn("channel: dropping {} before HELLO: {}", link->remote(), err);
        ++self->refused_;
        return link->close();
      }
      auto* hello = std::get_if<proto::Hello>(&msg);
      if (hello == nullptr) {
        deadline->cancel();
        return self->refuse(link, proto::ErrorCode::kProtocol, "expected HELLO");
      }
      self->on_hello(link, std::move(parser), *hello, deadline);
    });
  };
  if (!link->tls()) return read_hello();
  link->async_handshake(asio::ssl::stream_base::server,
                        [self = shared_from_this(), link, read_hello](const boost::system::error_code& ec) {
                          if (self->stopped_) return link->close();
                          if (auto why = authenticate(*link, ec, self->opts_.tls); !why.empty()) {
                            spdlog::warn("channel: refused {}: {}", link->remote(), why);
                            ++self->refused_;
                            return link->close();
                          }
                          read_hello();
                        });
}

void ChannelServer::refuse(std::shared_ptr<Link> link, proto::ErrorCode code, const std::string& reason) {
  spdlog::warn("channel: refused {}: {}", link->remote(), reason);
  ++refused_;
  auto bytes = std::make_shared<std::vector<uint8_t>>(proto::encode_message(proto::ErrorMsg{code, reason}));
  link->async_write(asio::buffer(*bytes),
                    [link, bytes](const boost::system::error_code&, size_t) { link->close(); });
}

void ChannelServer::on_hello(std::shared_ptr<Link> link, proto::FrameParser parser, const proto::Hello& hello,
                             std::shared_ptr<asio::steady_timer> deadline) {
  auto agreed = proto::negotiate(proto::kMinVersion, proto::kMaxVersion, opts_.features, hello,
                                 opts_.required_features);
  if (!agreed) {
    deadline->cancel();
    return refuse(link, proto::ErrorCode::kIncompatible, agreed.error().detail);
  }
  std::shared_ptr<Session> session;
  bool resumed = false;
  if (hello.session != proto::SessionId{}) {
    auto it = sessions_.find(hello.session);
    if (it != sessions_.end()) {
      if (link->tls() && it->second->peer_name() != link->peer_name) {
        deadline->cancel();
        return refuse(link, proto::ErrorCode::kUnauthorized, "session belongs to another peer");
      }
      session = it->second;
      resumed = true;
      if (auto t = linger_timers_.find(hello.session); t != linger_timers_.end()) {
        t->second->cancel();
        linger_timers_.erase(t);
      }
    }
  }
  if (!session) {
    proto::SessionId id;
    RAND_bytes(id.data(), static_cast<int>(id.size()));
    session = std::make_shared<Session>(io_, opts_, id);
    sessions_[id] = session;
    std::weak_ptr<ChannelServer> weak = shared_from_this();
    std::weak_ptr<Session> ws = session;
    session->on_link_down([weak, ws](const std::string&) {
      auto self = weak.lock();
      auto s = ws.lock();
      if (self && s && !self->stopped_) self->linger(s);
    });
    if (on_session_) on_session_(session);
  }
  proto::Welcome w;
  w.version = agreed->version;
  w.features = agreed->features;
  w.session = session->id();
  w.resumed = resumed;
  w.site = opts_.site;
  w.received = session->received_positions();
  spdlog::info("channel: {} site '{}' ({}, cert '{}') session {}", resumed ? "resumed" : "accepted", hello.site,
               link->remote(), link->peer_name, session_hex(session->id()));
  auto bytes = std::make_shared<std::vector<uint8_t>>(proto::encode_message(w));
  const auto peer_has = hello.received;
  const auto site = hello.site;
  const uint64_t features = agreed->features;
  link->async_write(asio::buffer(*bytes),
                    [self = shared_from_this(), link, bytes, session, peer_has, site, features, deadline,
                     p = std::make_shared<proto::FrameParser>(std::move(parser))](
                        const boost::system::error_code& ec, size_t) {
                      deadline->cancel();
                      if (self->stopped_ || ec) return link->close();
                      if (session->state() == SessionState::kClosed) return link->close();
                      session->set_features(features);
                      session->attach(link, std::move(*p), peer_has, site);
                    });
}

void ChannelServer::linger(const std::shared_ptr<Session>& s) {
  auto t = std::make_shared<asio::steady_timer>(io_);
  linger_timers_[s->id()] = t;
  t->expires_after(opts_.clock->to_real(opts_.session_linger));
  const proto::SessionId id = s->id();
  t->async_wait([self = shared_from_this(), id](const boost::system::error_code& ec) {
    if (ec) return;
    auto it = self->sessions_.find(id);
    if (it == self->sessions_.end() || it->second->has_link()) return;
    spdlog::info("channel: session {} expired after {} s without a link", session_hex(id),
                 self->opts_.session_linger.count() / 1'000'000'000);
    it->second->close();
    self->sessions_.erase(it);
    self->linger_timers_.erase(id);
  });
}

}  // namespace tideway::wan

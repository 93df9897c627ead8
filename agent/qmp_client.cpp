#include "agent/qmp_client.h"

#include <sys/un.h>

#include <boost/asio/buffers_iterator.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <cassert>
#include <spdlog/spdlog.h>

namespace tideway::agent {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;
using proto::Errc;
using proto::Error;

namespace {

// QEMU creates its socket a few ms after it starts; poll at this pace.
constexpr std::chrono::milliseconds kRetryEvery{20};

std::string excerpt(const std::string& s) {
  constexpr size_t kMax = 160;
  return s.size() <= kMax ? s : s.substr(0, kMax) + "...";
}

}  // namespace

std::shared_ptr<QmpClient> QmpClient::create(asio::io_context& io, std::string socket_path) {
  return std::shared_ptr<QmpClient>(new QmpClient(io, std::move(socket_path)));
}

QmpClient::QmpClient(asio::io_context& io, std::string socket_path)
    : io_(io), path_(std::move(socket_path)), sock_(io), connect_timer_(io), deadline_timer_(io), in_(kMaxLine) {}

QmpClient::~QmpClient() {
  // Async operations hold a shared_ptr, so none is in flight here; only
  // callbacks never called remain. Every Reply runs exactly once.
  for (auto& [id, p] : pending_) {
    if (p.reply) p.reply(Error{Errc::kSystem, p.command + ": QMP client destroyed"});
  }
}

void QmpClient::connect(std::function<void(proto::Result<void>)> done, std::chrono::milliseconds timeout) {
  assert(done);
  if (state_ != State::kIdle) {
    asio::post(io_, [done = std::move(done)] {
      done(Error{Errc::kInvalid, "QMP connect: this client has already connected (one connection per client)"});
    });
    return;
  }
  if (path_.empty() || path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    state_ = State::kClosed;
    asio::post(io_, [done = std::move(done), p = path_] {
      done(Error{Errc::kInvalid, "QMP socket path \"" + p + "\" is empty or longer than 107 bytes"});
    });
    return;
  }
  connect_done_ = std::move(done);
  state_ = State::kConnecting;
  deadline_ = std::chrono::steady_clock::now() + timeout;
  deadline_timer_.expires_at(deadline_);
  deadline_timer_.async_wait([self = shared_from_this(), timeout](boost::system::error_code ec) {
    if (ec || self->state_ == State::kReady || self->state_ == State::kClosed) return;
    const char* where = self->state_ == State::kConnecting ? "waiting for QEMU's QMP socket"
                        : self->state_ == State::kGreeting ? "waiting for the QMP greeting"
                                                           : "negotiating QMP capabilities";
    self->fail(Error{Errc::kSystem, "QMP " + self->path_ + ": timed out after " + std::to_string(timeout.count()) +
                                        " ms " + where},
               false);
  });
  try_connect();
}

void QmpClient::try_connect() {
  sock_.async_connect(local::endpoint(path_), [self = shared_from_this()](boost::system::error_code ec) {
    if (self->state_ != State::kConnecting) return;
    if (!ec) {
      self->state_ = State::kGreeting;
      self->read_line();
      return;
    }
    boost::system::error_code ignored;
    self->sock_.close(ignored);
    // Not there yet, or not listening yet: QEMU is starting. Anything else
    // (permissions, not a socket) will not fix itself.
    if (ec != asio::error::not_found && ec != boost::system::errc::no_such_file_or_directory &&
        ec != asio::error::connection_refused) {
      self->fail(Error{Errc::kSystem, "QMP " + self->path_ + ": " + ec.message()}, false);
      return;
    }
    self->connect_timer_.expires_after(kRetryEvery);
    self->connect_timer_.async_wait([self](boost::system::error_code e2) {
      if (!e2 && self->state_ == State::kConnecting) self->try_connect();
    });
  });
}

void QmpClient::read_line() {
  asio::async_read_until(sock_, in_, '\n', [self = shared_from_this()](boost::system::error_code ec, size_t n) {
    if (self->state_ == State::kClosed) return;
    if (ec == asio::error::not_found) {
      self->fail(Error{Errc::kTooLarge, "QMP " + self->path_ + ": a line from QEMU exceeds " +
                                            std::to_string(kMaxLine) + " bytes"},
                 true);
      return;
    }
    if (ec) {
      std::string why = ec == asio::error::eof ? std::string(kQmpPeerClosed) : ec.message();
      self->fail(Error{Errc::kSystem, "QMP " + self->path_ + ": " + why}, true);
      return;
    }
    auto begin = asio::buffers_begin(self->in_.data());
    std::string line(begin, begin + static_cast<std::ptrdiff_t>(n));
    self->in_.consume(n);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    if (!line.empty()) self->handle_line(line);
    if (self->state_ != State::kClosed) self->read_line();
  });
}

void QmpClient::handle_line(const std::string& line) {
  json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (msg.is_discarded() || !msg.is_object()) {
    fail(Error{Errc::kMalformed, "QMP " + path_ + ": QEMU sent a line that is not a JSON object: " + excerpt(line)},
         true);
    return;
  }
  if (state_ == State::kGreeting) {
    if (!msg.contains("QMP") || !msg["QMP"].is_object()) {
      fail(Error{Errc::kMalformed, "QMP " + path_ + ": expected the QMP greeting, got: " + excerpt(line)}, false);
      return;
    }
    greeting_ = std::move(msg);
    state_ = State::kNegotiating;
    // Leave capabilities-negotiation mode; no optional capability (oob) is
    // asked for, so QEMU runs commands strictly in order.
    auto self = shared_from_this();
    const uint64_t id = next_id_++;
    Pending p{"qmp_capabilities", [self](proto::Result<json> r) {
                if (self->state_ != State::kNegotiating) return;
                if (!r) {
                  self->fail(r.error(), false);
                  return;
                }
                self->state_ = State::kReady;
                self->deadline_timer_.cancel();
                auto done = std::move(self->connect_done_);
                self->connect_done_ = nullptr;
                if (done) done(proto::Result<void>());
              },
              nullptr};
    pending_.emplace(id, std::move(p));
    send(json{{"execute", "qmp_capabilities"}, {"id", id}});
    return;
  }
  if (msg.contains("event")) {
    if (!msg["event"].is_string()) {
      fail(Error{Errc::kMalformed, "QMP " + path_ + ": event without a name: " + excerpt(line)}, true);
      return;
    }
    const std::string name = msg["event"].get<std::string>();
    const json data = msg.contains("data") ? msg["data"] : json::object();
    // By index, copying each handler: a handler may add handlers or close.
    for (size_t i = 0; i < event_handlers_.size() && state_ != State::kClosed; ++i) {
      auto h = event_handlers_[i];
      h(name, data);
    }
    return;
  }
  if (msg.contains("return") || msg.contains("error")) {
    handle_reply(msg);
    return;
  }
  if (msg.contains("QMP")) {
    spdlog::warn("QMP {}: a second greeting, ignored", path_);
    return;
  }
  fail(Error{Errc::kMalformed, "QMP " + path_ + ": neither a reply nor an event: " + excerpt(line)}, true);
}

void QmpClient::handle_reply(const json& msg) {
  uint64_t id = 0;
  if (msg.contains("id") && msg["id"].is_number_integer() && msg["id"].get<int64_t>() > 0) {
    id = msg["id"].get<uint64_t>();
  } else if (!msg.contains("id") && !pending_.empty()) {
    // QEMU answers a request it could not parse without an id. It runs
    // commands in order (no oob), so this answers the oldest one.
    id = pending_.begin()->first;
  } else {
    spdlog::warn("QMP {}: reply with an id we never sent, ignored: {}", path_, excerpt(msg.dump()));
    return;
  }
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    spdlog::debug("QMP {}: reply to id {} after its timeout, dropped", path_, id);
    return;
  }
  if (msg.contains("return")) {
    finish_pending(id, msg["return"]);
    return;
  }
  const json& e = msg["error"];
  std::string cls = "?", desc = e.dump();
  if (e.is_object()) {
    if (e.contains("class") && e["class"].is_string()) cls = e["class"].get<std::string>();
    if (e.contains("desc") && e["desc"].is_string()) desc = e["desc"].get<std::string>();
  }
  finish_pending(id, Error{Errc::kInvalid, it->second.command + ": " + cls + ": " + desc});
}

void QmpClient::execute(const std::string& command, json arguments, Reply reply, std::chrono::milliseconds timeout) {
  assert(reply);
  auto refuse = [&](Errc c, std::string why) {
    asio::post(io_, [reply = std::move(reply), e = Error{c, command + ": " + why}] { reply(e); });
  };
  if (state_ != State::kReady) return refuse(Errc::kSystem, "QMP " + path_ + " is not connected");
  if (command.empty()) return refuse(Errc::kInvalid, "empty QMP command name");
  if (!arguments.is_null() && !arguments.is_object()) return refuse(Errc::kInvalid, "arguments must be an object");
  if (pending_.size() >= kMaxOutstanding)
    return refuse(Errc::kTooLarge, "more than " + std::to_string(kMaxOutstanding) + " QMP commands outstanding");
  json msg{{"execute", command}};
  if (arguments.is_object() && !arguments.empty()) msg["arguments"] = std::move(arguments);
  const uint64_t id = next_id_++;
  msg["id"] = id;
  std::string line;
  try {
    line = msg.dump() + "\n";
  } catch (const json::exception& e) {  // a string that is not UTF-8
    return refuse(Errc::kInvalid, std::string("arguments cannot be sent: ") + e.what());
  }
  auto timer = std::make_unique<asio::steady_timer>(io_);
  timer->expires_after(timeout);
  timer->async_wait([self = shared_from_this(), id, timeout](boost::system::error_code ec) {
    if (ec) return;
    auto it = self->pending_.find(id);
    if (it == self->pending_.end()) return;
    self->finish_pending(id, Error{Errc::kSystem, it->second.command + ": no reply from QEMU within " +
                                                      std::to_string(timeout.count()) + " ms"});
  });
  pending_.emplace(id, Pending{command, std::move(reply), std::move(timer)});
  out_.push_back(std::move(line));
  assert(out_.size() <= kMaxOutstanding + 1);
  write_next();
}

void QmpClient::send(json msg) {
  out_.push_back(msg.dump() + "\n");
  write_next();
}

void QmpClient::write_next() {
  if (writing_ || out_.empty() || state_ == State::kClosed) return;
  writing_ = true;
  asio::async_write(sock_, asio::buffer(out_.front()), [self = shared_from_this()](boost::system::error_code ec, size_t) {
    self->writing_ = false;
    if (self->state_ == State::kClosed) return;
    if (ec) {
      self->fail(Error{Errc::kSystem, "QMP " + self->path_ + ": write: " + ec.message()}, true);
      return;
    }
    self->out_.pop_front();
    self->write_next();
  });
}

void QmpClient::finish_pending(uint64_t id, proto::Result<json> r) {
  auto it = pending_.find(id);
  assert(it != pending_.end());
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer) p.timer->cancel();
  p.reply(std::move(r));
}

void QmpClient::on_event(EventHandler h) { event_handlers_.push_back(std::move(h)); }

void QmpClient::on_close(CloseHandler h) { close_handler_ = std::move(h); }

void QmpClient::close() { fail(Error{Errc::kSystem, "QMP " + path_ + ": connection closed"}, false); }

void QmpClient::fail(Error why, bool notify) {
  if (state_ == State::kClosed) return;
  const State was = state_;
  state_ = State::kClosed;
  boost::system::error_code ignored;
  sock_.close(ignored);
  connect_timer_.cancel();
  deadline_timer_.cancel();
  out_.clear();
  // Callbacks may call back into this client (now closed): take the state
  // out first.
  auto pending = std::move(pending_);
  pending_.clear();
  auto done = std::move(connect_done_);
  connect_done_ = nullptr;
  if (done) done(why);
  for (auto& [id, p] : pending) {
    if (p.timer) p.timer->cancel();
    p.reply(Error{why.code, p.command + ": " + why.detail});
  }
  if (notify && was == State::kReady && close_handler_) {
    auto h = std::move(close_handler_);
    close_handler_ = nullptr;
    h(why);
  }
}

}  // namespace tideway::agent

#include "tests/wan/fault_proxy.h"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <future>

namespace tideway::testing {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct FaultProxy::Relay : std::enable_shared_from_this<Relay> {
  Relay(asio::io_context& io, tcp::socket a, FaultProxy* p) : down(std::move(a)), up(io), owner(p) {}
  tcp::socket down, up;
  FaultProxy* owner;
  std::vector<uint8_t> buf[2] = {std::vector<uint8_t>(64 * 1024), std::vector<uint8_t>(64 * 1024)};

  void start(uint16_t target) {
    up.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), target),
                     [self = shared_from_this()](const boost::system::error_code& ec) {
                       if (ec) return self->close();
                       self->pump(0);
                       self->pump(1);
                     });
  }
  // dir 0: client -> server, 1: server -> client.
  void pump(int dir) {
    tcp::socket& from = dir == 0 ? down : up;
    from.async_read_some(asio::buffer(buf[dir]), [self = shared_from_this(), dir](
                                                     const boost::system::error_code& ec, size_t n) {
      if (ec) return self->close();
      self->forward(dir, n);
    });
  }
  void forward(int dir, size_t n) {
    if (owner->blackhole_.load()) {
      // Hold the bytes, forward nothing, retry later: a silent partition.
      auto t = std::make_shared<asio::steady_timer>(down.get_executor());
      t->expires_after(std::chrono::milliseconds(20));
      t->async_wait([self = shared_from_this(), t, dir, n](const boost::system::error_code&) {
        if (self->down.is_open()) self->forward(dir, n);
      });
      return;
    }
    tcp::socket& to = dir == 0 ? up : down;
    asio::async_write(to, asio::buffer(buf[dir].data(), n),
                      [self = shared_from_this(), dir](const boost::system::error_code& ec, size_t m) {
                        if (ec) return self->close();
                        self->owner->bytes_ += m;
                        self->pump(dir);
                      });
  }
  void close() {
    boost::system::error_code ec;
    // Abortive close (RST), as when a middlebox or a host dies.
    if (down.is_open()) down.set_option(asio::socket_base::linger(true, 0), ec);
    if (up.is_open()) up.set_option(asio::socket_base::linger(true, 0), ec);
    down.close(ec);
    up.close(ec);
  }
};

FaultProxy::FaultProxy(uint16_t target_port)
    : acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)), target_port_(target_port) {
  port_ = acceptor_.local_endpoint().port();
  accept();
  thread_ = std::thread([this] { io_.run(); });
}

FaultProxy::~FaultProxy() {
  asio::post(io_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
    std::lock_guard lk(mu_);
    for (auto& w : relays_)
      if (auto r = w.lock()) r->close();
  });
  io_.stop();
  thread_.join();
}

void FaultProxy::accept() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket s) {
    if (ec) return;
    if (refuse_.load()) {
      boost::system::error_code e2;
      s.close(e2);
    } else {
      ++connections_;
      auto r = std::make_shared<Relay>(io_, std::move(s), this);
      {
        std::lock_guard lk(mu_);
        relays_.push_back(r);
      }
      r->start(target_port_);
    }
    accept();
  });
}

void FaultProxy::cut() {
  std::promise<void> done;
  asio::post(io_, [this, &done] {
    std::lock_guard lk(mu_);
    for (auto& w : relays_)
      if (auto r = w.lock()) r->close();
    relays_.clear();
    done.set_value();
  });
  done.get_future().wait();
}

void FaultProxy::blackhole(bool on) { blackhole_ = on; }
void FaultProxy::refuse(bool on) { refuse_ = on; }

}  // namespace tideway::testing

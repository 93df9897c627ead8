// One transport connection under a session: TCP, with TLS on top unless the
// channel runs in test plaintext mode. Handles close idempotently; the
// session above decides what a failure means.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <string>

namespace tideway::wan {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class Link {
 public:
  Link(tcp::socket socket, asio::ssl::context* tls)
      : stream_(std::move(socket), tls != nullptr ? *tls : dummy_context()), tls_(tls != nullptr) {}

  bool tls() const { return tls_; }
  SSL* ssl() { return stream_.native_handle(); }
  tcp::socket& socket() { return stream_.next_layer(); }

  // Low-latency socket options: no Nagle, and a bound on unsent bytes the
  // kernel holds so a control frame never waits behind megabytes of bulk.
  void tune(int notsent_lowat);

  // Re-sizes TCP_NOTSENT_LOWAT to `horizon` of the socket's current pacing
  // rate, within [floor, ceiling] bytes. The kernel wakes a writer only when
  // the unsent bytes fall below half the mark; if that half drains before
  // the writer refills it, the flow is marked application-limited and BBR
  // never leaves STARTUP (2.89x the bottleneck rate, a third of the packets
  // lost at a one-BDP queue). A bound in time keeps a control frame's wait
  // in the kernel short at any rate and leaves the writer time to refill
  // (docs/architecture.md). Returns the value set, 0 if unchanged or unknown.
  int adapt_notsent_lowat(int floor, int ceiling, std::chrono::nanoseconds horizon);

  template <typename Handler>
  void async_handshake(asio::ssl::stream_base::handshake_type type, Handler&& h) {
    stream_.async_handshake(type, std::forward<Handler>(h));
  }
  template <typename Buffers, typename Handler>
  void async_write(const Buffers& b, Handler&& h) {
    if (tls_)
      asio::async_write(stream_, b, std::forward<Handler>(h));
    else
      asio::async_write(stream_.next_layer(), b, std::forward<Handler>(h));
  }
  template <typename Handler>
  void async_read_some(asio::mutable_buffer b, Handler&& h) {
    if (tls_)
      stream_.async_read_some(b, std::forward<Handler>(h));
    else
      stream_.next_layer().async_read_some(b, std::forward<Handler>(h));
  }

  void close();
  bool closed() const { return closed_; }
  std::string remote() const;

  std::string peer_name;  // certificate CN after the TLS handshake

 private:
  static asio::ssl::context& dummy_context();
  asio::ssl::stream<tcp::socket> stream_;
  bool tls_;
  bool closed_ = false;
  int notsent_lowat_ = 0;
};

}  // namespace tideway::wan

#include "wan/link.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>

#include "wan/tcp_pacing.h"

namespace tideway::wan {

asio::ssl::context& Link::dummy_context() {
  // asio::ssl::stream needs a context even when we never handshake.
  static asio::ssl::context ctx(asio::ssl::context::tls);
  return ctx;
}

void Link::tune(int notsent_lowat) {
  boost::system::error_code ec;
  socket().set_option(tcp::no_delay(true), ec);
  if (notsent_lowat > 0 &&
      ::setsockopt(socket().native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent_lowat,
                   sizeof notsent_lowat) == 0)
    notsent_lowat_ = notsent_lowat;
}

int Link::adapt_notsent_lowat(int floor, int ceiling, std::chrono::nanoseconds horizon) {
  if (notsent_lowat_ <= 0 || closed_) return 0;  // not bounded: nothing to adapt
  const auto rate = tcp_pacing_rate(socket().native_handle());
  if (!rate) return 0;
  const double want = static_cast<double>(*rate) * static_cast<double>(horizon.count()) / 1e9;
  const int target = static_cast<int>(std::clamp(want, static_cast<double>(floor), static_cast<double>(ceiling)));
  // Hysteresis: BBR's gain cycle moves the pacing rate by 25%.
  if (target * 4 > notsent_lowat_ * 3 && target * 3 < notsent_lowat_ * 4) return 0;
  if (::setsockopt(socket().native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &target, sizeof target) != 0) return 0;
  notsent_lowat_ = target;
  return target;
}

void Link::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  // No TLS close_notify: a dead peer would make us wait; the session layer
  // has its own notion of what was delivered.
  socket().shutdown(tcp::socket::shutdown_both, ec);
  socket().close(ec);
}

std::string Link::remote() const {
  boost::system::error_code ec;
  auto ep = const_cast<Link*>(this)->socket().remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace tideway::wan

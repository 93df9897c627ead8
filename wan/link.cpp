#include "wan/link.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

namespace tideway::wan {

asio::ssl::context& Link::dummy_context() {
  // asio::ssl::stream needs a context even when we never handshake.
  static asio::ssl::context ctx(asio::ssl::context::tls);
  return ctx;
}

void Link::tune(int notsent_lowat) {
  boost::system::error_code ec;
  socket().set_option(tcp::no_delay(true), ec);
  if (notsent_lowat > 0)
    ::setsockopt(socket().native_handle(), IPPROTO_TCP, TCP_NOTSENT_LOWAT, &notsent_lowat,
                 sizeof notsent_lowat);
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

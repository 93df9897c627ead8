// TLS 1.3 with mutual certificate authentication for the WAN channel.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "wan/options.h"

namespace tideway::wan {

// Builds the context for one side. Throws std::runtime_error naming the file
// and OpenSSL's reason when a certificate or key cannot be used. Peers must
// present a certificate signed by the CA (TLS 1.3 only); a failed
// verification is logged with the peer's subject and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsOptions& opts, bool server);

// The common name of the verified peer certificate, or "" if none.
std::string peer_common_name(SSL* ssl);

}  // namespace tideway::wan

// The [tls] table both daemons' TOML configs share:
//   [tls]
//   ca = "/etc/tideway/ca.pem"       # the CA that signs every site's cert
//   cert = "/etc/tideway/site.pem"   # our certificate chain
//   key = "/etc/tideway/site.key"    # our private key
//   allowed_peers = ["backup"]       # optional: peer certificate names
//   plaintext_for_tests = false      # tests only; never in production
#pragma once

#include <toml++/toml.h>

#include "proto/result.h"
#include "wan/options.h"

namespace tideway::wan {

// Missing files are reported here, not at the first connection.
proto::Result<TlsOptions> tls_from_toml(const toml::table& root);

}  // namespace tideway::wan

#include "wan/tls_config.h"

#include <unistd.h>

namespace tideway::wan {

using proto::Errc;
using proto::Error;

proto::Result<TlsOptions> tls_from_toml(const toml::table& root) {
  TlsOptions t;
  const toml::table* tls = root["tls"].as_table();
  if (!tls) return Error{Errc::kInvalid, "[tls]: missing (ca, cert and key are required)"};
  t.plaintext_for_tests = tls->get("plaintext_for_tests") && (*tls)["plaintext_for_tests"].value_or(false);
  if (t.plaintext_for_tests) return t;
  for (auto [key, out] : {std::pair{"ca", &t.ca_file}, std::pair{"cert", &t.cert_file}, std::pair{"key", &t.key_file}}) {
    auto v = (*tls)[key].value<std::string>();
    if (!v || v->empty()) return Error{Errc::kInvalid, std::string("[tls] ") + key + ": required (a PEM file path)"};
    if (::access(v->c_str(), R_OK) != 0)
      return Error{Errc::kInvalid, std::string("[tls] ") + key + ": cannot read " + *v};
    *out = *v;
  }
  if (auto* peers = (*tls)["allowed_peers"].as_array()) {
    for (auto& p : *peers) {
      auto s = p.value<std::string>();
      if (!s) return Error{Errc::kInvalid, "[tls] allowed_peers: expected strings"};
      t.allowed_peers.push_back(*s);
    }
  }
  return t;
}

}  // namespace tideway::wan

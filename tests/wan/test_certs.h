// Test PKI made with OpenSSL's API: a CA, certificates it signs (valid or
// expired), and a second, unrelated CA. Written as PEM files in a temp dir.
#pragma once

#include <string>

namespace tideway::testing {

struct TestPki {
  std::string dir;
  std::string ca, ca_key;              // the lab CA
  std::string other_ca, other_ca_key;  // a CA nobody trusts
  // Creates a key + certificate for `cn`, signed by the given CA; valid from
  // now + not_before_days for valid_days. Returns {cert_path, key_path}.
  std::pair<std::string, std::string> issue(const std::string& cn, bool by_other_ca = false,
                                            long not_before_days = 0, long valid_days = 30) const;
  static TestPki create();
  void remove() const;
};

}  // namespace tideway::testing

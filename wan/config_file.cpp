#include "wan/config_file.h"

#include <fstream>
#include <sstream>

namespace tideway::wan {

using proto::Errc;
using proto::Error;

proto::Result<toml::table> parse_toml(const std::string& text, const std::string& origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return Error{Errc::kInvalid,
                 origin + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description())};
  }
}

proto::Result<std::string> read_config_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{Errc::kInvalid, "cannot read config " + path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace tideway::wan

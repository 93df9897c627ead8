#include "replicator/replicator_config.h"

#include <toml++/toml.h>

#include "wan/config_file.h"
#include "wan/tls_config.h"

namespace tideway::replicator {

using proto::Errc;
using proto::Error;

proto::Result<ReplicatorConfig> parse_replicator_config(const std::string& text, const std::string& origin) {
  auto parsed = wan::parse_toml(text, origin);
  if (!parsed) return parsed.error();
  const toml::table& root = parsed.value();
  auto bad = [&](const std::string& what) { return Error{Errc::kInvalid, origin + ": " + what}; };
  ReplicatorConfig c;
  auto site = root["site"].value<std::string>();
  if (!site || site->empty()) return bad("site: required (this site's name)");
  c.options.channel.site = *site;
  c.options.data_dir = root["data_dir"].value_or(std::string("/var/lib/tideway/replicator"));
  c.control_socket = root["control_socket"].value_or(c.control_socket);
  const std::string listen = root["listen"].value_or(std::string("0.0.0.0"));
  const int64_t port = root["port"].value_or<int64_t>(7300);
  if (port < 0 || port > 65535) return bad("port: 0 .. 65535");
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(listen, ec);
  if (ec) return bad("listen: \"" + listen + "\" is not an IP address");
  c.options.listen = {addr, static_cast<uint16_t>(port)};
  const int64_t seg = root["segment_mb"].value_or<int64_t>(64);
  if (seg < 1 || seg > 4096) return bad("segment_mb: 1 .. 4096");
  c.options.segment_bytes = static_cast<uint64_t>(seg) << 20;
  if (const toml::node* n = root.get("codec")) {
    const toml::table* t = n->as_table();
    if (!t) return bad("[codec]: expected a table");
    for (auto& [key, v] : *t)
      if (key.str() != "max_memory_mb") return bad("[codec] " + std::string(key.str()) + ": unknown key (max_memory_mb)");
    if (const toml::node* m = t->get("max_memory_mb")) {
      auto mb = m->value<int64_t>();
      if (!m->is_integer() || !mb || *mb < 0 || *mb > (1 << 20)) return bad("[codec] max_memory_mb: an integer 0 .. 1048576");
      c.options.codec_max_memory_bytes = static_cast<uint64_t>(*mb) << 20;
    }
  }
  auto tls = wan::tls_from_toml(root);
  if (!tls) return bad(tls.error().detail);
  c.options.channel.tls = tls.value();
  return c;
}

proto::Result<ReplicatorConfig> load_replicator_config(const std::string& path) {
  auto text = wan::read_config_text(path);
  if (!text) return text.error();
  return parse_replicator_config(text.value(), path);
}

}  // namespace tideway::replicator

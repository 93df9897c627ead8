#include "agent/agent_config.h"

#include <toml++/toml.h>

#include "wan/config_file.h"
#include "wan/tls_config.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

proto::Result<AgentConfig> parse_agent_config(const std::string& text, const std::string& origin) {
  auto parsed = wan::parse_toml(text, origin);
  if (!parsed) return parsed.error();
  const toml::table& root = parsed.value();
  auto bad = [&](const std::string& what) { return Error{Errc::kInvalid, origin + ": " + what}; };
  AgentConfig c;
  auto site = root["site"].value<std::string>();
  if (!site || site->empty()) return bad("site: required (this site's name)");
  c.site = *site;
  c.data_dir = root["data_dir"].value_or(c.data_dir);
  c.control_socket = root["control_socket"].value_or(c.control_socket);
  if (auto mb = root["max_unacked_mb"].value<int64_t>()) {
    if (*mb < 2 || *mb > (1 << 20)) return bad("max_unacked_mb: 2 .. 1048576");
    c.max_unacked_bytes = static_cast<uint64_t>(*mb) << 20;
  }
  if (auto* backups = root["backup"].as_table()) {
    for (auto& [name, node] : *backups) {
      auto* t = node.as_table();
      if (!t) return bad("[backup." + std::string(name.str()) + "]: expected a table");
      BackupSite b;
      b.name = std::string(name.str());
      auto addr = (*t)["address"].value<std::string>();
      if (!addr || addr->empty()) return bad("[backup." + b.name + "] address: required");
      b.address = *addr;
      auto port = (*t)["port"].value_or<int64_t>(7300);
      if (port < 1 || port > 65535) return bad("[backup." + b.name + "] port: 1 .. 65535");
      b.port = static_cast<uint16_t>(port);
      c.backups[b.name] = b;
    }
  }
  if (c.backups.empty()) return bad("no [backup.NAME] table: name at least one backup site");
  auto tls = wan::tls_from_toml(root);
  if (!tls) return bad(tls.error().detail);
  c.tls = tls.value();
  return c;
}

proto::Result<AgentConfig> load_agent_config(const std::string& path) {
  auto text = wan::read_config_text(path);
  if (!text) return text.error();
  return parse_agent_config(text.value(), path);
}

}  // namespace tideway::agent

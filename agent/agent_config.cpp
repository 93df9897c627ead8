#include "agent/agent_config.h"

#include <toml++/toml.h>

#include "wan/config_file.h"
#include "wan/tls_config.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

namespace {

// The [codec] table; every key is optional.
proto::Result<void> parse_codec(const toml::table& root, ReplicationCodecOptions& o) {
  const toml::node* node = root.get("codec");
  if (!node) return {};
  const toml::table* t = node->as_table();
  if (!t) return Error{Errc::kInvalid, "[codec]: expected a table"};
  for (auto& [key, v] : *t) {
    const std::string k(key.str());
    if (k != "replication" && k != "cache_mb" && k != "sub_blocks" && k != "zstd_level" && k != "delta_mb")
      return Error{Errc::kInvalid, "[codec] " + k + ": unknown key (replication, cache_mb, sub_blocks, zstd_level, "
                                   "delta_mb)"};
  }
  auto integer = [&](const char* key, int64_t lo, int64_t hi, int64_t& out) -> proto::Result<void> {
    const toml::node* n = t->get(key);
    if (!n) return {};
    auto v = n->value<int64_t>();
    if (!v || !n->is_integer() || *v < lo || *v > hi)
      return Error{Errc::kInvalid, std::string("[codec] ") + key + ": an integer " + std::to_string(lo) + " .. " +
                                       std::to_string(hi)};
    out = *v;
    return {};
  };
  if (const toml::node* n = t->get("replication")) {
    if (!n->is_boolean()) return Error{Errc::kInvalid, "[codec] replication: true or false"};
    o.enabled = n->value_or(true);
  }
  int64_t cache_mb = static_cast<int64_t>(o.config.cache_bytes >> 20);
  int64_t delta_mb = static_cast<int64_t>(o.config.delta_store_bytes >> 20);
  int64_t sub_blocks = o.config.sub_blocks, zstd_level = o.config.zstd_level;
  if (auto r = integer("cache_mb", 0, 65536, cache_mb); !r) return r;
  if (auto r = integer("delta_mb", 0, 65536, delta_mb); !r) return r;
  if (auto r = integer("sub_blocks", 1, 8, sub_blocks); !r) return r;
  if (auto r = integer("zstd_level", -7, 19, zstd_level); !r) return r;
  if (sub_blocks != 1 && sub_blocks != 2 && sub_blocks != 4 && sub_blocks != 8)
    return Error{Errc::kInvalid, "[codec] sub_blocks: 1, 2, 4 or 8"};
  o.config.cache_bytes = static_cast<uint64_t>(cache_mb) << 20;
  o.config.delta_store_bytes = static_cast<uint64_t>(delta_mb) << 20;
  o.config.sub_blocks = static_cast<uint32_t>(sub_blocks);
  o.config.zstd_level = static_cast<int>(zstd_level);
  if (auto g = wan::codec::make_geometry(o.config); !g) return Error{Errc::kInvalid, "[codec]: " + g.error().detail};
  return {};
}

}  // namespace

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
  auto mig = parse_migration_config(root);
  if (!mig) return bad(mig.error().detail);
  c.migration = *mig;
  if (c.backups.empty() && !c.migration.enabled())
    return bad("no [backup.NAME] table and no [migration] port or [sites.NAME]: nothing to do (name a backup site "
               "to protect to, or a migration port / peer site)");
  if (auto r = parse_codec(root, c.codec); !r) return bad(r.error().detail);
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

#include "agent/migration_config.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

namespace {

Error bad(const std::string& what) { return Error{Errc::kInvalid, what}; }

proto::Result<uint16_t> port_of(const toml::table& t, const std::string& where, int64_t dflt, bool zero_ok) {
  const toml::node* n = t.get("port");
  if (!n) return static_cast<uint16_t>(dflt);
  auto v = n->value<int64_t>();
  if (!n->is_integer() || !v || *v < (zero_ok ? 0 : 1) || *v > 65535)
    return bad(where + " port: " + (zero_ok ? "0 .. 65535 (0: accept no migrations)" : "1 .. 65535"));
  return static_cast<uint16_t>(*v);
}

proto::Result<std::string> string_of(const toml::table& t, const std::string& where, const char* key,
                                      const std::string& dflt) {
  const toml::node* n = t.get(key);
  if (!n) return dflt;
  auto v = n->value<std::string>();
  if (!n->is_string() || !v || v->empty()) return bad(where + " " + key + ": a non-empty string");
  return *v;
}

}  // namespace

proto::Result<MigrationConfig> parse_migration_config(const toml::table& root) {
  MigrationConfig c;
  if (const toml::node* node = root.get("migration")) {
    const toml::table* t = node->as_table();
    if (!t) return bad("[migration]: expected a table");
    for (auto& [key, v] : *t) {
      const std::string k(key.str());
      if (k != "port" && k != "listen" && k != "run_dir" && k != "disk_dir" && k != "qemu" && k != "window_mb")
        return bad("[migration] " + k + ": unknown key (port, listen, run_dir, disk_dir, qemu, window_mb)");
    }
    auto port = port_of(*t, "[migration]", 0, true);
    if (!port) return port.error();
    c.listen_port = *port;
    auto listen = string_of(*t, "[migration]", "listen", c.listen_address);
    if (!listen) return listen.error();
    c.listen_address = *listen;
    auto run_dir = string_of(*t, "[migration]", "run_dir", c.run_dir);
    if (!run_dir) return run_dir.error();
    if (run_dir->front() != '/') return bad("[migration] run_dir: an absolute path");
    // QMP and stream sockets live under RUN_DIR/VM/: keep room for them.
    if (run_dir->size() > 60) return bad("[migration] run_dir: at most 60 characters (unix socket paths are short)");
    c.run_dir = *run_dir;
    auto disk_dir = string_of(*t, "[migration]", "disk_dir", c.disk_dir);
    if (!disk_dir) return disk_dir.error();
    if (disk_dir->front() != '/') return bad("[migration] disk_dir: an absolute path");
    c.disk_dir = *disk_dir;
    auto qemu = string_of(*t, "[migration]", "qemu", c.qemu_binary);
    if (!qemu) return qemu.error();
    c.qemu_binary = *qemu;
    if (const toml::node* n = t->get("window_mb")) {
      auto v = n->value<int64_t>();
      if (!n->is_integer() || !v || *v < 1 || *v > 1024) return bad("[migration] window_mb: 1 .. 1024");
      c.window_bytes = static_cast<uint64_t>(*v) << 20;
    }
  }
  if (const toml::node* node = root.get("sites")) {
    const toml::table* sites = node->as_table();
    if (!sites) return bad("[sites]: expected tables [sites.NAME]");
    for (auto& [name, n] : *sites) {
      PeerSite s;
      s.name = std::string(name.str());
      const std::string where = "[sites." + s.name + "]";
      const toml::table* t = n.as_table();
      if (!t) return bad(where + ": expected a table");
      for (auto& [key, v] : *t) {
        const std::string k(key.str());
        if (k != "address" && k != "port") return bad(where + " " + k + ": unknown key (address, port)");
      }
      auto addr = string_of(*t, where, "address", "");
      if (!addr) return addr.error();
      if (addr->empty()) return bad(where + " address: required (the site agent's migration address)");
      s.address = *addr;
      auto port = port_of(*t, where, 7400, false);
      if (!port) return port.error();
      s.port = *port;
      c.sites[s.name] = s;
    }
  }
  return c;
}

}  // namespace tideway::agent

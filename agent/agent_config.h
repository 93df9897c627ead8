// tideway-agent's TOML configuration:
//
//   site = "primary"                           # our site name (required)
//   data_dir = "/var/lib/tideway/agent"        # protections are kept here
//   control_socket = "/run/tideway/agent.sock" # where `tideway` talks to us
//   max_unacked_mb = 256                       # per protection; writes block past it
//
//   [backup.dr]                                # one table per backup site
//   address = "10.250.0.2"
//   port = 7300
//
//   [tls] ...                                  # see wan/tls_config.h
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "proto/result.h"
#include "wan/options.h"

namespace tideway::agent {

struct BackupSite {
  std::string name;
  std::string address;
  uint16_t port = 7300;
};

struct AgentConfig {
  std::string site;
  std::string data_dir = "/var/lib/tideway/agent";
  std::string control_socket = "/run/tideway/agent.sock";
  uint64_t max_unacked_bytes = 256ull << 20;
  std::map<std::string, BackupSite> backups;
  wan::TlsOptions tls;
};

// `origin` names the file in error messages.
proto::Result<AgentConfig> parse_agent_config(const std::string& text, const std::string& origin);
proto::Result<AgentConfig> load_agent_config(const std::string& path);

}  // namespace tideway::agent

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
//   [codec]                                    # the WAN codec on replication streams
//   replication = true                         # encode page-aligned writes (if the backup agrees)
//   cache_mb = 64                              # CBR cache per protection, 0 .. 65536 (0: no CBR)
//   sub_blocks = 4                             # 1, 2, 4 or 8 sub-blocks per 4 KiB block
//   zstd_level = 1                             # -7 .. 19, 0: no zstd
//   delta_mb = 0                               # page-delta store per protection, 0 .. 65536
//
//   The backup keeps the same cache (and delta store) per protection and
//   refuses a protection whose codec needs more than its [codec]
//   max_memory_mb; docs/codec.md, "On the replication stream".
//
//   [migration] / [sites.NAME]                 # live migration: agent/migration_config.h
//
//   [tls] ...                                  # see wan/tls_config.h
//
//   At least one [backup.NAME] or a migration setting is required.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "agent/migration_config.h"
#include "agent/write_encoder.h"
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
  ReplicationCodecOptions codec;
  MigrationConfig migration;
};

// `origin` names the file in error messages.
proto::Result<AgentConfig> parse_agent_config(const std::string& text, const std::string& origin);
proto::Result<AgentConfig> load_agent_config(const std::string& path);

}  // namespace tideway::agent

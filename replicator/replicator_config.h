// tideway-replicator's TOML configuration:
//
//   site = "dr"                                     # our site name (required)
//   data_dir = "/var/lib/tideway/replicator"        # journal/, volumes/
//   control_socket = "/run/tideway/replicator.sock"
//   listen = "0.0.0.0"                              # address agents dial
//   port = 7300
//   segment_mb = 64                                 # journal segment size
//
//   [codec]
//   max_memory_mb = 1024    # all agents' codec decoders together (each
//                           # protection takes its agent's cache_mb +
//                           # delta_mb + 4); a protection needing more is
//                           # refused. 0: the codec is not offered.
//
//   [tls] ...                                       # see wan/tls_config.h
#pragma once

#include <string>

#include "proto/result.h"
#include "replicator/replicator.h"

namespace tideway::replicator {

struct ReplicatorConfig {
  std::string control_socket = "/run/tideway/replicator.sock";
  ReplicatorOptions options;
};

proto::Result<ReplicatorConfig> parse_replicator_config(const std::string& text, const std::string& origin);
proto::Result<ReplicatorConfig> load_replicator_config(const std::string& path);

}  // namespace tideway::replicator

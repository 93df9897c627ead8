// The agent's migration settings (the [migration] and [sites.NAME] tables of
// its TOML configuration):
//
//   [migration]
//   port = 7400                     # accept incoming migrations here (0: none)
//   listen = "0.0.0.0"
//   run_dir = "/run/tideway/vms"    # per VM: QMP socket, QEMU log, stream sockets
//   disk_dir = "/var/lib/tideway/disks"  # the images of [[disks]] image = "NAME"
//   qemu = "qemu-system-x86_64"
//   window_mb = 8                   # pages in flight per migration (backpressure)
//
//   [sites.b]                       # a site VMs can migrate to: its agent
//   address = "10.250.0.2"
//   port = 7400
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <string>

#include "proto/result.h"

namespace tideway::agent {

struct PeerSite {
  std::string name;
  std::string address;
  uint16_t port = 7400;
};

struct MigrationConfig {
  uint16_t listen_port = 0;
  std::string listen_address = "0.0.0.0";
  std::string run_dir = "/run/tideway/vms";
  // Images of agent-served disks ([[disks]] image = "NAME" in a VM's
  // description): NAME is a file here, at every site, so a migration
  // finds (or creates) the destination's copy by the same name.
  std::string disk_dir = "/var/lib/tideway/disks";
  std::string qemu_binary = "qemu-system-x86_64";
  uint64_t window_bytes = uint64_t{8} << 20;
  std::map<std::string, PeerSite> sites;

  bool enabled() const { return listen_port != 0 || !sites.empty(); }
};

// Reads [migration] and [sites.*] from a parsed agent configuration; both
// are optional. Errors name the table and key.
proto::Result<MigrationConfig> parse_migration_config(const toml::table& root);

}  // namespace tideway::agent

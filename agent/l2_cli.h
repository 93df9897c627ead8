// The command-line face of layer 2 for migration: `tideway garp` (announce
// a VM's MAC/IPv4 at its new site) and `tideway pool ...` (virtual cloud
// pools at this site). Kept out of tideway_main.cpp so that file only wires
// it in: add_l2_commands before parsing, run_l2_commands after.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "agent/vcp_pool.h"

namespace tideway::agent {

// The subcommands and their parsed arguments.
struct L2Cli {
  CLI::App* garp = nullptr;
  std::string iface, netns, mac, ip;
  int count = 3;
  bool reply = false;

  CLI::App* pool = nullptr;
  CLI::App *create = nullptr, *add_site = nullptr, *remove_site = nullptr, *destroy = nullptr, *list = nullptr;
  std::string pool_netns, name, local, dev, remote;
  uint32_t vni = 0;
  uint16_t port = vcp::kVxlanPort;
  bool force = false;
};

// Adds `garp` and `pool` (create, add-site, remove-site, delete, list) to
// `app`. The returned object must outlive parsing.
std::unique_ptr<L2Cli> add_l2_commands(CLI::App& app);

// After parsing: runs the selected command and returns its exit code (0 ok,
// 1 failed, 2 bad arguments), or nullopt if none of these was selected.
// `json`: print the result as JSON (the app's global --json).
std::optional<int> run_l2_commands(const L2Cli& cli, bool json);

}  // namespace tideway::agent

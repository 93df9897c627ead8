// Virtual cloud pools (CloudNet's VPLS pools, DESIGN.md 3.5): one
// customer's layer-2 segment spanning sites. At each site a pool is
//
//   bridge  vcp-NAME   the segment: the pool's VMs and hosts attach here
//   tunnel  vx-NAME    VXLAN, VNI = the pool's, underlay = the WAN device,
//                      a port of vcp-NAME, MAC learning on
//   sites              one flood entry per remote site's endpoint:
//                      bridge fdb append 00:00:00:00:00:00 dev vx-NAME dst IP
//
// Isolation: a bridge per pool, not br0 with VLAN filtering. Pools then
// share no forwarding table, flood domain or port, a VNI maps to exactly one
// bridge with no VLAN-to-VNI table to keep consistent at every site, and a
// pool is removed by deleting two devices. The cost (a bridge per pool) is
// nothing at the scale of a site's customers.
//
// The controller drives iproute2 (`ip`, `bridge`) through run_command:
// argv, no shell, one short-lived process per step (2-5 ms each here), the
// same commands an operator would type, and `-j` output to read the state
// back. Netlink through libmnl would save the process starts, but needs the
// VXLAN and FDB attribute encodings by hand; reconfiguration is rare and the
// whole operation takes tens of milliseconds, so that was not worth it.
//
// Devices carry the alias "tideway-vcp:NAME": the controller only ever
// changes or deletes devices so marked, never an operator's own. Every
// operation reads the kernel's state first and does only what is missing,
// so it is idempotent and safe to repeat (also after a crash half-way);
// create rolls back what it made if a step fails. Blocking.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/holder_command.h"
#include "proto/result.h"

namespace tideway::agent::vcp {

inline constexpr uint32_t kMaxVni = 0xFFFFFF;  // 24 bits
inline constexpr uint16_t kVxlanPort = 4789;   // IANA
// Outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8: a pool MTU of 1500 needs
// an underlay MTU of 1550 (the lab's --wan-mtu 1550).
inline constexpr int kVxlanOverhead = 50;
inline constexpr int kWantedPoolMtu = 1500;
inline constexpr const char* kAliasPrefix = "tideway-vcp:";
inline constexpr size_t kMaxPoolName = 11;  // "vcp-" + 11 = 15, IFNAMSIZ - 1

// 1-11 of [a-z0-9_-], starting with a letter or digit.
bool valid_pool_name(std::string_view name);
std::string bridge_name(std::string_view pool);  // "vcp-NAME"
std::string tunnel_name(std::string_view pool);  // "vx-NAME"

struct PoolSpec {
  std::string name;
  uint32_t vni = 0;
  std::string local;     // this site's endpoint: an IPv4 address of `underlay`
  std::string underlay;  // the WAN-facing device (the lab's wan0)
  uint16_t port = kVxlanPort;
};

// A pool as read back from the kernel.
struct Pool {
  std::string name;
  uint32_t vni = 0;
  std::string local, underlay;
  uint16_t port = 0;
  int mtu = 0;                     // the tunnel's (what the pool carries)
  bool up = false;                 // bridge and tunnel both up
  bool complete = false;           // bridge, tunnel, tunnel enslaved
  std::vector<std::string> sites;  // remote endpoints (flood entries)
  std::vector<std::string> ports;  // bridge ports other than the tunnel
};

struct OpReport {
  std::string pool;
  std::string action;    // "create", "add-site", ...
  bool changed = false;  // false: already so, nothing was done
  int commands = 0;      // iproute2 commands run (reads included)
  double ms = 0;         // wall time of the whole operation
  std::vector<std::string> notes;
};

// Pure readers of iproute2's JSON (`ip -j -d link show`, `bridge -j fdb
// show dev X`, `ip -j addr show dev X`); exposed for the tests.
struct LinkInfo {
  std::string name, alias, kind, master;
  int mtu = 0;
  bool up = false;
  // VXLAN only:
  uint32_t vni = 0;
  std::string local, underlay;
  uint16_t port = 0;
};
struct FdbEntry {
  std::string mac, dst, state;
};
proto::Result<std::vector<LinkInfo>> parse_links(std::string_view json_text);
proto::Result<std::vector<FdbEntry>> parse_fdb(std::string_view json_text);
proto::Result<std::vector<std::string>> parse_ipv4_addresses(std::string_view json_text);

using Runner = std::function<CommandResult(const std::vector<std::string>&)>;

class PoolController {
 public:
  // `netns`: run every command in that named namespace (`ip -n NS`), or in
  // ours if empty. `run` is run_command except in tests.
  explicit PoolController(std::string netns = {}, Runner run = run_command);

  proto::Result<OpReport> create(const PoolSpec& spec);
  proto::Result<OpReport> add_site(const std::string& pool, const std::string& remote);
  // Also forgets the MACs the tunnel learned behind that endpoint, so their
  // frames flood to the remaining sites instead of into the removed one.
  proto::Result<OpReport> remove_site(const std::string& pool, const std::string& remote);
  // Refuses while VMs/hosts are attached unless `force` (they are then
  // detached by the kernel, not deleted).
  proto::Result<OpReport> destroy(const std::string& pool, bool force);
  proto::Result<std::vector<Pool>> list();

 private:
  proto::Result<std::string> exec(const std::vector<std::string>& argv, OpReport* report);
  proto::Result<std::vector<LinkInfo>> read_links(OpReport* report);
  proto::Result<std::vector<FdbEntry>> read_fdb(const std::string& tunnel, OpReport* report);
  proto::Result<Pool> find(const std::vector<LinkInfo>& links, const std::string& name, OpReport* report);

  std::string netns_;
  Runner run_;
};

}  // namespace tideway::agent::vcp

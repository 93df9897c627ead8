#include "agent/vcp_pool.h"

#include <algorithm>
#include <cassert>
#include <chrono>

#include "agent/holder_rules.h"
#include "proto/arp.h"

namespace tideway::agent::vcp {
namespace {

using proto::Errc;
using Clock = std::chrono::steady_clock;
constexpr const char* kFloodMac = "00:00:00:00:00:00";

std::string alias_of(std::string_view pool) { return kAliasPrefix + std::string(pool); }

const LinkInfo* find_link(const std::vector<LinkInfo>& links, const std::string& name) {
  for (const auto& l : links)
    if (l.name == name) return &l;
  return nullptr;
}

proto::Result<std::string> check_ipv4(const std::string& text, const char* what) {
  auto ip = proto::arp::parse_ipv4(text);
  if (!ip) return proto::Error{Errc::kInvalid, std::string(what) + ": " + ip.error().detail};
  return text;
}

proto::Result<void> check_name(const std::string& name) {
  if (!valid_pool_name(name))
    return proto::Error{Errc::kInvalid, "bad pool name '" + name + "' (1-" + std::to_string(kMaxPoolName) +
                                            " of a-z 0-9 _ -, starting with a letter or digit)"};
  return {};
}

// The pool's two devices, if they exist; an unmarked device of the same
// name is someone else's and stops us.
struct Devices {
  const LinkInfo* bridge = nullptr;
  const LinkInfo* tunnel = nullptr;
};

proto::Result<Devices> devices_of(const std::vector<LinkInfo>& links, const std::string& pool) {
  Devices d{find_link(links, bridge_name(pool)), find_link(links, tunnel_name(pool))};
  for (auto [dev, kind] : {std::pair{d.bridge, "bridge"}, std::pair{d.tunnel, "vxlan"}}) {
    if (dev && (dev->alias != alias_of(pool) || dev->kind != kind))
      return proto::Error{Errc::kInvalid, "device " + dev->name + " exists but is not pool " + pool +
                                              "'s (no alias " + alias_of(pool) +
                                              "); choose another pool name or remove that device"};
  }
  return d;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

bool valid_pool_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxPoolName || name[0] == '-' || name[0] == '_') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string bridge_name(std::string_view pool) { return "vcp-" + std::string(pool); }
std::string tunnel_name(std::string_view pool) { return "vx-" + std::string(pool); }

PoolController::PoolController(std::string netns, Runner run) : netns_(std::move(netns)), run_(std::move(run)) {
  assert(run_);
}

proto::Result<std::string> PoolController::exec(const std::vector<std::string>& argv, OpReport* report) {
  assert(!argv.empty());
  std::vector<std::string> full{argv[0]};
  if (!netns_.empty()) {
    full.push_back("-n");
    full.push_back(netns_);
  }
  full.insert(full.end(), argv.begin() + 1, argv.end());
  if (report) ++report->commands;
  CommandResult r = run_(full);
  if (!r.exited(0)) return proto::Error{Errc::kSystem, r.describe(full)};
  return std::move(r.output);
}

proto::Result<std::vector<LinkInfo>> PoolController::read_links(OpReport* report) {
  auto out = exec({"ip", "-j", "-d", "link", "show"}, report);
  if (!out) return out.error();
  return parse_links(*out);
}

proto::Result<std::vector<FdbEntry>> PoolController::read_fdb(const std::string& tunnel, OpReport* report) {
  auto out = exec({"bridge", "-j", "fdb", "show", "dev", tunnel}, report);
  if (!out) return out.error();
  return parse_fdb(*out);
}

proto::Result<Pool> PoolController::find(const std::vector<LinkInfo>& links, const std::string& name,
                                         OpReport* report) {
  auto d = devices_of(links, name);
  if (!d) return d.error();
  if (!d->bridge && !d->tunnel) return proto::Error{Errc::kInvalid, "no pool '" + name + "' here"};
  Pool p;
  p.name = name;
  if (d->tunnel) {
    p.vni = d->tunnel->vni;
    p.local = d->tunnel->local;
    p.underlay = d->tunnel->underlay;
    p.port = d->tunnel->port;
    p.mtu = d->tunnel->mtu;
    auto fdb = read_fdb(d->tunnel->name, report);
    if (!fdb) return fdb.error();
    for (const auto& e : *fdb)
      if (e.mac == kFloodMac && !e.dst.empty()) p.sites.push_back(e.dst);
  }
  p.complete = d->bridge && d->tunnel && d->tunnel->master == d->bridge->name;
  p.up = p.complete && d->bridge->up && d->tunnel->up;
  for (const auto& l : links)
    if (d->bridge && l.master == d->bridge->name && l.name != tunnel_name(name)) p.ports.push_back(l.name);
  return p;
}

proto::Result<std::vector<Pool>> PoolController::list() {
  auto links = read_links(nullptr);
  if (!links) return links.error();
  std::vector<std::string> names;
  for (const auto& l : *links) {
    if (l.alias.rfind(kAliasPrefix, 0) != 0) continue;
    std::string n = l.alias.substr(std::string_view(kAliasPrefix).size());
    if (valid_pool_name(n) && std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
  }
  std::sort(names.begin(), names.end());
  std::vector<Pool> pools;
  for (const auto& n : names) {
    auto p = find(*links, n, nullptr);
    if (!p) return p.error();
    pools.push_back(std::move(*p));
  }
  return pools;
}

proto::Result<OpReport> PoolController::create(const PoolSpec& spec) {
  const auto t0 = Clock::now();
  OpReport rep{spec.name, "create"};
  if (auto c = check_name(spec.name); !c) return c.error();
  if (spec.vni == 0 || spec.vni > kMaxVni)
    return proto::Error{Errc::kInvalid, "VNI " + std::to_string(spec.vni) + " out of range (1-16777215)"};
  if (auto ip = check_ipv4(spec.local, "local endpoint"); !ip) return ip.error();
  if (!valid_interface_name(spec.underlay))
    return proto::Error{Errc::kInvalid, "bad underlay device name '" + spec.underlay + "'"};
  if (spec.port == 0) return proto::Error{Errc::kInvalid, "UDP port 0"};

  auto links = read_links(&rep);
  if (!links) return links.error();
  const LinkInfo* under = find_link(*links, spec.underlay);
  if (!under) return proto::Error{Errc::kInvalid, "underlay device '" + spec.underlay + "' not found"};
  auto addrs_out = exec({"ip", "-j", "addr", "show", "dev", spec.underlay}, &rep);
  if (!addrs_out) return addrs_out.error();
  auto addrs = parse_ipv4_addresses(*addrs_out);
  if (!addrs) return addrs.error();
  if (std::find(addrs->begin(), addrs->end(), spec.local) == addrs->end())
    return proto::Error{Errc::kInvalid, spec.local + " is not an address of " + spec.underlay +
                                            " (the local endpoint must be this site's WAN address)"};
  auto dev = devices_of(*links, spec.name);
  if (!dev) return dev.error();
  const LinkInfo* tun = dev->tunnel;
  if (tun && (tun->vni != spec.vni || tun->local != spec.local || tun->underlay != spec.underlay || tun->port != spec.port))
    return proto::Error{Errc::kInvalid, "pool '" + spec.name + "' exists with VNI " + std::to_string(tun->vni) +
                                            ", local " + tun->local + ", dev " + tun->underlay + ", port " +
                                            std::to_string(tun->port) + ": delete it first to change it"};
  for (const auto& l : *links)
    if (l.kind == "vxlan" && l.vni == spec.vni && l.port == spec.port && l.name != tunnel_name(spec.name))
      return proto::Error{Errc::kInvalid, "VNI " + std::to_string(spec.vni) + " is already carried by " + l.name +
                                              (l.alias.rfind(kAliasPrefix, 0) == 0 ? " (" + l.alias + ")" : "") +
                                              ": pools need distinct VNIs"};

  // Each step, and how to undo it if a later one fails.
  std::vector<std::vector<std::string>> undo;
  auto step = [&](std::vector<std::string> argv, std::vector<std::string> rollback) -> proto::Result<void> {
    auto r = exec(argv, &rep);
    if (!r) {
      for (auto it = undo.rbegin(); it != undo.rend(); ++it) (void)exec(*it, &rep);
      return r.error();
    }
    if (!rollback.empty()) undo.push_back(std::move(rollback));
    rep.changed = true;
    return {};
  };
  const std::string br = bridge_name(spec.name), vx = tunnel_name(spec.name);
  if (!dev->bridge) {
    if (auto r = step({"ip", "link", "add", br, "type", "bridge"}, {"ip", "link", "del", "dev", br}); !r) return r.error();
    if (auto r = step({"ip", "link", "set", "dev", br, "alias", alias_of(spec.name)}, {}); !r) return r.error();
  }
  if (!tun) {
    // nolearning: frames go only to the flood list, so membership is exactly
    // the site list. With learning, a remote that still sends re-teaches its
    // MACs and a removed site stays reachable for the 300 s ageing time.
    // Cost: unicast is replicated to every site (nothing with two sites).
    if (auto r = step({"ip", "link", "add", vx, "type", "vxlan", "id", std::to_string(spec.vni), "local", spec.local,
                       "dstport", std::to_string(spec.port), "dev", spec.underlay, "nolearning"},
                      {"ip", "link", "del", "dev", vx});
        !r)
      return r.error();
    if (auto r = step({"ip", "link", "set", "dev", vx, "alias", alias_of(spec.name)}, {}); !r) return r.error();
  }
  if (!tun || tun->master != br)
    if (auto r = step({"ip", "link", "set", "dev", vx, "master", br}, {}); !r) return r.error();
  if (!tun || !tun->up)
    if (auto r = step({"ip", "link", "set", "dev", vx, "up"}, {}); !r) return r.error();
  if (!dev->bridge || !dev->bridge->up)
    if (auto r = step({"ip", "link", "set", "dev", br, "up"}, {}); !r) return r.error();

  if (under->mtu - kVxlanOverhead < kWantedPoolMtu)
    rep.notes.push_back("underlay " + spec.underlay + " has MTU " + std::to_string(under->mtu) + ": the pool carries " +
                        std::to_string(under->mtu - kVxlanOverhead) + "-byte frames; VMs with MTU " +
                        std::to_string(kWantedPoolMtu) + " need an underlay MTU of " +
                        std::to_string(kWantedPoolMtu + kVxlanOverhead));
  if (!rep.changed) rep.notes.push_back("pool exists with these settings; nothing to do");
  rep.ms = ms_since(t0);
  return rep;
}

proto::Result<OpReport> PoolController::add_site(const std::string& pool, const std::string& remote) {
  const auto t0 = Clock::now();
  OpReport rep{pool, "add-site"};
  if (auto c = check_name(pool); !c) return c.error();
  if (auto ip = check_ipv4(remote, "remote endpoint"); !ip) return ip.error();
  auto links = read_links(&rep);
  if (!links) return links.error();
  auto p = find(*links, pool, &rep);
  if (!p) return p.error();
  if (!p->complete) return proto::Error{Errc::kInvalid, "pool '" + pool + "' is incomplete here: create it again first"};
  if (remote == p->local) return proto::Error{Errc::kInvalid, remote + " is this site's own endpoint"};
  if (std::find(p->sites.begin(), p->sites.end(), remote) != p->sites.end()) {
    rep.notes.push_back(remote + " is already a site of pool " + pool + "; nothing to do");
  } else {
    auto r = exec({"bridge", "fdb", "append", kFloodMac, "dev", tunnel_name(pool), "dst", remote}, &rep);
    if (!r) return r.error();
    rep.changed = true;
  }
  rep.ms = ms_since(t0);
  return rep;
}

proto::Result<OpReport> PoolController::remove_site(const std::string& pool, const std::string& remote) {
  const auto t0 = Clock::now();
  OpReport rep{pool, "remove-site"};
  if (auto c = check_name(pool); !c) return c.error();
  if (auto ip = check_ipv4(remote, "remote endpoint"); !ip) return ip.error();
  auto links = read_links(&rep);
  if (!links) return links.error();
  auto p = find(*links, pool, &rep);
  if (!p) return p.error();
  const std::string vx = tunnel_name(pool);
  if (std::find(p->sites.begin(), p->sites.end(), remote) == p->sites.end()) {
    rep.notes.push_back(remote + " is not a site of pool " + pool + "; nothing to do");
    rep.ms = ms_since(t0);
    return rep;
  }
  if (auto r = exec({"bridge", "fdb", "del", kFloodMac, "dev", vx, "dst", remote}, &rep); !r) return r.error();
  rep.changed = true;
  auto fdb = read_fdb(vx, &rep);
  if (!fdb) return fdb.error();
  int forgotten = 0;
  for (const auto& e : *fdb) {
    if (e.dst != remote || e.mac == kFloodMac) continue;
    // Best effort: an entry may age out between the read and the delete.
    if (exec({"bridge", "fdb", "del", e.mac, "dev", vx, "dst", remote}, &rep)) ++forgotten;
  }
  if (forgotten > 0) rep.notes.push_back("forgot " + std::to_string(forgotten) + " MACs learned behind " + remote);
  rep.ms = ms_since(t0);
  return rep;
}

proto::Result<OpReport> PoolController::destroy(const std::string& pool, bool force) {
  const auto t0 = Clock::now();
  OpReport rep{pool, "delete"};
  if (auto c = check_name(pool); !c) return c.error();
  auto links = read_links(&rep);
  if (!links) return links.error();
  auto dev = devices_of(*links, pool);
  if (!dev) return dev.error();
  if (!dev->bridge && !dev->tunnel) {
    rep.notes.push_back("no pool '" + pool + "' here; nothing to do");
    rep.ms = ms_since(t0);
    return rep;
  }
  auto p = find(*links, pool, &rep);
  if (!p) return p.error();
  if (!p->ports.empty()) {
    std::string list;
    for (const auto& port : p->ports) list += (list.empty() ? "" : ", ") + port;
    if (!force)
      return proto::Error{Errc::kInvalid, "pool '" + pool + "' still has ports " + list +
                                              ": detach them (ip link set DEV nomaster) or use --force"};
    rep.notes.push_back("detached " + list);
  }
  for (const LinkInfo* d : {dev->tunnel, dev->bridge}) {
    if (!d) continue;
    if (auto r = exec({"ip", "link", "del", "dev", d->name}, &rep); !r) return r.error();
    rep.changed = true;
  }
  rep.ms = ms_since(t0);
  return rep;
}

}  // namespace tideway::agent::vcp

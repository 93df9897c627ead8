#include "agent/l2_cli.h"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agent/garp.h"
#include "agent/holder_rules.h"
#include "agent/vcp_pool.h"

namespace tideway::agent {

using nlohmann::json;


namespace {

int fail(const proto::Error& e) {
  std::cerr << "tideway: " << e.detail << "\n";
  return e.code == proto::Errc::kInvalid ? 2 : 1;
}

json report_json(const vcp::OpReport& r) {
  return {{"ok", true}, {"pool", r.pool}, {"action", r.action}, {"changed", r.changed},
          {"ms", r.ms}, {"commands", r.commands}, {"notes", r.notes}};
}

int print_report(const proto::Result<vcp::OpReport>& r, bool as_json) {
  if (!r) return fail(r.error());
  if (as_json) {
    std::cout << report_json(*r).dump(2) << "\n";
    return 0;
  }
  std::printf("pool %s: %s %s in %.1f ms (%d commands)\n", r->pool.c_str(), r->action.c_str(),
              r->changed ? "done" : "unchanged", r->ms, r->commands);
  for (const auto& n : r->notes) std::printf("  note: %s\n", n.c_str());
  return 0;
}

int print_pools(const proto::Result<std::vector<vcp::Pool>>& pools, bool as_json) {
  if (!pools) return fail(pools.error());
  if (as_json) {
    json arr = json::array();
    for (const auto& p : *pools)
      arr.push_back({{"name", p.name}, {"bridge", vcp::bridge_name(p.name)}, {"tunnel", vcp::tunnel_name(p.name)},
                     {"vni", p.vni}, {"local", p.local}, {"underlay", p.underlay}, {"port", p.port},
                     {"mtu", p.mtu}, {"up", p.up}, {"complete", p.complete}, {"sites", p.sites},
                     {"ports", p.ports}});
    std::cout << json{{"ok", true}, {"pools", arr}}.dump(2) << "\n";
    return 0;
  }
  std::printf("%-12s %-15s %9s %-16s %-8s %5s %-10s %s\n", "POOL", "BRIDGE", "VNI", "LOCAL", "DEV", "MTU", "STATE",
              "SITES / PORTS");
  for (const auto& p : *pools) {
    std::string sites, ports;
    for (const auto& s : p.sites) sites += (sites.empty() ? "" : ",") + s;
    for (const auto& s : p.ports) ports += (ports.empty() ? "" : ",") + s;
    std::printf("%-12s %-15s %9u %-16s %-8s %5d %-10s %s / %s\n", p.name.c_str(), vcp::bridge_name(p.name).c_str(),
                p.vni, p.local.c_str(), p.underlay.c_str(), p.mtu,
                !p.complete ? "incomplete" : p.up ? "up" : "down", sites.empty() ? "-" : sites.c_str(),
                ports.empty() ? "-" : ports.c_str());
  }
  return 0;
}

int run_garp(const L2Cli& c, bool as_json) {
  auto mac = proto::arp::parse_mac(c.mac);
  if (!mac) return fail(mac.error());
  auto ip = proto::arp::parse_ipv4(c.ip);
  if (!ip) return fail(ip.error());
  GarpRequest req;
  req.iface = c.iface;
  req.netns = c.netns;
  req.mac = *mac;
  req.ip = *ip;
  req.form = c.reply ? proto::arp::Op::kReply : proto::arp::Op::kRequest;
  req.schedule = garp_schedule(c.count);
  auto r = send_garp(req);
  if (!r) return fail(r.error());
  if (as_json) {
    std::cout << json{{"ok", true},          {"iface", c.iface},   {"netns", c.netns},
                      {"mac", c.mac},        {"ip", c.ip},         {"frames", r->sent_at_ms.size()},
                      {"sent_at_ms", r->sent_at_ms}, {"total_ms", r->total_ms},
                      {"first_sent_unix_ms", r->first_sent_unix_ms}}
                     .dump(2)
              << "\n";
    return 0;
  }
  std::string at;
  for (double t : r->sent_at_ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.1f", at.empty() ? "" : ", ", t);
    at += buf;
  }
  std::printf("sent %zu gratuitous ARP %ss: %s is at %s, on %s%s, at %s ms\n", r->sent_at_ms.size(),
              c.reply ? "reply" : "request", proto::arp::format_ipv4(*ip).c_str(),
              proto::arp::format_mac(*mac).c_str(), c.iface.c_str(),
              c.netns.empty() ? "" : (" (netns " + c.netns + ")").c_str(), at.c_str());
  return 0;
}

}  // namespace

std::unique_ptr<L2Cli> add_l2_commands(CLI::App& app) {
  auto c = std::make_unique<L2Cli>();
  c->garp = app.add_subcommand(
      "garp",
      "announce a VM's MAC and IPv4 with gratuitous ARPs (what the migration destination sends when the VM "
      "pauses): a burst at 0, 20, 100 ms ... on the VM's interface, so every bridge of its pool and every "
      "neighbour cache learns the new location. Needs root (CAP_NET_RAW).");
  c->garp->fallthrough();
  c->garp->add_option("--iface", c->iface,
                      "the VM's own interface (its end of the veth or tap), where frames enter the site bridge "
                      "through the VM's port")
      ->required();
  c->garp->add_option("--mac", c->mac, "the VM's MAC, e.g. 52:54:00:12:34:56")->required();
  c->garp->add_option("--ip", c->ip, "the VM's IPv4 address")->required();
  c->garp->add_option("--netns", c->netns, "network namespace of --iface (name under /run/netns, or a path)");
  c->garp->add_option("--count", c->count, "frames in the burst: offsets 0, 20, 100, 250, 500, 1000, 2000, then +1 s")
      ->check(CLI::Range(1, kMaxGarpFrames))
      ->capture_default_str();
  c->garp->add_flag("--reply", c->reply, "send ARP replies (RFC 5944) instead of requests (RFC 5227 announcements)");

  c->pool = app.add_subcommand(
      "pool",
      "virtual cloud pools at this site: a customer's layer-2 segment across sites, a bridge vcp-NAME per "
      "pool joined to the other sites by a VXLAN tunnel vx-NAME (one flood entry per remote site). Every "
      "command is idempotent and reports how long the reconfiguration took. Needs root.");
  c->pool->fallthrough();
  c->pool->require_subcommand(1);
  c->pool->add_option("--netns", c->pool_netns, "run in this named network namespace (ip -n)");
  c->create = c->pool->add_subcommand("create", "create the pool's bridge and tunnel here (repairs a half-made one)");
  c->create->fallthrough();
  c->create->add_option("name", c->name, "pool name: 1-11 of a-z 0-9 _ -")->required();
  c->create->add_option("--vni", c->vni, "VXLAN network identifier, the same at every site")
      ->required()
      ->check(CLI::Range(1u, vcp::kMaxVni));
  c->create->add_option("--local", c->local, "this site's endpoint: an IPv4 address of --dev")->required();
  c->create->add_option("--dev", c->dev, "the underlay (WAN) device; its MTU should be 1550")->required();
  c->create->add_option("--port", c->port, "VXLAN UDP port")->capture_default_str();
  c->add_site = c->pool->add_subcommand("add-site", "join a remote site: flood the pool's broadcasts to its endpoint");
  c->remove_site = c->pool->add_subcommand("remove-site", "leave a remote site (and forget MACs learned there)");
  for (CLI::App* s : {c->add_site, c->remove_site}) {
    s->fallthrough();
    s->add_option("name", c->name, "pool name")->required();
    s->add_option("remote", c->remote, "the remote site's endpoint (IPv4)")->required();
  }
  c->destroy = c->pool->add_subcommand("delete", "delete the pool's bridge and tunnel here");
  c->destroy->fallthrough();
  c->destroy->add_option("name", c->name, "pool name")->required();
  c->destroy->add_flag("--force", c->force, "also when VMs or hosts are still attached (they are detached)");
  c->list = c->pool->add_subcommand("list", "pools here: VNI, endpoint, MTU, state, remote sites, attached ports");
  c->list->fallthrough();
  return c;
}

std::optional<int> run_l2_commands(const L2Cli& c, bool as_json) {
  if (c.garp->parsed()) return run_garp(c, as_json);
  if (!c.pool->parsed()) return std::nullopt;
  if (!c.pool_netns.empty() && !valid_netns_name(c.pool_netns))
    return fail({proto::Errc::kInvalid, "bad network namespace name '" + c.pool_netns + "'"});
  vcp::PoolController ctl(c.pool_netns);
  if (c.create->parsed()) return print_report(ctl.create({c.name, c.vni, c.local, c.dev, c.port}), as_json);
  if (c.add_site->parsed()) return print_report(ctl.add_site(c.name, c.remote), as_json);
  if (c.remove_site->parsed()) return print_report(ctl.remove_site(c.name, c.remote), as_json);
  if (c.destroy->parsed()) return print_report(ctl.destroy(c.name, c.force), as_json);
  if (c.list->parsed()) return print_pools(ctl.list(), as_json);
  return 2;
}

}  // namespace tideway::agent

// tideway: the operator's command line. Talks to tideway-agent (protect,
// unprotect, status, vm, migrate) and tideway-replicator (promote,
// backup-status) through their control sockets.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agent/l2_cli.h"
#include "agent/migrate_cli.h"
#include "wan/codec/cbr_scan_cli.h"
#include "wan/control_socket.h"

using nlohmann::json;
using namespace tideway;

namespace {

int call(const std::string& socket, const json& req, bool as_json, int timeout_s,
         const std::function<void(const json&)>& print) {
  auto r = wan::control_call(socket, req, std::chrono::seconds(timeout_s));
  if (!r) {
    std::cerr << "tideway: " << r.error().detail << "\n";
    return 3;
  }
  const json& j = r.value();
  if (as_json) {
    std::cout << j.dump(2) << "\n";
  } else if (j.value("ok", false)) {
    print(j);
  }
  if (!j.value("ok", false)) {
    if (!as_json) std::cerr << "tideway: " << j.value("error", std::string("failed")) << "\n";
    return 1;
  }
  return 0;
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (1ull << 30)) std::snprintf(buf, sizeof buf, "%.1fG", b / double(1ull << 30));
  else if (b >= (1ull << 20)) std::snprintf(buf, sizeof buf, "%.1fM", b / double(1ull << 20));
  else if (b >= 1024) std::snprintf(buf, sizeof buf, "%.1fK", b / 1024.0);
  else std::snprintf(buf, sizeof buf, "%lluB", static_cast<unsigned long long>(b));
  return buf;
}

void print_status(const json& j) {
  std::printf("site %s\n", j.value("site", "").c_str());
  std::printf("%-16s %-9s %-12s %10s %10s %8s %9s %10s %6s %9s\n", "NAME", "MODE", "STATE", "PENDING", "COMMITTED",
              "UNACKED", "BYTES", "OLDEST_MS", "HELD", "HOLD_MS");
  for (const auto& p : j.value("protections", json::array())) {
    const json h = p.value("holder", json::object());
    std::printf("%-16s %-9s %-12s %10llu %10llu %8llu %9s %10.1f %6llu %9.1f\n", p.value("name", "").c_str(),
                p.value("mode", "").c_str(), p.value("state", "").c_str(),
                (unsigned long long)p.value("pending", 0ull), (unsigned long long)p.value("committed", 0ull),
                (unsigned long long)p.value("unacked_writes", 0ull), human_bytes(p.value("unacked_bytes", 0ull)).c_str(),
                p.value("oldest_unacked_ms", 0.0), (unsigned long long)h.value("held", 0ull),
                h.value("oldest_hold_ms", 0.0));
    if (p.contains("error") && !p["error"].get<std::string>().empty())
      std::printf("  ! %s\n", p["error"].get<std::string>().c_str());
    // One line on the WAN codec: what it saved on this protection's writes.
    const json c = p.value("codec", json());
    if (c.is_object() && c.value("page_bytes", 0ull) > 0)
      std::printf("  codec: %s of writes sent as %s (ratio %.2f, %s saved), %.1f us CPU per write, %llu raw\n",
                  human_bytes(c.value("page_bytes", 0ull)).c_str(), human_bytes(c.value("wire_bytes", 0ull)).c_str(),
                  c.value("ratio", 1.0), human_bytes(c.value("bytes_saved", 0ull)).c_str(),
                  c.value("cpu_us_per_write", 0.0), (unsigned long long)c.value("raw_writes", 0ull));
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tideway: protect VMs and containers with zero-RPO pipelined replication to a backup site.\n\n"
      "At the protected site (talks to tideway-agent):\n"
      "  tideway protect NAME --volume FILE [--size 1G] --mount DIR | --nbd-socket PATH\n"
      "                  [--mode pipelined|sync|async] [--app-iface IF --queue N] [--backup SITE]\n"
      "  tideway status [--json]\n"
      "  tideway unprotect NAME\n"
      "At the backup site (talks to tideway-replicator):\n"
      "  tideway backup-status [--json]\n"
      "  tideway promote NAME [--json]     stop intake, apply the journal, hand over the image\n"
      "Migration (talks to tideway-agent at the VM's current site):\n"
      "  tideway vm start SPEC.toml | stop NAME | resume NAME | list\n"
      "  tideway migrate VM --to SITE [--rate 100M] [--no-cbr --no-delta --no-zstd --no-smart-stop]\n"
      "                  [--report FILE.json] [--plot FILE.svg] [--detach]\n"
      "  tideway migrate-status VM | migrate-cancel VM\n"
      "Anywhere:\n"
      "  tideway cbr-scan IMAGE [--cache-mb 100 --cache-mb 1024] [--json]   what the WAN codec would save\n"
      "Layer 2 for migration (root):\n"
      "  tideway pool create|add-site|remove-site|delete|list ...   virtual cloud pools (VXLAN) at this site\n"
      "  tideway garp --iface IF --mac MAC --ip IP [--netns NS] [--count N]   announce a moved VM\n"};
  app.require_subcommand(1);
  std::string agent_socket = "/run/tideway/agent.sock", repl_socket = "/run/tideway/replicator.sock";
  bool as_json = false;
  int timeout = 30;
  app.add_option("--socket", agent_socket, "tideway-agent's control socket")->capture_default_str();
  app.add_option("--replicator-socket", repl_socket, "tideway-replicator's control socket")->capture_default_str();
  app.add_flag("--json", as_json, "print the daemon's reply as JSON (for scripts)");
  app.add_option("--timeout", timeout, "seconds to wait for the daemon")->capture_default_str();

  auto* protect = app.add_subcommand("protect", "start protecting a VM's or container's volume");
  std::string name, volume, size_str, mount, nbd_socket, mode = "pipelined", app_iface, backup;
  int queue = 0;
  protect->add_option("name", name, "protection name, also the backup volume's name ([A-Za-z0-9_.-])")->required();
  protect->add_option("--volume", volume, "backing file or block device (absolute path)")->required();
  protect->add_option("--size", size_str, "create the file at this size if missing: bytes or K/M/G suffix");
  auto* m_opt = protect->add_option("--mount", mount, "FUSE tap: export the volume as DIR/disk.img (containers)");
  auto* n_opt = protect->add_option("--nbd-socket", nbd_socket, "NBD tap: serve the volume on this unix socket (QEMU VMs)");
  m_opt->excludes(n_opt);
  protect->add_option("--mode", mode, "pipelined (hold replies until the backup acks), sync, async")
      ->check(CLI::IsMember({"pipelined", "sync", "async"}))
      ->capture_default_str();
  protect->add_option("--app-iface", app_iface, "interface toward the protected namespace: its packets are held");
  protect->add_option("--queue", queue, "NFQUEUE number for the holder")->check(CLI::Range(0, 65535));
  protect->add_option("--backup", backup, "backup site from the agent config (default: the only one)");

  auto* unprotect = app.add_subcommand("unprotect", "stop protecting (the holder rule is removed)");
  unprotect->add_option("name", name, "protection name")->required();
  app.add_subcommand("status", "protections: mode, state, counters, unacked writes, held packets");
  app.add_subcommand("backup-status", "backup volumes, journal and applier at the backup site");
  auto* promote = app.add_subcommand("promote", "make the backup volume usable for recovery");
  promote->add_option("name", name, "protection (volume) name")->required();
  auto* cbr_scan = app.add_subcommand(
      "cbr-scan",
      "offline: what the WAN codec would send for a disk or memory image (zero pages, duplicate "
      "sub-blocks per cache size, bytes in and out); needs no daemon");
  wan::codec::CbrScanArgs scan_args;
  wan::codec::add_cbr_scan_options(*cbr_scan, scan_args, false);
  // Layer 2 for migration: garp, pool (agent/l2_cli.h).
  auto l2 = agent::add_l2_commands(app);
  // VMs and migration (agent/migrate_cli.h).
  auto mig = agent::add_migrate_commands(app);
  CLI11_PARSE(app, argc, argv);
  if (auto rc = agent::run_l2_commands(*l2, as_json)) return *rc;
  if (auto rc = agent::run_migrate_commands(*mig, agent_socket, as_json, timeout)) return *rc;

  if (*cbr_scan) {
    scan_args.json = as_json;
    return wan::codec::run_cbr_scan(scan_args, "tideway cbr-scan");
  }

  if (*protect) {
    json spec{{"name", name}, {"volume", volume}, {"mode", mode}};
    if (!size_str.empty()) {
      char* end = nullptr;
      unsigned long long v = std::strtoull(size_str.c_str(), &end, 10);
      std::string suf = end;
      unsigned long long mul = suf.empty() ? 1 : suf == "K" ? 1ull << 10 : suf == "M" ? 1ull << 20 : suf == "G" ? 1ull << 30 : 0;
      if (mul == 0 || v == 0) {
        std::cerr << "tideway: --size \"" << size_str << "\": expected bytes or a number with K, M or G\n";
        return 2;
      }
      spec["size"] = v * mul;
    }
    if (!mount.empty()) spec["tap"] = "fuse", spec["mount"] = mount;
    else if (!nbd_socket.empty()) spec["tap"] = "nbd", spec["nbd_socket"] = nbd_socket;
    else {
      std::cerr << "tideway: protect needs a tap: --mount DIR (FUSE) or --nbd-socket PATH (NBD)\n";
      return 2;
    }
    if (!app_iface.empty()) spec["app_iface"] = app_iface, spec["queue"] = queue;
    if (!backup.empty()) spec["backup"] = backup;
    return call(agent_socket, {{"cmd", "protect"}, {"spec", spec}}, as_json, timeout, [](const json& j) {
      const json& p = j["protection"];
      std::printf("protecting %s: %s mode, %s tap at %s, backup %s (%s)\n", p.value("name", "").c_str(),
                  p.value("mode", "").c_str(), p.value("tap", "").c_str(), p.value("tap_path", "").c_str(),
                  p.value("backup", "").c_str(), p.value("state", "").c_str());
    });
  }
  if (*unprotect)
    return call(agent_socket, {{"cmd", "unprotect"}, {"name", name}}, as_json, timeout, [](const json& j) {
      std::printf("unprotected %s (%llu unacked writes dropped)\n", j.value("name", "").c_str(),
                  (unsigned long long)j.value("unacked_writes_dropped", 0ull));
    });
  if (app.got_subcommand("status")) return call(agent_socket, {{"cmd", "status"}}, as_json, timeout, print_status);
  if (app.got_subcommand("backup-status"))
    return call(repl_socket, {{"cmd", "status"}}, as_json, timeout, [](const json& j) {
      std::printf("%-16s %10s %14s %14s %10s %s\n", "NAME", "SIZE", "DURABLE_SEQ", "APPLIED_SEQ", "PROMOTED", "IMAGE");
      for (const auto& v : j.value("volumes", json::array()))
        std::printf("%-16s %10s %14llu %14llu %10s %s\n", v.value("name", "").c_str(),
                    human_bytes(v.value("size", 0ull)).c_str(), (unsigned long long)v.value("durable_seq", 0ull),
                    (unsigned long long)v.value("applied_seq", 0ull), v.value("promoted", false) ? "yes" : "no",
                    v.value("path", "").c_str());
      const json jr = j.value("journal", json::object());
      std::printf("journal: %llu segments, %s, last sync %.2f ms\n", (unsigned long long)jr.value("segments", 0ull),
                  human_bytes(jr.value("bytes", 0ull)).c_str(), jr.value("last_sync_ms", 0.0));
    });
  if (*promote)
    return call(repl_socket, {{"cmd", "promote"}, {"name", name}}, as_json, std::max(timeout, 600), [](const json& j) {
      std::printf("promoted %s: image %s (%s), applied through seq %llu\n", j.value("name", "").c_str(),
                  j.value("image", "").c_str(), human_bytes(j.value("size", 0ull)).c_str(),
                  (unsigned long long)j.value("applied_seq", 0ull));
    });
  return 2;
}

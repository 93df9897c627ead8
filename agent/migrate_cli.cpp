#include "agent/migrate_cli.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/holder_command.h"
#include "wan/control_socket.h"

namespace tideway::agent {

using nlohmann::json;

namespace {

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

std::string mb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
  return buf;
}

// One call; prints the error and returns nullopt when it failed.
std::optional<json> ask(const std::string& socket, const json& req, int timeout_s, bool quiet = false) {
  auto r = wan::control_call(socket, req, std::chrono::seconds(timeout_s));
  if (!r) {
    std::cerr << "tideway: " << r.error().detail << "\n";
    return std::nullopt;
  }
  if (!r->value("ok", false) && !quiet) std::cerr << "tideway: " << r->value("error", std::string("failed")) << "\n";
  return *r;
}

std::string progress_line(const json& p) {
  char buf[256];
  const json d = p.value("disk", json());
  if (p.value("phase", "") == "disk" && d.is_object()) {
    const auto passes = d.value("passes", json::array());
    std::snprintf(buf, sizeof buf, "%-13s pass %2zu  copied %llu of %llu blocks (%s)  on the wire %s  %6.1f Mbit/s",
                  "disk", passes.size() + 1, (unsigned long long)d.value("blocks_sent", 0ull),
                  (unsigned long long)d.value("blocks_to_copy", 0ull), d.value("mode", "").c_str(),
                  mb(d.value("wire_bytes", 0ull)).c_str(), p.value("rate_bytes_per_sec", 0.0) * 8 / 1e6);
    return buf;
  }
  const json its = p.value("iterations", json::array());
  uint64_t sent = 0, dirtied = 0, remaining = 0;
  if (!its.empty()) {
    sent = its.back().value("pages_sent", 0ull);
    dirtied = its.back().value("pages_dirtied", 0ull);
    remaining = its.back().value("pages_remaining", 0ull);
  }
  const double eta = p.value("eta_s", -1.0);
  std::snprintf(buf, sizeof buf, "%-13s iter %2u  sent %7llu dirtied %7llu remaining %7llu pages  %6.1f Mbit/s  "
                "saved %s  %s",
                p.value("phase", "").c_str(), p.value("iteration", 0u), (unsigned long long)sent,
                (unsigned long long)dirtied, (unsigned long long)remaining,
                p.value("rate_bytes_per_sec", 0.0) * 8 / 1e6, mb(p.value("bytes_saved", 0ull)).c_str(),
                eta >= 0 ? ("ETA " + std::to_string(int(eta + 0.5)) + " s").c_str() : "");
  return buf;
}

void print_report(const json& p) {
  std::printf("%s: %s -> %s: %s after %.1f s\n", p.value("vm", "").c_str(), p.value("from", "").c_str(),
              p.value("to", "").c_str(), p.value("phase", "").c_str(), p.value("elapsed_ms", 0.0) / 1000);
  if (!p.value("error", std::string()).empty()) std::printf("  reason: %s\n", p["error"].get<std::string>().c_str());
  if (!p.value("stop_reason", std::string()).empty())
    std::printf("  stop: %s\n", p["stop_reason"].get<std::string>().c_str());
  if (p.value("transport", std::string("tideway")) == "qemu") {
    std::printf("  transport qemu: QEMU's own stream over TCP, bytes as QEMU counts them (no codec)\n");
    if (const json x = p.value("xbzrle", json()); x.is_object())
      std::printf("  xbzrle: %llu pages as deltas in %s, %llu cache misses\n",
                  (unsigned long long)x.value("pages", 0ull), mb(x.value("bytes", 0ull)).c_str(),
                  (unsigned long long)x.value("cache_misses", 0ull));
  }
  std::printf("  iterations %zu, stream %s, on the wire %s (saved %s), downtime %.0f ms (QEMU), switchover %.0f ms\n",
              p.value("iterations", json::array()).size(), mb(p.value("stream_bytes", 0ull)).c_str(),
              mb(p.value("wire_bytes", 0ull)).c_str(), mb(p.value("bytes_saved", 0ull)).c_str(),
              p.value("downtime_ms", -1.0), p.value("switchover_ms", -1.0));
  const json c = p.value("codec", json::object());
  std::printf("  pages: %llu zero (in QEMU's stream), codec records: %llu raw, %llu CBR, %llu delta, %llu mixed, %llu zero\n",
              (unsigned long long)p.value("zero_pages", 0ull), (unsigned long long)c.value("raw", 0ull),
              (unsigned long long)c.value("cbr", 0ull), (unsigned long long)c.value("delta", 0ull),
              (unsigned long long)c.value("mixed", 0ull), (unsigned long long)c.value("zero", 0ull));
  if (const json d = p.value("disk", json()); d.is_object())
    std::printf("  disk: %s copy, %llu blocks (%s) in %zu passes, on the wire %s, copied after %.1f s, "
                "%llu writes mirrored\n",
                d.value("mode", "").c_str(), (unsigned long long)d.value("blocks_sent", 0ull),
                mb(d.value("bytes_sent", 0ull)).c_str(), d.value("passes", json::array()).size(),
                mb(d.value("wire_bytes", 0ull)).c_str(), d.value("copy_ms", -1.0) / 1000,
                (unsigned long long)d.value("mirrored_writes", 0ull));
  std::printf("  %4s %10s %10s %10s %12s %9s\n", "ITER", "SENT", "DIRTIED", "REMAINING", "WIRE", "END_S");
  for (const auto& i : p.value("iterations", json::array()))
    std::printf("  %4u %10llu %10llu %10llu %12s %9.1f\n", i.value("iteration", 0u),
                (unsigned long long)i.value("pages_sent", 0ull), (unsigned long long)i.value("pages_dirtied", 0ull),
                (unsigned long long)i.value("pages_remaining", 0ull), mb(i.value("wire_bytes", 0ull)).c_str(),
                i.value("end_ms", 0.0) / 1000);
}

// Pages sent and dirtied per iteration (the paper's Fig. 6.4b / 6.10), as
// SVG through gnuplot.
int write_plot(const json& p, const std::string& path) {
  if (p.value("iterations", json::array()).empty()) {
    std::cerr << "tideway: plot: no pre-copy iteration finished, nothing to plot (" << path << " not written)\n";
    return 0;
  }
  if (path.find('\'') != std::string::npos) {
    std::cerr << "tideway: plot: the path may not contain a single quote (gnuplot script): " << path << "\n";
    return 1;
  }
  const std::string data = path + ".dat";  // kept: the numbers behind the plot
  {
    std::ofstream out(data);
    out << "# iteration pages_sent pages_dirtied pages_remaining\n";
    for (const auto& i : p.value("iterations", json::array()))
      out << i.value("iteration", 0u) << " " << i.value("pages_sent", 0ull) << " " << i.value("pages_dirtied", 0ull)
          << " " << i.value("pages_remaining", 0ull) << "\n";
    if (!out.flush()) {
      std::cerr << "tideway: cannot write " << data << "\n";
      return 1;
    }
  }
  const std::string script =
      "set terminal svg size 720,420 dynamic; set output '" + path + "'; set title 'migrate " +
      p.value("vm", std::string()) + ": pages per iteration'; set xlabel 'iteration'; set ylabel 'pages'; "
      "set key top right; set grid; plot '" + data + "' using 1:2 with linespoints title 'sent', '" + data +
      "' using 1:3 with linespoints title 'dirtied'";
  std::vector<std::string> argv = {"gnuplot", "-e", script};
  auto r = run_command(argv);
  if (!r.exited(0)) {
    std::cerr << "tideway: plot: " << r.describe(argv) << " (is gnuplot installed?)\n";
    return 1;
  }
  return 0;
}

int follow(const MigrateCli& cli, const std::string& socket, bool as_json, int timeout_s) {
  std::signal(SIGINT, on_sigint);
  const bool tty = ::isatty(STDERR_FILENO);
  bool cancel_sent = false;
  json last;
  for (;;) {
    if (g_interrupted && !cancel_sent) {
      cancel_sent = true;
      std::fprintf(stderr, "\ntideway: cancelling (the VM keeps running at the source)...\n");
      ask(socket, {{"cmd", "migrate-cancel"}, {"vm", cli.name}, {"reason", "cancelled by the operator (Ctrl-C)"}},
          timeout_s);
    }
    auto r = ask(socket, {{"cmd", "migrate-status"}, {"vm", cli.name}}, timeout_s);
    if (!r || !r->value("ok", false)) return r ? 1 : 3;
    last = *r;
    if (last.value("finished", false)) break;
    if (!as_json) std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", progress_line(last).c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 250 : 1000));
  }
  if (!as_json && tty) std::fprintf(stderr, "\n");
  last.erase("ok");
  if (!cli.report.empty()) {
    std::ofstream out(cli.report);
    out << last.dump(2) << "\n";
    if (!out.flush()) std::cerr << "tideway: cannot write " << cli.report << "\n";
  }
  int rc = 0;
  if (!cli.plot.empty()) rc = write_plot(last, cli.plot);
  if (as_json) std::cout << last.dump(2) << "\n";
  else print_report(last);
  const std::string phase = last.value("phase", "");
  if (phase == "done") return rc;
  return phase == "unconfirmed" ? 4 : 1;
}

}  // namespace

std::optional<uint64_t> parse_rate(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  const std::string suf = end;
  double mul = suf.empty() ? 1 : (suf == "K" || suf == "k") ? 1e3 : (suf == "M" || suf == "m") ? 1e6 : (suf == "G" || suf == "g") ? 1e9 : 0;
  if (!(v > 0) || mul == 0) return std::nullopt;
  const double bytes = v * mul / 8;
  if (bytes < 1 || bytes > 1e12) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

std::unique_ptr<MigrateCli> add_migrate_commands(CLI::App& app) {
  auto c = std::make_unique<MigrateCli>();
  c->vm = app.add_subcommand("vm", "QEMU VMs run by this site's agent (start from a TOML description, stop, list)");
  c->vm->require_subcommand(1);
  c->vm_start = c->vm->add_subcommand("start", "start a VM from its TOML description (docs/qemu-driver.md)");
  c->vm_start->add_option("spec", c->spec_file, "the VM's TOML file (absolute path, read by the agent)")->required();
  c->vm_stop = c->vm->add_subcommand("stop", "end a VM (QMP quit, then SIGTERM, then SIGKILL)");
  c->vm_stop->add_option("name", c->name, "VM name")->required();
  c->vm_resume = c->vm->add_subcommand(
      "resume", "resume a paused VM here, e.g. after a migration whose switchover was not confirmed -- only once "
                "you know it does not run at the other site");
  c->vm_resume->add_option("name", c->name, "VM name")->required();
  c->vm_dump = c->vm->add_subcommand("dump", "write the VM's RAM to a file (QMP pmemsave; pause it first for a "
                                              "consistent image)");
  c->vm_dump->add_option("name", c->name, "VM name")->required();
  c->vm_dump->add_option("file", c->dump_file, "absolute path, written by QEMU at the agent's host")->required();
  c->vm_list = c->vm->add_subcommand("list", "VMs at this site, their state and last migration");

  c->migrate = app.add_subcommand(
      "migrate",
      "live-migrate a running VM to another site: iterative pre-copy of its memory through the WAN codec "
      "(CBR cache, page deltas, zstd), smart stop, then the switchover (the VM never runs at both sites). "
      "Shows progress; Ctrl-C cancels (the VM keeps running here). Exit code 0 done, 1 rolled back, 4 "
      "switchover unconfirmed (the VM stays paused here: check the destination)");
  c->migrate->add_option("vm", c->name, "VM name")->required();
  c->migrate->add_option("--to", c->to, "destination site (a [sites.NAME] of the agent's config)")->required();
  c->migrate->add_option("--rate", c->rate, "cap the migration's WAN rate, bits/s with K/M/G (e.g. 100M)");
  c->migrate->add_flag("--no-cbr", c->no_cbr, "no content-based redundancy cache");
  c->migrate->add_flag("--no-delta", c->no_delta, "no page deltas");
  c->migrate->add_flag("--no-zstd", c->no_zstd, "no zstd on pages");
  c->migrate->add_flag("--no-smart-stop", c->no_smart_stop, "QEMU's own stop rule (downtime-limit 300 ms)");
  c->migrate->add_option("--transport", c->transport,
                         "how the memory travels: tideway (QEMU's stream through both agents, the WAN codec and "
                         "the channel) or qemu (QEMU's own migration straight over TCP to the destination's QEMU, "
                         "no codec, --rate becomes QEMU's max-bandwidth: the baseline to compare against; the "
                         "switchover handshake, pools and disks stay the agents')")
      ->check(CLI::IsMember({"tideway", "qemu"}))
      ->capture_default_str();
  c->migrate->add_flag("--xbzrle", c->xbzrle, "QEMU's XBZRLE page deltas (with --transport qemu, for comparison)");
  c->migrate->add_flag("--paused", c->paused, "the VM arrives paused at the destination (`tideway vm resume` there)");
  c->migrate->add_flag("--keep-source", c->keep_source,
                       "keep the source's paused copy after the switchover (until `tideway vm stop`)");
  c->migrate->add_option("--max-iterations", c->max_iterations, "hard cap on pre-copy iterations")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  c->migrate->add_option("--max-time", c->max_time_s, "hard cap on the pre-copy, seconds")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  c->migrate->add_option("--wan-timeout", c->wan_timeout_s,
                         "roll back when the WAN to the destination is down this long before the switchover, s")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  c->migrate->add_option("--switchover-timeout", c->switchover_timeout_s,
                         "the VM paused here and the destination silent this long: roll back (before COMMIT) or "
                         "report unconfirmed (after), s")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  c->migrate->add_option("--report", c->report, "write the final report (JSON) to this file");
  c->migrate->add_option("--plot", c->plot, "write an SVG plot of pages sent and dirtied per iteration (gnuplot)");
  c->migrate->add_flag("--detach", c->detach, "start it and return; follow with `tideway migrate-status VM`");
  c->cancel = app.add_subcommand("migrate-cancel", "cancel a migration (before the switchover; the VM runs on here)");
  c->cancel->add_option("vm", c->name, "VM name")->required();
  c->status = app.add_subcommand("migrate-status", "progress or last report of a VM's migration");
  c->status->add_option("vm", c->name, "VM name")->required();
  return c;
}

std::optional<int> run_migrate_commands(const MigrateCli& c, const std::string& socket, bool as_json, int timeout_s) {
  auto simple = [&](const json& req, auto print) -> int {
    auto r = ask(socket, req, timeout_s, as_json);
    if (!r) return 3;
    if (as_json) std::cout << r->dump(2) << "\n";
    else if (r->value("ok", false)) print(*r);
    return r->value("ok", false) ? 0 : 1;
  };
  if (*c.vm_start) {
    return simple({{"cmd", "vm-start"}, {"spec_file", c.spec_file}}, [](const json& j) {
      std::printf("%s: %s (pid %d)\n", j.value("name", "").c_str(), j.value("state", "").c_str(), j.value("pid", 0));
    });
  }
  if (*c.vm_stop)
    return simple({{"cmd", "vm-stop"}, {"vm", c.name}}, [](const json& j) {
      std::printf("%s: %s\n", j.value("vm", "").c_str(), j.value("state", "").c_str());
    });
  if (*c.vm_resume)
    return simple({{"cmd", "vm-resume"}, {"vm", c.name}}, [](const json& j) {
      std::printf("%s: %s\n", j.value("vm", "").c_str(), j.value("state", "").c_str());
    });
  if (*c.vm_dump)
    return simple({{"cmd", "vm-dump"}, {"vm", c.name}, {"file", c.dump_file}}, [](const json& j) {
      std::printf("%s: %llu bytes of RAM in %s\n", j.value("vm", "").c_str(), (unsigned long long)j.value("bytes", 0ull),
                  j.value("file", "").c_str());
    });
  if (*c.vm_list)
    return simple({{"cmd", "vm-list"}}, [](const json& j) {
      std::printf("site %s\n%-16s %-10s %8s  %s\n", j.value("site", "").c_str(), "NAME", "MEMORY", "PID", "STATE");
      for (const auto& v : j.value("vms", json::array()))
        std::printf("%-16s %8.0fM %8d  %s\n", v.value("name", "").c_str(), v.value("memory_bytes", 0ull) / 1048576.0,
                    v.value("pid", 0), v.value("state", "").c_str());
    });
  if (*c.cancel)
    return simple({{"cmd", "migrate-cancel"}, {"vm", c.name}}, [](const json& j) {
      std::printf("%s: %s%s\n", j.value("vm", "").c_str(), j.value("phase", "").c_str(),
                  j.value("error", std::string()).empty() ? "" : (": " + j.value("error", std::string())).c_str());
    });
  if (*c.status) {
    return simple({{"cmd", "migrate-status"}, {"vm", c.name}}, [](const json& j) {
      if (j.value("finished", false)) print_report(j);
      else std::printf("%s\n", progress_line(j).c_str());
    });
  }
  if (!*c.migrate) return std::nullopt;
  json req{{"cmd", "migrate"},         {"vm", c.name},
           {"to", c.to},               {"cbr", !c.no_cbr},
           {"delta", !c.no_delta},     {"zstd", !c.no_zstd},
           {"smart_stop", !c.no_smart_stop}, {"max_iterations", c.max_iterations},
           {"max_time_s", c.max_time_s}, {"paused", c.paused},
           {"keep_source", c.keep_source}, {"wan_timeout_s", c.wan_timeout_s},
           {"switchover_timeout_s", c.switchover_timeout_s},
           {"transport", c.transport},     {"xbzrle", c.xbzrle}};
  if (c.xbzrle && c.transport != "qemu") {
    std::cerr << "tideway: --xbzrle is QEMU's own page-delta encoding: use it with --transport qemu (Tideway's "
                 "page deltas are on by default)\n";
    return 2;
  }
  if (!c.rate.empty()) {
    auto r = parse_rate(c.rate);
    if (!r) {
      std::cerr << "tideway: --rate \"" << c.rate << "\": expected bits per second, e.g. 100M or 1G\n";
      return 2;
    }
    req["rate_bytes_per_sec"] = *r;
  }
  auto r = ask(socket, req, timeout_s, as_json);
  if (!r) return 3;
  if (!r->value("ok", false)) {
    if (as_json) std::cout << r->dump(2) << "\n";
    return 1;
  }
  if (c.detach) {
    if (as_json) std::cout << r->dump(2) << "\n";
    else std::printf("migrating %s to %s (follow: tideway migrate-status %s)\n", c.name.c_str(), c.to.c_str(),
                     c.name.c_str());
    return 0;
  }
  return follow(c, socket, as_json, timeout_s);
}

}  // namespace tideway::agent

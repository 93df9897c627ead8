// tideway-wanem: a WAN link between two network namespaces, in user space.
// See `tideway-wanem --help` and docs/lab.md.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "wan/wanem/control_server.h"
#include "wan/wanem/emulator.h"

namespace tw = tideway::wanem;

namespace {

constexpr const char* kDescription =
    "tideway-wanem: emulate a WAN link between two network namespaces.\n\n"
    "It opens a TUN device in each namespace (creating it, or attaching to a\n"
    "persistent one made by `ip tuntap add`) and forwards every IP packet\n"
    "between them through a model of a remote bottleneck router and a long\n"
    "wire, per direction:\n"
    "  tail-drop queue (--queue-kb) -> serialisation at --rate-mbit\n"
    "  -> one-way --delay-ms (+- --jitter-ms, never reordering) -> far side\n"
    "with random --loss, and a partition switch (cut the link) that can be\n"
    "flipped while running. Addresses and routes are not its business: give\n"
    "the TUN devices addresses with `ip` (deploy/lab.sh does all of it).\n";

constexpr const char* kRunFooter =
    "\nEXAMPLES\n"
    "  ip netns add x; ip netns add y\n"
    "  tideway-wanem run --ns-a x --ns-b y --delay-ms 25 --rate-mbit 100 \\\n"
    "      --control /run/wanem.sock &\n"
    "  ip -n x addr add 10.250.0.1/30 dev wan0; ip -n y addr add 10.250.0.2/30 dev wan0\n"
    "  ip netns exec x ping 10.250.0.2          # RTT ~50 ms\n"
    "  tideway-wanem ctl --control /run/wanem.sock partition on\n"
    "  kill -USR1 $(pidof tideway-wanem)        # toggles the partition too\n\n"
    "NOTES\n"
    "  Rates count IP bytes (no link-layer overhead); TCP goodput is ~96% of it.\n"
    "  The default queue is one bandwidth-delay product of the RTT (2 x delay),\n"
    "  at least 2 ms at the rate and at least 64 KiB. Loss is drawn per packet from a seeded generator; the\n"
    "  seed is printed at start so a run can be repeated with --seed.\n"
    "  --offload auto forwards TCP segmentation-offload super-packets whole\n"
    "  (cheap at 1 Gbit/s) but makes the kernel segment them when loss > 0, so\n"
    "  loss hits single packets. Stop with SIGTERM or SIGINT.\n";

constexpr const char* kCtlFooter =
    "\nCOMMANDS (one reply line each; exit status 1 if it starts with \"error\")\n"
    "  partition on|off|toggle [ab|ba]   cut or restore both directions, or one\n"
    "  set delay_ms=25 jitter_ms=1 rate_mbit=100 loss=0.01 queue_kb=512\n"
    "                                    any subset; prefix a key with ab. or ba.\n"
    "                                    for one direction; rate_mbit=0 = unlimited\n"
    "  stats                             JSON counters per direction\n"
    "  config                            JSON of the current settings\n"
    "  reset-stats | help\n"
    "  (a_to_b = packets sent by namespace A to namespace B)\n";

struct RunArgs {
  std::string ns_a, ns_b, dev_a = "wan0", dev_b = "wan0";
  double delay_ms = 25, jitter_ms = 0, rate_mbit = 100, queue_kb = 0;
  std::string loss = "0";
  std::string control, pidfile;
  uint64_t seed = 0;
  int threads = 1;
  std::string offload = "auto";
  int rt_priority = 10;
  size_t max_packets = 100'000;
  uint64_t max_inflight_mb = 256;
};

int run(const RunArgs& a, bool seed_given) {
  tw::EmulatorOptions o;
  o.netns = {a.ns_a, a.ns_b};
  o.dev = {a.dev_a, a.dev_b};
  tw::LinkParams p;
  p.delay = tw::Nanos{static_cast<int64_t>(a.delay_ms * 1e6)};
  p.jitter = tw::Nanos{static_cast<int64_t>(a.jitter_ms * 1e6)};
  p.rate_bps = static_cast<uint64_t>(a.rate_mbit * 1e6);
  p.queue_bytes = static_cast<uint64_t>(a.queue_kb * 1024);
  if (auto err = tw::parse_setting_value("loss", a.loss, p.loss); !err.empty()) {
    std::fprintf(stderr, "tideway-wanem: --loss: %s\n", err.c_str());
    return 2;
  }
  if (auto err = p.validate(); !err.empty()) {
    std::fprintf(stderr, "tideway-wanem: bad link settings: %s\n", err.c_str());
    return 2;
  }
  o.params = {p, p};
  o.seed = seed_given ? a.seed : std::random_device{}();
  o.threads = a.threads;
  o.offload = a.offload == "on" ? tw::OffloadMode::kOn
              : a.offload == "off" ? tw::OffloadMode::kOff
                                   : tw::OffloadMode::kAuto;
  o.rt_priority = a.rt_priority;
  o.limits.max_packets = a.max_packets;
  o.limits.max_bytes = a.max_inflight_mb << 20;

  tw::block_control_signals();
  try {
    tw::Emulator emu(o);
    tw::ControlServer server(a.control, [&emu](std::string_view line) { return emu.handle(line); },
                             [&emu] { emu.toggle_partition(); });
    emu.start();
    if (!a.pidfile.empty()) {
      std::ofstream(a.pidfile) << ::getpid() << "\n";
    }
    std::fprintf(stderr, "tideway-wanem: ready pid=%d %s control=%s\n", static_cast<int>(::getpid()),
                 emu.describe().c_str(), a.control.empty() ? "(none)" : a.control.c_str());
    std::fflush(stderr);
    const int sig = server.run();
    std::fprintf(stderr, "tideway-wanem: stopping on signal %d; final stats %s\n", sig,
                 emu.handle("stats").c_str());
    emu.stop();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tideway-wanem: %s\n", e.what());
    if (!a.pidfile.empty()) ::unlink(a.pidfile.c_str());
    return 1;
  }
  if (!a.pidfile.empty()) ::unlink(a.pidfile.c_str());
  return 0;
}

int ctl(const std::string& socket, const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
  try {
    const std::string reply = tw::control_request(socket, line);
    std::printf("%s\n", reply.c_str());
    return reply.starts_with("error") ? 1 : 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tideway-wanem ctl: %s\n", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{kDescription, "tideway-wanem"};
  app.require_subcommand(1);
  app.footer("Run `tideway-wanem run --help` or `tideway-wanem ctl --help` for details.");

  RunArgs a;
  auto* run_cmd = app.add_subcommand("run", "Forward packets between two namespaces (foreground).");
  run_cmd->footer(kRunFooter);
  run_cmd->add_option("--ns-a", a.ns_a, "Namespace of side A (name under /run/netns, or a path)")->required();
  run_cmd->add_option("--ns-b", a.ns_b, "Namespace of side B")->required();
  run_cmd->add_option("--dev-a", a.dev_a, "TUN device name in A")->capture_default_str();
  run_cmd->add_option("--dev-b", a.dev_b, "TUN device name in B")->capture_default_str();
  run_cmd->add_option("--delay-ms", a.delay_ms, "One-way delay, each direction (ms)")
      ->capture_default_str()->check(CLI::Range(0.0, 10000.0));
  run_cmd->add_option("--jitter-ms", a.jitter_ms, "Uniform +- jitter on the delay (ms), <= delay")
      ->capture_default_str()->check(CLI::Range(0.0, 10000.0));
  run_cmd->add_option("--rate-mbit", a.rate_mbit, "Bottleneck rate per direction (Mbit/s), 0 = unlimited")
      ->capture_default_str()->check(CLI::Range(0.0, 400000.0));
  run_cmd->add_option("--loss", a.loss, "Random loss per packet: fraction (0.01) or percent (1%)")
      ->capture_default_str();
  run_cmd->add_option("--queue-kb", a.queue_kb, "Bottleneck queue cap (KiB), tail drop; 0 = one BDP (min 2 ms, 64 KiB)")
      ->capture_default_str()->check(CLI::Range(0.0, 4194304.0));
  auto* seed_opt = run_cmd->add_option("--seed", a.seed, "Seed for loss and jitter (default: random, printed)");
  run_cmd->add_option("--control", a.control, "Unix socket for control commands (see `ctl --help`)");
  run_cmd->add_option("--pidfile", a.pidfile, "Write the pid here once ready; removed at exit");
  run_cmd->add_option("--threads", a.threads, "1 = one thread for both directions (cheaper on small machines), 2 = one each")
      ->capture_default_str()->check(CLI::IsMember({1, 2}));
  run_cmd->add_option("--offload", a.offload,
                      "TUN offloads: auto (TSO unless loss > 0), on (always TSO), off (no vnet header)")
      ->capture_default_str()->check(CLI::IsMember({"auto", "on", "off"}));
  run_cmd->add_option("--rt-priority", a.rt_priority,
                      "SCHED_FIFO priority of the forwarding threads (keeps the delay exact on a "
                      "busy machine); 0 = normal scheduling")
      ->capture_default_str()->check(CLI::Range(0, 99));
  run_cmd->add_option("--max-packets", a.max_packets, "Hard cap on packets held per direction")
      ->capture_default_str()->check(CLI::Range(size_t{16}, size_t{10'000'000}));
  run_cmd->add_option("--max-inflight-mb", a.max_inflight_mb, "Hard cap on bytes held per direction (MiB)")
      ->capture_default_str()->check(CLI::Range(uint64_t{1}, uint64_t{16384}));

  std::string socket;
  std::vector<std::string> words;
  auto* ctl_cmd = app.add_subcommand("ctl", "Send one command to a running emulator and print the reply.");
  ctl_cmd->footer(kCtlFooter);
  ctl_cmd->add_option("--control", socket, "The emulator's control socket")->required();
  ctl_cmd->add_option("command", words, "Command words, e.g.: set delay_ms=10")->required();

  CLI11_PARSE(app, argc, argv);
  if (*run_cmd) return run(a, seed_opt->count() > 0);
  return ctl(socket, words);
}

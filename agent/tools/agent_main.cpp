// tideway-agent: the host daemon at a protected site.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "wan/control_socket.h"

using namespace tideway;

int main(int argc, char** argv) {
  CLI::App app{
      "tideway-agent: the host daemon of a protected site. Taps the disks of protected VMs (NBD) and\n"
      "containers (FUSE), ships every write to the backup site, and holds client-bound packets until the\n"
      "backup has durably acknowledged the writes before them. Driven by `tideway protect|unprotect|status`."};
  std::string config_path = "/etc/tideway/agent.toml", level = "info";
  app.add_option("-c,--config", config_path, "TOML configuration (see docs/protect.md)")->capture_default_str();
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(level));

  auto cfg = agent::load_agent_config(config_path);
  if (!cfg) {
    spdlog::error("{}", cfg.error().detail);
    return 2;
  }
  boost::asio::io_context io;
  auto a = agent::Agent::create(io, cfg.value());
  if (!a) {
    spdlog::error("cannot start: {}", a.error().detail);
    return 1;
  }
  auto& ag = *a.value();
  auto ctl = wan::ControlServer::create(io, cfg->control_socket,
                                        [&ag](const nlohmann::json& req, auto reply) { ag.handle(req, reply); });
  if (!ctl) {
    spdlog::error("cannot start: {}", ctl.error().detail);
    return 1;
  }
  spdlog::info("agent \"{}\" running, control socket {}", cfg->site, cfg->control_socket);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int sig) {
    spdlog::info("signal {}: stopping (protections resume at the next start)", sig);
    ctl.value()->stop();
    ag.stop();
    io.stop();
  });
  io.run();
  return 0;
}

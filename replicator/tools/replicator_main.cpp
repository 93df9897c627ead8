// tideway-replicator: the backup-site daemon.
#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include "replicator/replicator.h"
#include "replicator/replicator_config.h"
#include "wan/control_socket.h"

using namespace tideway;

int main(int argc, char** argv) {
  CLI::App app{
      "tideway-replicator: the backup-site daemon. Accepts protected volumes from tideway-agent over the WAN\n"
      "channel, journals every write durably before acknowledging it, applies the journal to the backup\n"
      "volumes, and promotes a volume at failover (`tideway promote`)."};
  std::string config_path = "/etc/tideway/replicator.toml", level = "info";
  app.add_option("-c,--config", config_path, "TOML configuration (see docs/protect.md)")->capture_default_str();
  app.add_option("--log-level", level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::from_str(level));

  auto cfg = replicator::load_replicator_config(config_path);
  if (!cfg) {
    spdlog::error("{}", cfg.error().detail);
    return 2;
  }
  boost::asio::io_context io;
  auto r = replicator::Replicator::open(io, cfg->options);
  if (!r) {
    spdlog::error("cannot start: {}", r.error().detail);
    return 1;
  }
  auto& rep = *r.value();
  auto ctl = wan::ControlServer::create(io, cfg->control_socket, [&rep](const nlohmann::json& req, auto reply) {
    const std::string cmd = req.at("cmd").get<std::string>();
    if (cmd == "status") {
      nlohmann::json j = rep.status();
      j["ok"] = true;
      reply(j);
    } else if (cmd == "promote") {
      rep.promote(req.value("name", ""), reply);
    } else {
      reply({{"ok", false}, {"error", "unknown command \"" + cmd + "\" (status, promote)"}});
    }
  });
  if (!ctl) {
    spdlog::error("cannot start: {}", ctl.error().detail);
    return 1;
  }
  rep.start();
  spdlog::info("replicator \"{}\" listening on port {}, data in {}, control {}", cfg->options.channel.site,
               rep.port(), cfg->options.data_dir, cfg->control_socket);
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int sig) {
    spdlog::info("signal {}: stopping", sig);
    ctl.value()->stop();
    rep.stop();
    io.stop();
  });
  io.run();
  return 0;
}

// tideway-probe: measures a Tideway channel between two sites the way the
// product uses it: bulk throughput on a bulk-class stream, and the queueing
// delay of small control-class messages (acks) while the bulk saturates.
//
//   tideway-probe serve --listen 0.0.0.0:7400 --ca CA --cert C --key K
//   tideway-probe run --connect HOST:7400 --ca CA --cert C --key K --seconds 10
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstring>
#include <iostream>

#include "wan/channel.h"

using namespace tideway;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

constexpr uint32_t kEchoStream = 1;    // control class: probe out, echo back
constexpr uint32_t kBulkStream = 3;    // bulk class
constexpr uint32_t kReportStream = 4;  // control class: receiver's byte counts

wan::ChannelOptions stream_layout(wan::ChannelOptions o) {
  o.streams = {{kEchoStream, wan::Priority::kControl},
               {kBulkStream, wan::Priority::kBulk},
               {kReportStream, wan::Priority::kControl}};
  return o;
}

std::pair<std::string, uint16_t> split_host_port(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) throw CLI::ValidationError("address", "expected HOST:PORT, got '" + s + "'");
  const int port = std::stoi(s.substr(colon + 1));
  if (port <= 0 || port > 65535) throw CLI::ValidationError("address", "port out of range in '" + s + "'");
  return {s.substr(0, colon), static_cast<uint16_t>(port)};
}

int64_t now_ns() { return wan::system_clock().now().count(); }

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};
Percentiles percentiles(std::vector<double> v) {
  Percentiles p;
  p.n = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  p.p50 = v[v.size() / 2];
  p.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
  p.max = v.back();
  return p;
}

int serve(wan::ChannelOptions opts, const std::string& listen) {
  asio::io_context io;
  auto [host, port] = split_host_port(listen);
  auto server = wan::ChannelServer::create(io, stream_layout(opts),
                                           asio::ip::tcp::endpoint(asio::ip::make_address(host), port));
  server->on_session([&io](const std::shared_ptr<wan::Session>& s) {
    wan::Session* raw = s.get();
    auto bytes = std::make_shared<uint64_t>(0);
    raw->on_message(kEchoStream, [raw](proto::MessageType t, std::span<const uint8_t> p) {
      raw->send(kEchoStream, t, p);
    });
    raw->on_message(kBulkStream, [bytes](proto::MessageType, std::span<const uint8_t> p) { *bytes += p.size(); });
    // Report the byte count every 100 ms while the session lives.
    auto timer = std::make_shared<asio::steady_timer>(io);
    auto tick = std::make_shared<std::function<void()>>();
    std::weak_ptr<wan::Session> weak = s;
    *tick = [timer, tick, bytes, weak] {
      auto sp = weak.lock();
      if (!sp || sp->state() == wan::SessionState::kClosed) return;
      uint8_t m[16];
      const int64_t t = now_ns();
      std::memcpy(m, &t, 8);
      std::memcpy(m + 8, bytes.get(), 8);
      sp->send(kReportStream, proto::MessageType::kProbe, m);
      timer->expires_after(100ms);
      timer->async_wait([tick](const boost::system::error_code& ec) {
        if (!ec) (*tick)();
      });
    };
    (*tick)();
  });
  server->start();
  std::cout << "tideway-probe: listening on " << listen << (opts.tls.plaintext_for_tests ? " (PLAINTEXT)" : " (TLS 1.3)")
            << std::endl;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    server->stop();
    io.stop();
  });
  io.run();
  return 0;
}

int run(wan::ChannelOptions opts, const std::string& connect, double seconds, size_t bulk_kib, bool json) {
  asio::io_context io;
  auto [host, port] = split_host_port(connect);
  auto client = wan::ChannelClient::create(io, stream_layout(opts), host, port);
  auto session = client->session();

  std::vector<double> idle_rtt, loaded_rtt;
  bool loaded = false, done = false;
  uint64_t bytes_at_start = 0, bytes_now = 0;
  int64_t t_start = 0, t_now = 0;
  session->on_message(kEchoStream, [&](proto::MessageType, std::span<const uint8_t> p) {
    if (p.size() < 8) return;
    int64_t sent = 0;
    std::memcpy(&sent, p.data(), 8);
    (loaded ? loaded_rtt : idle_rtt).push_back(static_cast<double>(now_ns() - sent) / 1e6);
  });
  session->on_message(kReportStream, [&](proto::MessageType, std::span<const uint8_t> p) {
    if (p.size() != 16) return;
    std::memcpy(&t_now, p.data(), 8);
    std::memcpy(&bytes_now, p.data() + 8, 8);
  });

  const std::vector<uint8_t> chunk(bulk_kib * 1024, 0x6b);
  std::function<void()> pump = [&] {
    while (loaded && !done && session->send(kBulkStream, proto::MessageType::kProbe, chunk)) {
    }
  };
  session->on_writable(kBulkStream, pump);

  asio::steady_timer probe_timer(io), phase_timer(io);
  std::function<void()> probe = [&] {
    if (done) return;
    uint8_t m[8];
    const int64_t t = now_ns();
    std::memcpy(m, &t, 8);
    session->send(kEchoStream, proto::MessageType::kProbe, m);
    probe_timer.expires_after(10ms);
    probe_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) probe();
    });
  };

  client->start();
  // Phase 1 (2 s): idle RTT. Phase 2: bulk, with 1 s of warm-up dropped.
  asio::steady_timer connect_wait(io);
  std::function<void()> wait_connected = [&] {
    if (session->state() != wan::SessionState::kConnected) {
      connect_wait.expires_after(10ms);
      connect_wait.async_wait([&](const boost::system::error_code& ec) {
        if (!ec) wait_connected();
      });
      return;
    }
    if (!json) std::cerr << "connected to " << session->peer_site() << "; measuring idle RTT..." << std::endl;
    probe();
    phase_timer.expires_after(2s);
    phase_timer.async_wait([&](const boost::system::error_code&) {
      loaded = true;
      pump();
      if (!json) std::cerr << "bulk transfer for " << seconds << " s..." << std::endl;
      phase_timer.expires_after(1s);
      phase_timer.async_wait([&](const boost::system::error_code&) {
        loaded_rtt.clear();
        bytes_at_start = bytes_now;
        t_start = t_now;
        phase_timer.expires_after(std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::duration<double>(seconds)));
        phase_timer.async_wait([&](const boost::system::error_code&) {
          done = true;
          probe_timer.cancel();
          client->stop();
          io.stop();
        });
      });
    });
  };
  asio::steady_timer give_up(io);
  give_up.expires_after(15s);
  give_up.async_wait([&](const boost::system::error_code& ec) {
    if (!ec && session->state() != wan::SessionState::kConnected && !loaded) {
      std::cerr << "tideway-probe: could not connect to " << connect << ": " << session->stats().last_error
                << std::endl;
      io.stop();
    }
  });
  wait_connected();
  io.run();
  if (!loaded) return 2;

  const double secs = static_cast<double>(t_now - t_start) / 1e9;
  const double mbit = secs > 0 ? static_cast<double>(bytes_now - bytes_at_start) * 8 / secs / 1e6 : 0;
  const auto idle = percentiles(idle_rtt), busy = percentiles(loaded_rtt);
  const auto st = session->stats();
  nlohmann::json j = {
      {"peer", connect},
      {"tls", !opts.tls.plaintext_for_tests},
      {"link_rate_mbit", static_cast<double>(opts.link_rate_bytes_per_sec) * 8 / 1e6},
      {"seconds", secs},
      {"bulk_goodput_mbit", mbit},
      {"idle_rtt_ms", {{"p50", idle.p50}, {"p99", idle.p99}, {"n", idle.n}}},
      {"loaded_rtt_ms", {{"p50", busy.p50}, {"p99", busy.p99}, {"max", busy.max}, {"n", busy.n}}},
      {"ack_queueing_ms", {{"p50", busy.p50 - idle.p50}, {"p99", busy.p99 - idle.p50}}},
      {"frames_sent", st.frames_sent},
      {"links", st.links},
  };
  if (json) {
    std::cout << j.dump() << std::endl;
  } else {
    std::printf("bulk goodput      %10.1f Mbit/s over %.1f s\n", mbit, secs);
    std::printf("idle RTT          p50 %7.2f ms  p99 %7.2f ms\n", idle.p50, idle.p99);
    std::printf("RTT under bulk    p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n", busy.p50, busy.p99, busy.max);
    std::printf("ack queueing      p50 %7.2f ms  p99 %7.2f ms  (RTT under bulk - idle p50)\n",
                busy.p50 - idle.p50, busy.p99 - idle.p50);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "tideway-probe: measure a Tideway WAN channel between two sites.\n"
      "Run 'serve' at one site and 'run' at the other. 'run' measures the idle RTT of\n"
      "control-class messages for 2 s, then saturates a bulk-class stream and reports\n"
      "bulk goodput and how much the control messages (acks) were delayed by it."};
  app.require_subcommand(1);
  wan::ChannelOptions opts;
  std::string ca, cert, key;
  bool plaintext = false;
  double rate_mbit = 0;
  std::string level = "warn";
  auto add_common = [&](CLI::App* c) {
    c->add_option("--ca", ca, "CA certificate (PEM) that signs every site")->check(CLI::ExistingFile);
    c->add_option("--cert", cert, "this site's certificate (PEM)")->check(CLI::ExistingFile);
    c->add_option("--key", key, "this site's private key (PEM)")->check(CLI::ExistingFile);
    c->add_flag("--plaintext-for-tests", plaintext, "no TLS (tests and benchmarks only)");
    c->add_option("--site", opts.site, "this site's name")->default_val("probe");
    c->add_option("--log-level", level, "trace|debug|info|warn|error")->default_val("warn");
  };
  std::string listen = "127.0.0.1:7400", connect;
  auto* serve_cmd = app.add_subcommand("serve", "accept probe sessions and echo/count");
  add_common(serve_cmd);
  serve_cmd->add_option("--listen", listen, "address:port to listen on")->default_val("127.0.0.1:7400");
  double seconds = 10;
  size_t bulk_kib = 64;
  bool json = false;
  auto* run_cmd = app.add_subcommand("run", "connect to a serving probe and measure");
  add_common(run_cmd);
  run_cmd->add_option("--connect", connect, "HOST:PORT of 'tideway-probe serve'")->required();
  run_cmd->add_option("--seconds", seconds, "measurement length")->default_val(10)->check(CLI::Range(1.0, 3600.0));
  run_cmd->add_option("--rate-mbit", rate_mbit, "channel link rate limit in Mbit/s (0 = none)")
      ->default_val(0)
      ->check(CLI::Range(0.0, 100000.0));
  run_cmd->add_option("--bulk-kib", bulk_kib, "bulk message size in KiB")->default_val(64)->check(CLI::Range(1, 1024));
  run_cmd->add_flag("--json", json, "print one JSON object instead of a table");
  CLI11_PARSE(app, argc, argv);

  // Logs go to stderr: stdout carries the report (and --json).
  spdlog::set_default_logger(spdlog::stderr_color_mt("tideway"));
  spdlog::set_level(spdlog::level::from_str(level));
  opts.tls.plaintext_for_tests = plaintext;
  opts.tls.ca_file = ca;
  opts.tls.cert_file = cert;
  opts.tls.key_file = key;
  opts.link_rate_bytes_per_sec = static_cast<uint64_t>(rate_mbit * 1e6 / 8);
  if (!plaintext && (ca.empty() || cert.empty() || key.empty())) {
    std::cerr << "tideway-probe: TLS needs --ca, --cert and --key (or --plaintext-for-tests)\n";
    return 2;
  }
  try {
    if (serve_cmd->parsed()) return serve(opts, listen);
    return run(opts, connect, seconds, bulk_kib, json);
  } catch (const std::exception& e) {
    std::cerr << "tideway-probe: " << e.what() << std::endl;
    return 1;
  }
}

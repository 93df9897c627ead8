// The control socket's line protocol: parsing, validation, atomic apply.
#include "wan/wanem/control_protocol.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "wan/wanem/stats.h"

namespace tideway::wanem {
namespace {

template <class T>
const T& as(const Command& c) {
  EXPECT_TRUE(std::holds_alternative<T>(c)) << "got variant index " << c.index()
                                            << (std::holds_alternative<ParseError>(c)
                                                    ? ": " + std::get<ParseError>(c).message
                                                    : std::string());
  static const T empty{};
  return std::holds_alternative<T>(c) ? std::get<T>(c) : empty;
}

std::string error_of(std::string_view line) {
  const Command c = parse_command(line);
  return std::holds_alternative<ParseError>(c) ? std::get<ParseError>(c).message : "";
}

TEST(ControlProtocol, Partition) {
  auto p = as<PartitionCmd>(parse_command("partition on"));
  EXPECT_EQ(p.mode, PartitionMode::kOn);
  EXPECT_EQ(p.dirs, kMaskBoth);
  p = as<PartitionCmd>(parse_command("  partition off ba \r\n"));
  EXPECT_EQ(p.mode, PartitionMode::kOff);
  EXPECT_EQ(p.dirs, kMaskBA);
  EXPECT_EQ(as<PartitionCmd>(parse_command("partition toggle ab")).dirs, kMaskAB);
  EXPECT_NE(error_of("partition"), "");
  EXPECT_NE(error_of("partition maybe"), "");
  EXPECT_NE(error_of("partition on sideways"), "");
}

TEST(ControlProtocol, SetParsesKeysDirectionsAndPercent) {
  const auto s = as<SetCmd>(parse_command("set delay_ms=25 rate_mbit=100 loss=1% ab.jitter_ms=1 ba.queue_kb=512"));
  ASSERT_EQ(s.settings.size(), 5u);
  EXPECT_EQ(s.settings[0].key, "delay_ms");
  EXPECT_EQ(s.settings[0].value, 25);
  EXPECT_EQ(s.settings[0].dirs, kMaskBoth);
  EXPECT_DOUBLE_EQ(s.settings[2].value, 0.01);
  EXPECT_EQ(s.settings[3].dirs, kMaskAB);
  EXPECT_EQ(s.settings[3].key, "jitter_ms");
  EXPECT_EQ(s.settings[4].dirs, kMaskBA);
}

TEST(ControlProtocol, SetRejectsNonsenseWithAReason) {
  EXPECT_NE(error_of("set").find("usage"), std::string::npos);
  EXPECT_NE(error_of("set delay_ms").find("KEY=VALUE"), std::string::npos);
  EXPECT_NE(error_of("set colour=blue").find("unknown key"), std::string::npos);
  EXPECT_NE(error_of("set delay_ms=fast").find("not a number"), std::string::npos);
  EXPECT_NE(error_of("set delay_ms=-1").find(">= 0"), std::string::npos);
  EXPECT_NE(error_of("set delay_ms=nan").find("not a number"), std::string::npos);
  EXPECT_NE(error_of("launch").find("unknown command"), std::string::npos);
  EXPECT_NE(error_of("stats now").find("no arguments"), std::string::npos);
  EXPECT_NE(error_of("").find("empty"), std::string::npos);
}

TEST(ControlProtocol, ApplyIsAllOrNothing) {
  std::array<LinkParams, 2> p{};
  p[0].delay = p[1].delay = std::chrono::milliseconds{25};
  auto cmd = as<SetCmd>(parse_command("set ab.delay_ms=10 rate_mbit=1000 loss=0.02"));
  EXPECT_EQ(apply_settings(p, cmd.settings), "");
  EXPECT_EQ(p[0].delay, std::chrono::milliseconds{10});
  EXPECT_EQ(p[1].delay, std::chrono::milliseconds{25});
  EXPECT_EQ(p[0].rate_bps, 1'000'000'000u);
  EXPECT_EQ(p[1].rate_bps, 1'000'000'000u);
  EXPECT_DOUBLE_EQ(p[1].loss, 0.02);

  // jitter above the delay is invalid: nothing changes, not even the rate.
  cmd = as<SetCmd>(parse_command("set rate_mbit=5 jitter_ms=30"));
  const std::string err = apply_settings(p, cmd.settings);
  EXPECT_NE(err.find("jitter"), std::string::npos);
  EXPECT_EQ(p[0].rate_bps, 1'000'000'000u);
  EXPECT_EQ(p[0].jitter, Nanos{0});
  cmd = as<SetCmd>(parse_command("set loss=2"));
  EXPECT_NE(apply_settings(p, cmd.settings).find("loss"), std::string::npos);
}

TEST(ControlProtocol, ConfigAndStatsAreJson) {
  std::array<LinkParams, 2> p{};
  p[0].delay = std::chrono::milliseconds{25};
  p[0].rate_bps = 100'000'000;
  const auto cfg = nlohmann::json::parse(config_json(p));
  EXPECT_EQ(cfg["a_to_b"]["delay_ms"], 25.0);
  EXPECT_EQ(cfg["a_to_b"]["rate_mbit"], 100.0);
  EXPECT_EQ(cfg["a_to_b"]["effective_queue_kb"], 625000.0 / 1024);

  DirStats ab, ba;
  ab.fwd_packets.add(3);
  ab.drop_loss_packets.add(2);
  ba.drop_partition_packets.add(7);
  ab.max_inflight_bytes.raise_to(10);
  ab.max_inflight_bytes.raise_to(5);
  const auto st = nlohmann::json::parse(stats_json(ab.snapshot(), ba.snapshot(), false, true, 1.5));
  EXPECT_EQ(st["a_to_b"]["forwarded_packets"], 3);
  EXPECT_EQ(st["a_to_b"]["dropped_loss_packets"], 2);
  EXPECT_EQ(st["a_to_b"]["max_inflight_bytes"], 10);
  EXPECT_EQ(st["b_to_a"]["dropped_partition_packets"], 7);
  EXPECT_EQ(st["partition"]["b_to_a"], true);
  ab.reset_totals();
  EXPECT_EQ(ab.snapshot().fwd_packets, 0u);
}

TEST(ControlProtocol, HelpMentionsEveryCommand) {
  const std::string h = help_text();
  for (const char* w : {"partition", "set", "stats", "config", "reset-stats", "delay_ms", "rate_mbit",
                        "loss", "queue_kb", "jitter_ms"}) {
    EXPECT_NE(h.find(w), std::string::npos) << w;
  }
  EXPECT_EQ(h.find('\n'), std::string::npos);  // one reply line
}

}  // namespace
}  // namespace tideway::wanem

// agent/garp against the Linux ARP stack (root: namespaces, AF_PACKET).
// Two namespaces joined by a veth; X has learned Y's address. Y announces
// the same IPv4 at a new MAC, once as a request and once as a reply: X's
// neighbour cache must take each new MAC, which is what makes clients
// follow a migrated VM. Plus the error paths an operator can hit. Fails
// (not skips) without root: CI runs it as root.
#include "agent/garp.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "agent/holder_command.h"

namespace tideway::agent {
namespace {

namespace arp = proto::arp;
using namespace std::chrono_literals;

std::string sh(const std::vector<std::string>& argv) {
  CommandResult r = run_command(argv);
  EXPECT_TRUE(r.exited(0)) << r.describe(argv);
  return r.output;
}

class GarpKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "needs root (namespaces, raw sockets): this test is LABELS root";
    for (const auto& ns : {x_, y_}) {
      sh({"ip", "netns", "add", ns});
      sh({"ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"});
    }
    sh({"ip", "-n", x_, "link", "add", "ax", "type", "veth", "peer", "name", "ay", "netns", y_});
    sh({"ip", "-n", y_, "link", "set", "ay", "address", "02:00:00:00:00:01"});
    sh({"ip", "-n", x_, "addr", "add", "10.77.0.1/24", "dev", "ax"});
    sh({"ip", "-n", y_, "addr", "add", "10.77.0.2/24", "dev", "ay"});
    sh({"ip", "-n", x_, "link", "set", "ax", "up"});
    sh({"ip", "-n", y_, "link", "set", "ay", "up"});
    sh({"ip", "netns", "exec", x_, "ping", "-c", "1", "-W", "2", "10.77.0.2"});
    ASSERT_EQ(neighbour(), "02:00:00:00:00:01");
  }
  void TearDown() override {
    for (const auto& ns : {x_, y_}) (void)run_command({"ip", "netns", "del", ns});
  }
  // X's cached MAC for Y's address.
  std::string neighbour() {
    const std::string out = sh({"ip", "-n", x_, "neigh", "show", "10.77.0.2", "dev", "ax"});
    const auto at = out.find("lladdr ");
    return at == std::string::npos ? "" : out.substr(at + 7, 17);
  }
  GarpRequest request(const char* mac) {
    GarpRequest r;
    r.iface = "ay";
    r.netns = y_;
    r.mac = *arp::parse_mac(mac);
    r.ip = *arp::parse_ipv4("10.77.0.2");
    return r;
  }
  const std::string x_ = "h4-garp-" + std::to_string(::getpid()) + "-x";
  const std::string y_ = "h4-garp-" + std::to_string(::getpid()) + "-y";
};

TEST_F(GarpKernel, NeighbourCacheFollowsBothForms) {
  // Linux ignores a second update within locktime (1 s) of the last.
  std::this_thread::sleep_for(1100ms);
  auto r = send_garp(request("52:54:00:aa:00:02"));
  ASSERT_TRUE(r.ok()) << r.error().detail;
  ASSERT_EQ(r->sent_at_ms.size(), 3u);
  EXPECT_GE(r->sent_at_ms[1] - r->sent_at_ms[0], 19.0);
  EXPECT_GE(r->sent_at_ms[2] - r->sent_at_ms[0], 99.0);
  EXPECT_GE(r->total_ms, 99.0);
  EXPECT_EQ(neighbour(), "52:54:00:aa:00:02") << "the request form did not update the cache";

  std::this_thread::sleep_for(1100ms);
  auto reply = request("52:54:00:aa:00:03");
  reply.form = arp::Op::kReply;
  reply.schedule = garp_schedule(1);
  ASSERT_TRUE(send_garp(reply).ok());
  EXPECT_EQ(neighbour(), "52:54:00:aa:00:03") << "the reply form did not update the cache";
}

TEST_F(GarpKernel, ErrorsSayWhatIsWrong) {
  auto expect_error = [](GarpRequest req, const std::string& words) {
    auto r = send_garp(req);
    ASSERT_FALSE(r.ok()) << "expected an error with: " << words;
    EXPECT_NE(r.error().detail.find(words), std::string::npos) << r.error().detail;
  };
  auto no_dev = request("52:54:00:aa:00:02");
  no_dev.iface = "nosuch0";
  expect_error(no_dev, "no such interface 'nosuch0' in network namespace " + y_);
  auto no_ns = request("52:54:00:aa:00:02");
  no_ns.netns = "h4-garp-missing";
  expect_error(no_ns, "/run/netns/h4-garp-missing");
  sh({"ip", "-n", y_, "link", "set", "ay", "down"});
  expect_error(request("52:54:00:aa:00:02"), "is down");
  EXPECT_EQ(neighbour(), "02:00:00:00:00:01");  // nothing was sent
}

TEST(Garp, ValidationAndSchedule) {
  GarpRequest ok;
  ok.iface = "eth0";
  ok.mac = *arp::parse_mac("52:54:00:12:34:56");
  ok.ip = *arp::parse_ipv4("192.168.50.10");
  EXPECT_TRUE(validate_garp(ok).ok());
  auto bad = [&](auto change, const std::string& words) {
    GarpRequest r = ok;
    change(r);
    auto v = validate_garp(r);
    ASSERT_FALSE(v.ok()) << words;
    EXPECT_EQ(v.error().code, proto::Errc::kInvalid);
    EXPECT_NE(v.error().detail.find(words), std::string::npos) << v.error().detail;
    EXPECT_FALSE(send_garp(r).ok());
  };
  bad([](GarpRequest& r) { r.mac = arp::kBroadcastMac; }, "not a unicast");
  bad([](GarpRequest& r) { r.mac = *arp::parse_mac("01:00:5e:00:00:01"); }, "not a unicast");
  bad([](GarpRequest& r) { r.mac = arp::kZeroMac; }, "not a unicast");
  bad([](GarpRequest& r) { r.ip = arp::Ipv4{}; }, "cannot be announced");
  bad([](GarpRequest& r) { r.ip = arp::Ipv4{224, 0, 0, 1}; }, "cannot be announced");
  bad([](GarpRequest& r) { r.iface = "a-name-that-is-too-long"; }, "bad interface name");
  bad([](GarpRequest& r) { r.iface = "eth0;reboot"; }, "bad interface name");
  bad([](GarpRequest& r) { r.netns = "../x"; }, "namespace");
  bad([](GarpRequest& r) { r.schedule.clear(); }, "1 to 60 frames");
  bad([](GarpRequest& r) { r.schedule = {20ms, 10ms}; }, "non-decreasing");
  bad([](GarpRequest& r) { r.schedule = {0ms, 61s}; }, "at most 60000 ms");
  bad([](GarpRequest& r) { r.schedule.assign(61, 0ms); }, "1 to 60 frames");

  EXPECT_EQ(default_garp_schedule(), (std::vector<std::chrono::milliseconds>{0ms, 20ms, 100ms}));
  const auto s = garp_schedule(kMaxGarpFrames);
  EXPECT_EQ(s.size(), 60u);
  EXPECT_EQ(s[7], 3000ms);
  EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
  ok.schedule = s;
  EXPECT_TRUE(validate_garp(ok).ok());  // the longest burst fits the 60 s cap
}

}  // namespace
}  // namespace tideway::agent

// The pool controller against a small model of iproute2 (no root): the
// commands it runs, idempotence, rollback of a failed create, refusal to
// touch devices it did not make, removal of learned MACs with a site, and
// the JSON readers against real iproute2 6.1 output. The real kernel is
// exercised by tests/lab/lab_pool_test.sh.
#include "agent/vcp_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tideway::agent::vcp {
namespace {

using nlohmann::json;

// Just enough of `ip` and `bridge` for the controller's commands.
struct FakeIproute {
  struct Link {
    std::string kind, alias, master;
    bool up = false;
    int mtu = 1500;
    uint32_t vni = 0;
    std::string local, underlay;
    uint16_t port = 0;
    std::vector<std::string> addrs;
  };
  std::map<std::string, Link> links;
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> fdb;  // dev -> (mac, dst)
  std::vector<std::string> log;  // every command, joined
  std::string fail_on;           // a command starting with this fails (once)

  FakeIproute() {
    links["wan0"] = Link{"tun", "", "", true, 1550, 0, "", "", 0, {"10.250.0.1"}};
  }

  CommandResult operator()(const std::vector<std::string>& argv) {
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
    log.push_back(line);
    CommandResult r;
    r.exit_code = 0;
    if (!fail_on.empty() && line.rfind(fail_on, 0) == 0) {
      fail_on.clear();
      r.exit_code = 2;
      r.output = "RTNETLINK answers: Operation not permitted\n";
      return r;
    }
    std::vector<std::string> a(argv.begin() + 1, argv.end());
    if (a.size() >= 2 && a[0] == "-n") a.erase(a.begin(), a.begin() + 2);
    auto bad = [&] {
      r.exit_code = 1;
      r.output = "fake: cannot do " + line;
      return r;
    };
    if (argv[0] == "ip" && a == std::vector<std::string>{"-j", "-d", "link", "show"}) {
      json arr = json::array();
      for (const auto& [name, l] : links) {
        json j{{"ifname", name}, {"mtu", l.mtu}, {"flags", l.up ? json{"BROADCAST", "UP"} : json{"BROADCAST"}}};
        if (!l.alias.empty()) j["ifalias"] = l.alias;
        if (!l.master.empty()) j["master"] = l.master;
        j["linkinfo"] = {{"info_kind", l.kind}};
        if (l.kind == "vxlan")
          j["linkinfo"]["info_data"] = {{"id", l.vni}, {"local", l.local}, {"link", l.underlay}, {"port", l.port}};
        arr.push_back(j);
      }
      r.output = arr.dump();
    } else if (argv[0] == "ip" && a.size() == 5 && a[1] == "addr") {
      if (!links.count(a[4])) return bad();
      json ai = json::array();
      for (const auto& ip : links[a[4]].addrs) ai.push_back({{"family", "inet"}, {"local", ip}});
      r.output = json::array({{{"ifname", a[4]}, {"addr_info", ai}}}).dump();
    } else if (argv[0] == "ip" && a.size() >= 5 && a[0] == "link" && a[1] == "add") {
      if (links.count(a[2])) return bad();
      Link l;
      l.kind = a[4];
      if (l.kind == "vxlan") {
        l.vni = static_cast<uint32_t>(std::stoul(a[6]));
        l.local = a[8];
        l.port = static_cast<uint16_t>(std::stoul(a[10]));
        l.underlay = a[12];
      }
      links[a[2]] = l;
    } else if (argv[0] == "ip" && a.size() == 6 && a[0] == "link" && a[1] == "set") {
      if (!links.count(a[3])) return bad();
      Link& l = links[a[3]];
      if (a[4] == "alias") l.alias = a[5];
      else if (a[4] == "master") l.master = a[5];
      else return bad();
    } else if (argv[0] == "ip" && a.size() == 5 && a[1] == "set" && a[4] == "up") {
      if (!links.count(a[3])) return bad();
      links[a[3]].up = true;
    } else if (argv[0] == "ip" && a.size() == 4 && a[1] == "del") {
      if (!links.erase(a[3])) return bad();
      for (auto& [n, l] : links)
        if (l.master == a[3]) l.master.clear();
      fdb.erase(a[3]);
    } else if (argv[0] == "bridge" && a.size() == 5 && a[1] == "fdb") {
      if (!links.count(a[4])) return bad();
      json arr = json::array();
      for (const auto& [mac, dst] : fdb[a[4]]) arr.push_back({{"mac", mac}, {"dst", dst}, {"flags", {"self"}}});
      r.output = arr.empty() ? "" : arr.dump();
    } else if (argv[0] == "bridge" && a.size() == 7 && a[0] == "fdb") {
      auto& entries = fdb[a[4]];
      const std::pair<std::string, std::string> e{a[2], a[6]};
      auto it = std::find(entries.begin(), entries.end(), e);
      if (a[1] == "append" && it == entries.end()) entries.push_back(e);
      if (a[1] == "del" && it != entries.end()) entries.erase(it);
    } else {
      return bad();
    }
    return r;
  }
};

struct PoolTest : ::testing::Test {
  FakeIproute ipr;
  PoolController ctl{"site-a", [this](const std::vector<std::string>& a) { return ipr(a); }};
  PoolSpec spec{"p1", 101, "10.250.0.1", "wan0"};
};

TEST_F(PoolTest, CreateBuildsBridgeAndTunnelInTheNamespace) {
  auto r = ctl.create(spec);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_TRUE(r->changed);
  EXPECT_GE(r->ms, 0);
  EXPECT_TRUE(r->notes.empty());  // underlay MTU 1550: no warning
  for (const auto& l : ipr.log) EXPECT_NE(l.find(" -n site-a "), std::string::npos) << l;
  const auto& vx = ipr.links.at("vx-p1");
  EXPECT_EQ(vx.vni, 101u);
  EXPECT_EQ(vx.master, "vcp-p1");
  EXPECT_EQ(vx.alias, "tideway-vcp:p1");
  EXPECT_TRUE(vx.up && ipr.links.at("vcp-p1").up);
  auto pools = ctl.list();
  ASSERT_TRUE(pools.ok());
  ASSERT_EQ(pools->size(), 1u);
  EXPECT_TRUE((*pools)[0].complete && (*pools)[0].up);
  EXPECT_EQ((*pools)[0].underlay, "wan0");
}

TEST_F(PoolTest, EverythingTwiceChangesNothingTheSecondTime) {
  ASSERT_TRUE(ctl.create(spec).ok());
  ASSERT_TRUE(ctl.add_site("p1", "10.250.0.2").ok());
  const size_t writes_before = ipr.log.size();
  auto again = ctl.create(spec);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
  auto site = ctl.add_site("p1", "10.250.0.2");
  ASSERT_TRUE(site.ok());
  EXPECT_FALSE(site->changed);
  for (size_t i = writes_before; i < ipr.log.size(); ++i)
    EXPECT_TRUE(ipr.log[i].find(" show") != std::string::npos) << "a repeat wrote: " << ipr.log[i];
  EXPECT_EQ(ipr.fdb["vx-p1"].size(), 1u);
}

TEST_F(PoolTest, FailedCreateRollsBack) {
  ipr.fail_on = "ip -n site-a link set dev vx-p1 master";
  auto r = ctl.create(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("Operation not permitted"), std::string::npos) << r.error().detail;
  EXPECT_FALSE(ipr.links.count("vx-p1"));
  EXPECT_FALSE(ipr.links.count("vcp-p1"));
  ASSERT_TRUE(ctl.create(spec).ok());  // and a retry works
}

TEST_F(PoolTest, AFailureAtTheLastStepStillUndoesEverything) {
  ipr.fail_on = "ip -n site-a link set dev vcp-p1 up";
  ASSERT_FALSE(ctl.create(spec).ok());
  EXPECT_FALSE(ipr.links.count("vx-p1") || ipr.links.count("vcp-p1"));
}

// What a crash half-way through create leaves: our bridge, no tunnel.
TEST_F(PoolTest, RepairsAHalfMadePool) {
  ipr.links["vcp-p1"] = FakeIproute::Link{"bridge", "tideway-vcp:p1", "", false, 1500, 0, "", "", 0, {}};
  auto pools = ctl.list();
  ASSERT_TRUE(pools.ok());
  ASSERT_EQ(pools->size(), 1u);
  EXPECT_FALSE((*pools)[0].complete);
  auto r = ctl.create(spec);
  ASSERT_TRUE(r.ok()) << r.error().detail;
  EXPECT_TRUE(r->changed);
  for (const auto& l : ipr.log) EXPECT_EQ(l.find("link add vcp-p1"), std::string::npos) << l;
  EXPECT_TRUE(ipr.links.at("vcp-p1").up);
  EXPECT_EQ(ipr.links.at("vx-p1").master, "vcp-p1");
}

TEST_F(PoolTest, RefusesDevicesItDidNotMake) {
  ipr.links["vx-p1"] = FakeIproute::Link{"vxlan", "", "", true, 1500, 7, "10.250.0.1", "wan0", 4789, {}};
  auto r = ctl.create(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("not pool p1's"), std::string::npos) << r.error().detail;
  auto d = ctl.destroy("p1", true);
  ASSERT_FALSE(d.ok());
  EXPECT_TRUE(ipr.links.count("vx-p1"));
}

TEST_F(PoolTest, BadRequestsChangeNothing) {
  ASSERT_TRUE(ctl.create(spec).ok());
  const auto links = ipr.links.size();
  for (PoolSpec s : {PoolSpec{"p2", 101, "10.250.0.1", "wan0"}, PoolSpec{"p1", 102, "10.250.0.1", "wan0"},
                     PoolSpec{"p2", 0, "10.250.0.1", "wan0"}, PoolSpec{"p2", 1u << 24, "10.250.0.1", "wan0"},
                     PoolSpec{"p2", 5, "10.250.0.9", "wan0"}, PoolSpec{"p2", 5, "10.250.0.1", "eth7"},
                     PoolSpec{"P2", 5, "10.250.0.1", "wan0"}, PoolSpec{"abcdefghijkl", 5, "10.250.0.1", "wan0"},
                     PoolSpec{"p2", 5, "10.250.0.01", "wan0"}}) {
    auto r = ctl.create(s);
    ASSERT_FALSE(r.ok()) << s.name << " " << s.vni;
    EXPECT_EQ(r.error().code, proto::Errc::kInvalid) << r.error().detail;
  }
  EXPECT_FALSE(ctl.add_site("p1", "10.250.0.1").ok());  // our own endpoint
  EXPECT_FALSE(ctl.add_site("p9", "10.250.0.2").ok());
  EXPECT_EQ(ipr.links.size(), links);
  EXPECT_TRUE(ipr.fdb["vx-p1"].empty());
}

TEST_F(PoolTest, RemoveSiteForgetsMacsLearnedThere) {
  ASSERT_TRUE(ctl.create(spec).ok());
  ASSERT_TRUE(ctl.add_site("p1", "10.250.0.2").ok());
  ASSERT_TRUE(ctl.add_site("p1", "10.250.0.6").ok());
  ipr.fdb["vx-p1"].push_back({"52:54:00:00:00:01", "10.250.0.2"});
  ipr.fdb["vx-p1"].push_back({"52:54:00:00:00:02", "10.250.0.6"});
  auto r = ctl.remove_site("p1", "10.250.0.2");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->changed);
  const std::vector<std::pair<std::string, std::string>> left{{"00:00:00:00:00:00", "10.250.0.6"},
                                                              {"52:54:00:00:00:02", "10.250.0.6"}};
  EXPECT_EQ(ipr.fdb["vx-p1"], left);
  auto again = ctl.remove_site("p1", "10.250.0.2");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
}

TEST_F(PoolTest, DeleteRefusesAttachedPortsUnlessForced) {
  ASSERT_TRUE(ctl.create(spec).ok());
  ipr.links["vm1"] = FakeIproute::Link{"veth", "", "vcp-p1", true, 1500, 0, "", "", 0, {}};
  auto r = ctl.destroy("p1", false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("still has ports vm1"), std::string::npos);
  EXPECT_TRUE(ipr.links.count("vcp-p1"));
  auto f = ctl.destroy("p1", true);
  ASSERT_TRUE(f.ok()) << f.error().detail;
  EXPECT_FALSE(ipr.links.count("vcp-p1") || ipr.links.count("vx-p1"));
  EXPECT_TRUE(ipr.links.count("vm1"));  // detached, not deleted
  auto again = ctl.destroy("p1", false);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
}

TEST_F(PoolTest, UnderlayMtuBelow1550IsReported) {
  ipr.links["wan0"].mtu = 1500;
  auto r = ctl.create(spec);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->notes.size(), 1u);
  EXPECT_NE(r->notes[0].find("1550"), std::string::npos);
}

// Real iproute2 6.1 output (trimmed): the readers take what they need.
TEST(VcpIproute, ParsesRealOutput) {
  const char* links_json =
      R"([{"ifindex":5,"ifname":"vx-p1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,)"
      R"("qdisc":"noqueue","master":"vcp-p1","operstate":"UNKNOWN","ifalias":"tideway-vcp:p1",)"
      R"("linkinfo":{"info_kind":"vxlan","info_data":{"id":100,"local":"10.9.0.1","link":"d0",)"
      R"("port_range":{"low":0,"high":0},"port":4789,"learning":true,"ttl":0,"df":"unset","ageing":300},)"
      R"("info_slave_kind":"bridge","info_slave_data":{"state":"disabled","hold_timer":0.00}}}])";
  auto links = parse_links(links_json);
  ASSERT_TRUE(links.ok()) << links.error().detail;
  ASSERT_EQ(links->size(), 1u);
  const LinkInfo& l = (*links)[0];
  EXPECT_EQ(l.name, "vx-p1");
  EXPECT_EQ(l.alias, "tideway-vcp:p1");
  EXPECT_EQ(l.kind, "vxlan");
  EXPECT_EQ(l.master, "vcp-p1");
  EXPECT_TRUE(l.up);
  EXPECT_EQ(l.vni, 100u);
  EXPECT_EQ(l.local, "10.9.0.1");
  EXPECT_EQ(l.underlay, "d0");
  EXPECT_EQ(l.port, 4789);
  auto fdb = parse_fdb(
      R"([{"mac":"1a:1a:bb:36:5e:04","flags":[],"master":"vcp-p1","state":"permanent"},)"
      R"({"mac":"00:00:00:00:00:00","dst":"10.9.0.2","flags":["self"],"state":"permanent"}])");
  ASSERT_TRUE(fdb.ok());
  ASSERT_EQ(fdb->size(), 2u);
  EXPECT_EQ((*fdb)[1].dst, "10.9.0.2");
  EXPECT_TRUE(parse_fdb("").ok());  // an empty table prints nothing
  auto addrs = parse_ipv4_addresses(
      R"([{"ifname":"d0","addr_info":[{"family":"inet","local":"10.9.0.1","prefixlen":30}]}])");
  ASSERT_TRUE(addrs.ok());
  EXPECT_EQ(*addrs, std::vector<std::string>{"10.9.0.1"});
}

TEST(VcpIproute, OddOutputIsAnErrorNotACrash) {
  for (const char* bad : {"{", "{}", "[1,2]", "[{\"mtu\":1}]", "not json", "[{\"ifname\":5}]"})
    EXPECT_FALSE(parse_links(bad).ok()) << bad;
  // Wrong types inside are ignored, not thrown.
  auto l = parse_links(R"([{"ifname":"x","mtu":"big","flags":"UP","linkinfo":[]}])");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ((*l)[0].mtu, 0);
  EXPECT_FALSE(parse_fdb("[3]").ok());
}

}  // namespace
}  // namespace tideway::agent::vcp

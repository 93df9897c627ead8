// The packet holder on a real NFQUEUE (root). Three namespaces per test:
//
//   app (10.77.1.2) --eth0|ra-- rtr (holder, FORWARD rule) --rc|eth0-- cli (10.77.2.2)
//
// Packets from app to cli pass the holder; cli to app is never queued. The
// tests FAIL when not run as root (CI runs them as root).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "agent/holder_command.h"
#include "agent/holder_netns.h"
#include "agent/holder_rules.h"
#include "agent/packet_holder.h"
#include "tests/wan/io_thread.h"

extern char** environ;

namespace tideway::agent {
namespace {

using namespace std::chrono_literals;

constexpr uint16_t kQueue = 7;
constexpr const char* kAppIp = "10.77.1.2";
constexpr const char* kCliIp = "10.77.2.2";
constexpr uint16_t kCliPort = 5000;   // cli listens (app -> cli: held)
constexpr uint16_t kAppPort = 5001;   // app listens (cli -> app: never held)

// Runs a command; the test fails with the command's own words if it does.
void must(const std::vector<std::string>& argv) {
  CommandResult r = run_command(argv);
  ASSERT_TRUE(r.exited(0)) << r.describe(argv);
}

// Three namespaces, wired and addressed; deleted (with their rules and
// devices) by the destructor whatever happened.
class Lab {
 public:
  Lab() {
    static std::atomic<int> n{0};
    prefix_ = "twh" + std::to_string(::getpid()) + "-" + std::to_string(n++) + "-";
  }
  ~Lab() {
    for (const auto& ns : made_) run_command({"ip", "netns", "del", ns});
  }
  std::string ns(const std::string& role) const { return prefix_ + role; }

  void up() {
    for (const char* role : {"app", "rtr", "cli"}) {
      ASSERT_NO_FATAL_FAILURE(must({"ip", "netns", "add", ns(role)}));
      made_.push_back(ns(role));
      // IPv6 off: no router solicitations or DAD noise in packet counts.
      ASSERT_NO_FATAL_FAILURE(
          must({"ip", "netns", "exec", ns(role), "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"}));
      ASSERT_NO_FATAL_FAILURE(must({"ip", "-n", ns(role), "link", "set", "lo", "up"}));
    }
    // Device names are per namespace, so short fixed names cannot collide.
    ASSERT_NO_FATAL_FAILURE(
        must({"ip", "-n", ns("app"), "link", "add", "eth0", "type", "veth", "peer", "name", "ra", "netns", ns("rtr")}));
    ASSERT_NO_FATAL_FAILURE(
        must({"ip", "-n", ns("cli"), "link", "add", "eth0", "type", "veth", "peer", "name", "rc", "netns", ns("rtr")}));
    struct Addr {
      const char* role;
      const char* dev;
      const char* cidr;
    };
    for (Addr a : {Addr{"app", "eth0", "10.77.1.2/24"}, Addr{"rtr", "ra", "10.77.1.1/24"},
                   Addr{"rtr", "rc", "10.77.2.1/24"}, Addr{"cli", "eth0", "10.77.2.2/24"}}) {
      ASSERT_NO_FATAL_FAILURE(must({"ip", "-n", ns(a.role), "addr", "add", a.cidr, "dev", a.dev}));
      ASSERT_NO_FATAL_FAILURE(must({"ip", "-n", ns(a.role), "link", "set", a.dev, "up"}));
    }
    ASSERT_NO_FATAL_FAILURE(must({"ip", "-n", ns("app"), "route", "add", "default", "via", "10.77.1.1"}));
    ASSERT_NO_FATAL_FAILURE(must({"ip", "-n", ns("cli"), "route", "add", "default", "via", "10.77.2.1"}));
    ASSERT_NO_FATAL_FAILURE(
        must({"ip", "netns", "exec", ns("rtr"), "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"}));
  }

 private:
  std::string prefix_;
  std::vector<std::string> made_;
};

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

sockaddr_in addr_of(const char* ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip, &a.sin_addr);
  return a;
}

// A UDP socket inside namespace `ns`, bound to ip:port if port != 0.
Fd udp_socket(const std::string& ns, const char* ip, uint16_t port) {
  auto fd = socket_in_netns(ns, AF_INET, SOCK_DGRAM, 0);
  EXPECT_TRUE(fd) << fd.error().detail;
  if (!fd) return Fd{};
  Fd s{*fd};
  if (port != 0) {
    sockaddr_in a = addr_of(ip, port);
    EXPECT_EQ(::bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
  }
  return s;
}

void send_seqs(const Fd& s, const char* ip, uint16_t port, uint32_t first, uint32_t last) {
  sockaddr_in to = addr_of(ip, port);
  for (uint32_t seq = first; seq <= last; ++seq) {
    char buf[64] = {};
    std::memcpy(buf, &seq, sizeof seq);
    ASSERT_EQ(::sendto(s.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(sizeof buf))
        << std::strerror(errno);
  }
}

// Sequence numbers received within `wait`, stopping early once `want` came.
std::vector<uint32_t> recv_seqs(const Fd& s, std::chrono::milliseconds wait, size_t want = SIZE_MAX) {
  std::vector<uint32_t> got;
  auto deadline = std::chrono::steady_clock::now() + wait;
  while (got.size() < want) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{s.fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[64];
    ssize_t n = ::recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n >= 4) {
      uint32_t seq;
      std::memcpy(&seq, buf, sizeof seq);
      got.push_back(seq);
    }
  }
  return got;
}

std::vector<uint32_t> range(uint32_t first, uint32_t last) {
  std::vector<uint32_t> v;
  for (uint32_t i = first; i <= last; ++i) v.push_back(i);
  return v;
}

// A background process (posix_spawn: safe next to the io thread), killed
// and reaped by the destructor. Optionally its stdout as a pipe.
class Child {
 public:
  Child(const std::vector<std::string>& argv, bool pipe_stdout) {
    int p[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (pipe_stdout) {
      EXPECT_EQ(::pipe2(p, O_CLOEXEC), 0);
      posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    } else {
      posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int err = ::posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    EXPECT_EQ(err, 0) << argv[0] << ": " << std::strerror(err);
    if (err != 0) pid_ = -1;
    if (pipe_stdout) {
      ::close(p[1]);
      out_.fd = p[0];
    }
  }
  ~Child() { kill(SIGKILL); }
  // Waits for a line on stdout (the child's "ready").
  std::string read_line(std::chrono::milliseconds wait) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (line.empty() || line.back() != '\n') {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{out_.fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char c;
      if (::read(out_.fd, &c, 1) != 1) break;
      line += c;
    }
    return line;
  }
  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int st;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  Fd out_;
};

class PacketHolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "packet holder tests need root (namespaces, NFQUEUE); CI runs them as root";
    ASSERT_NO_FATAL_FAILURE(lab_.up());
    rule_ = HolderRule{"ra", "", kQueue, lab_.ns("rtr")};
    auto added = install_holder_rule(rule_);
    ASSERT_TRUE(added) << added.error().detail;
    ASSERT_TRUE(*added);
    // Idempotent: a second install finds the rule and adds nothing.
    auto again = install_holder_rule(rule_);
    ASSERT_TRUE(again) << again.error().detail;
    ASSERT_FALSE(*again);
    cli_rx_ = udp_socket(lab_.ns("cli"), kCliIp, kCliPort);
    app_tx_ = udp_socket(lab_.ns("app"), kAppIp, 0);
    app_rx_ = udp_socket(lab_.ns("app"), kAppIp, kAppPort);
    cli_tx_ = udp_socket(lab_.ns("cli"), kCliIp, 0);
  }
  void TearDown() override {
    io_.call([this] { holder_.reset(); });  // holders live and die on their io thread
    io_.stop();
  }

  void start_holder(HolderMode mode) {
    PacketHolderOptions o;
    o.queue_num = kQueue;
    o.mode = mode;
    o.netns = lab_.ns("rtr");
    auto r = io_.call([&] {
      return PacketHolder::start(io_.io(), o, [this] { return pending_.load(); });
    });
    ASSERT_TRUE(r) << r.error().detail;
    holder_ = std::move(r).value();
  }
  PacketHolderStats stats() {
    return io_.call([this] { return holder_->stats(); });
  }
  void release(uint64_t committed) {
    io_.call([&] { holder_->release(committed); });
  }
  // Packets reach the holder asynchronously; wait until it holds `n`.
  void wait_held(uint64_t n) {
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (stats().held < n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    ASSERT_EQ(stats().held, n);
  }
  // cli -> app is not matched by the rule: it flows whatever the holder does.
  void expect_cli_to_app_flows(uint32_t first, uint32_t last) {
    send_seqs(cli_tx_, kAppIp, kAppPort, first, last);
    EXPECT_EQ(recv_seqs(app_rx_, 2000ms, last - first + 1), range(first, last));
  }

  Lab lab_;
  HolderRule rule_;
  std::atomic<uint64_t> pending_{0};
  tideway::testing::IoThread io_;
  std::unique_ptr<PacketHolder> holder_;
  Fd cli_rx_, app_tx_, app_rx_, cli_tx_;
};

// (a) Nothing leaves before the backup has every write the reply may depend on.
TEST_F(PacketHolderTest, HoldsUntilCommittedReachesTheTag) {
  ASSERT_NO_FATAL_FAILURE(start_holder(HolderMode::kHold));
  pending_ = 5;
  send_seqs(app_tx_, kCliIp, kCliPort, 1, 1);
  EXPECT_TRUE(recv_seqs(cli_rx_, 300ms).empty()) << "released before commit";
  ASSERT_NO_FATAL_FAILURE(wait_held(1));
  release(4);
  EXPECT_TRUE(recv_seqs(cli_rx_, 200ms).empty()) << "released at committed 4 < tag 5";
  release(5);
  EXPECT_EQ(recv_seqs(cli_rx_, 2000ms, 1), range(1, 1));
  auto s = stats();
  EXPECT_EQ(s.held, 0u);
  EXPECT_EQ(s.released_total, 1u);
  EXPECT_GE(s.max_hold_ms, 300.0);
  EXPECT_EQ(s.last_tag, 5u);
  EXPECT_EQ(s.kernel_lost, 0u);
}

// (b) Release exactly at the tag, FIFO order across tags.
TEST_F(PacketHolderTest, ReleasesPerTagInFifoOrder) {
  ASSERT_NO_FATAL_FAILURE(start_holder(HolderMode::kHold));
  pending_ = 5;
  send_seqs(app_tx_, kCliIp, kCliPort, 1, 20);
  ASSERT_NO_FATAL_FAILURE(wait_held(20));
  pending_ = 7;
  send_seqs(app_tx_, kCliIp, kCliPort, 21, 40);
  ASSERT_NO_FATAL_FAILURE(wait_held(40));

  release(5);
  EXPECT_EQ(recv_seqs(cli_rx_, 2000ms, 20), range(1, 20));
  release(6);
  EXPECT_TRUE(recv_seqs(cli_rx_, 300ms).empty()) << "tag 7 released at committed 6";
  release(7);
  EXPECT_EQ(recv_seqs(cli_rx_, 2000ms, 20), range(21, 40));
  auto s = stats();
  EXPECT_EQ(s.released_total, 40u);
  EXPECT_EQ(s.verdict_errors, 0u);
}

// (c) stop() drops what is held; with the rule left in place and no holder
// listening, app -> cli stops entirely while cli -> app still flows.
TEST_F(PacketHolderTest, StoppedHolderDropsHeldAndBlocksTraffic) {
  ASSERT_NO_FATAL_FAILURE(start_holder(HolderMode::kHold));
  pending_ = 1;
  send_seqs(app_tx_, kCliIp, kCliPort, 1, 3);
  ASSERT_NO_FATAL_FAILURE(wait_held(3));
  io_.call([this] { holder_->stop(); });
  EXPECT_EQ(stats().dropped_on_stop, 3u);
  io_.call([this] { holder_.reset(); });
  send_seqs(app_tx_, kCliIp, kCliPort, 4, 50);
  EXPECT_TRUE(recv_seqs(cli_rx_, 500ms).empty()) << "traffic leaked without a holder";
  expect_cli_to_app_flows(100, 110);
  auto present = holder_rule_present(rule_);
  ASSERT_TRUE(present) << present.error().detail;
  EXPECT_TRUE(*present);
  // unprotect: removing the rule lets traffic flow unheld.
  auto removed = remove_holder_rule(rule_);
  ASSERT_TRUE(removed) << removed.error().detail;
  EXPECT_TRUE(*removed);
  send_seqs(app_tx_, kCliIp, kCliPort, 60, 62);
  EXPECT_EQ(recv_seqs(cli_rx_, 2000ms, 3), range(60, 62));
}

// (c) A holder process that dies by SIGKILL: nothing it held and nothing
// after it leaks. `mode` is the child's: pass (traffic flows until the kill)
// or hold (tag 1, never released).
void sigkill_scenario(Lab& lab, const Fd& app_tx, const Fd& cli_rx, bool hold) {
  Child child({"/proc/self/exe", "--holder-child", netns_path(lab.ns("rtr")), std::to_string(kQueue),
               hold ? "hold" : "pass"},
              true);
  // The child logs to stdout too; wait for its "ready" line.
  bool ready = false;
  for (int i = 0; i < 20 && !ready; ++i) {
    std::string line = child.read_line(10s);
    if (line.empty()) break;
    ready = line == "ready\n";
  }
  ASSERT_TRUE(ready) << "holder child did not start";
  send_seqs(app_tx, kCliIp, kCliPort, 1, 5);
  if (hold) {
    EXPECT_TRUE(recv_seqs(cli_rx, 300ms).empty());
  } else {
    EXPECT_EQ(recv_seqs(cli_rx, 2000ms, 5), range(1, 5));
  }
  child.kill(SIGKILL);
  send_seqs(app_tx, kCliIp, kCliPort, 6, 50);
  EXPECT_TRUE(recv_seqs(cli_rx, 700ms).empty()) << "traffic leaked after the holder was killed";
}

TEST_F(PacketHolderTest, KilledPassingHolderStopsTraffic) {
  ASSERT_NO_FATAL_FAILURE(sigkill_scenario(lab_, app_tx_, cli_rx_, false));
  expect_cli_to_app_flows(1, 10);
}

TEST_F(PacketHolderTest, KilledHoldingHolderLeaksNothing) {
  ASSERT_NO_FATAL_FAILURE(sigkill_scenario(lab_, app_tx_, cli_rx_, true));
  expect_cli_to_app_flows(1, 10);
}

// (d) Async mode: same path, verdict at once.
TEST_F(PacketHolderTest, PassModeForwardsAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start_holder(HolderMode::kPass));
  pending_ = 100;  // would hold everything in kHold
  send_seqs(app_tx_, kCliIp, kCliPort, 1, 50);
  EXPECT_EQ(recv_seqs(cli_rx_, 2000ms, 50), range(1, 50));
  auto s = stats();
  EXPECT_EQ(s.passed_total, 50u);
  EXPECT_EQ(s.held, 0u);
  EXPECT_EQ(s.held_total, 0u);
}

// (e) TCP bulk through the holder while a simulated writer issues a write
// every millisecond and the backup commits it `lag` ms later.
struct BulkResult {
  double mbit = 0;
  PacketHolderStats stats;
  double seconds = 0;
};

class Committer {
 public:
  Committer(boost::asio::io_context& io, std::atomic<uint64_t>& pending, PacketHolder& h, uint64_t lag)
      : timer_(io), pending_(pending), holder_(h), lag_(lag) {}
  // A timer that already fired cannot be cancelled: its handler may still run
  // after we are gone, so it checks this flag first.
  ~Committer() { *alive_ = false; }
  void start() { tick(); }

 private:
  void tick() {
    uint64_t p = ++pending_;
    if (p > lag_) holder_.release(p - lag_);
    timer_.expires_after(1ms);
    timer_.async_wait([this, alive = alive_](const boost::system::error_code& ec) {
      if (!ec && *alive) tick();
    });
  }
  boost::asio::steady_timer timer_;
  std::atomic<uint64_t>& pending_;
  PacketHolder& holder_;
  uint64_t lag_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

std::optional<double> iperf3_mbit(Lab& lab, int seconds, std::string* why) {
  Child server({"ip", "netns", "exec", lab.ns("cli"), "iperf3", "-s", "-B", kCliIp, "-p", "5201"}, false);
  std::vector<std::string> client = {"ip", "netns", "exec", lab.ns("app"), "iperf3", "-c", kCliIp, "-p", "5201",
                                     "-t", std::to_string(seconds), "-J"};
  CommandResult r;
  for (int attempt = 0; attempt < 50; ++attempt) {  // until the server listens
    r = run_command(client);
    // iperf3 -J may exit 0 with "error": "...Connection refused" in its JSON.
    if (r.output.find("refused") == std::string::npos) break;
    std::this_thread::sleep_for(100ms);
  }
  if (!r.exited(0)) {
    *why = r.describe(client);
    return std::nullopt;
  }
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  if (j.is_discarded() || !j["end"]["sum_received"]["bits_per_second"].is_number()) {
    *why = "unexpected iperf3 output: " + r.output.substr(0, 500);
    return std::nullopt;
  }
  return j["end"]["sum_received"]["bits_per_second"].get<double>() / 1e6;
}

TEST_F(PacketHolderTest, TcpBulkThroughTheHolder) {
  ASSERT_TRUE(find_in_path("iperf3")) << "iperf3 is required (apt-get install iperf3)";
  for (HolderMode mode : {HolderMode::kPass, HolderMode::kHold}) {
    if (holder_) io_.call([this] { holder_.reset(); });
    ASSERT_NO_FATAL_FAILURE(start_holder(mode));
    constexpr uint64_t kLagMs = 5;
    // Created, run and destroyed on the io thread, like the holder.
    std::unique_ptr<Committer> committer;
    io_.call([&] {
      committer = std::make_unique<Committer>(io_.io(), pending_, *holder_, kLagMs);
      committer->start();
    });
    auto t0 = std::chrono::steady_clock::now();
    std::string why;
    auto mbit = iperf3_mbit(lab_, 3, &why);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    io_.call([&] { committer.reset(); });
    ASSERT_TRUE(mbit) << why;
    auto s = stats();
    uint64_t packets = mode == HolderMode::kHold ? s.released_total : s.passed_total;
    std::cout << "holder " << holder_mode_name(mode) << " (commit lag " << kLagMs << " ms): " << *mbit
              << " Mbit/s, " << packets << " packets (GSO super-packets count once) in " << secs
              << " s = " << static_cast<uint64_t>(packets / secs) << " packets/s, max hold " << s.max_hold_ms
              << " ms, dropped full " << s.dropped_full << ", kernel lost " << s.kernel_lost << ", ENOBUFS "
              << s.enobufs << "\n";
    RecordProperty(std::string("mbit_") + holder_mode_name(mode), std::to_string(*mbit));
    // A generous floor (sanitizer build, shared 2-core machine): the point
    // is that bulk TCP completes through the holder at a useful rate.
    EXPECT_GE(*mbit, 20.0) << holder_mode_name(mode);
    EXPECT_EQ(s.verdict_errors, 0u);
    if (mode == HolderMode::kHold) {
      EXPECT_GT(s.released_total, 100u);
      EXPECT_GE(s.max_hold_ms, 1.0);  // it really held
    }
  }
}

// The holder process used by the SIGKILL tests: binds the queue in the
// given namespace, says "ready", and serves until killed.
int holder_child(int argc, char** argv) {
  if (argc != 5) return 2;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
  boost::asio::io_context io;
  PacketHolderOptions o;
  o.netns = argv[2];
  o.queue_num = static_cast<uint16_t>(std::stoi(argv[3]));
  bool hold = std::string(argv[4]) == "hold";
  o.mode = hold ? HolderMode::kHold : HolderMode::kPass;
  auto h = PacketHolder::start(io, o, [hold] { return hold ? uint64_t{1} : uint64_t{0}; });
  if (!h) {
    std::cerr << "holder child: " << h.error().detail << "\n";
    return 1;
  }
  std::cout << "ready" << std::endl;
  auto guard = boost::asio::make_work_guard(io);
  io.run();
  return 0;
}

}  // namespace
}  // namespace tideway::agent

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--holder-child") return tideway::agent::holder_child(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

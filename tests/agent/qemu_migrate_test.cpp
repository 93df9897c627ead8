// The QEMU driver end to end with the real test guest (docs/guest.md) under
// TCG (root: a network namespace with a bridge and two TAPs). One VM is
// launched from a VmSpec, shown alive by memload's heartbeat, paused and
// resumed over QMP; a second one starts with -incoming defer -S and the
// first migrates to it over a unix socket: held at downtime-limit 1 ms for
// a few passes, then released (pause-before-switchover, migrate-continue).
// Both memories are dumped with pmemsave and must be identical; the
// destination then runs on with the guest's own checksums at 0 errors and
// the heartbeat's TCP connection intact. Both QEMUs quit; none is left.
//
// The namespace is anonymous (unshare(CLONE_NEWNET) of the test process):
// it disappears with the process whatever happens, and the QEMUs get
// SIGKILL if the test dies (die_with_parent). The run dir is removed on
// every exit path. Prints the figures docs/qemu-driver.md quotes.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "agent/holder_command.h"
#include "agent/qemu_vm.h"
#include "agent/qmp_commands.h"
#include "tests/agent/fake_qmp_server.h"

namespace tideway::testing {
namespace {

using namespace agent;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr uint64_t kRamBytes = 524280ull * 1024;  // -m 524280K (never a multiple of 256 KiB)
constexpr const char* kGuestIp = "10.0.0.5";

double ms_since(Clock::time_point t0, Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(t - t0).count();
}

// Runs a command; the test fails with the command's own words if it does.
bool sh(const std::vector<std::string>& argv) {
  auto r = run_command(argv);
  EXPECT_TRUE(r.exited(0)) << r.describe(argv);
  return r.exited(0);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last line of `text` starting with `prefix` ("" if none).
std::string last_line(const std::string& text, const std::string& prefix) {
  std::string found;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (l.rfind(prefix, 0) == 0) found = l;
  }
  return found;
}

// key=N in a heartbeat line; -1 if absent.
long long field(const std::string& line, const std::string& key) {
  const auto p = line.find(" " + key + "=");
  return p == std::string::npos ? -1 : std::atoll(line.c_str() + p + key.size() + 2);
}

// Pages (4 KiB) that differ between two dumps of equal size; -1 on a size
// or read problem.
long long differing_pages(const std::string& a, const std::string& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb || fs::file_size(a) != fs::file_size(b) || fs::file_size(a) != kRamBytes) return -1;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  long long diff = 0;
  for (uint64_t off = 0; off < kRamBytes; off += ba.size()) {
    const size_t n = std::min<uint64_t>(ba.size(), kRamBytes - off);
    if (!fa.read(ba.data(), n) || !fb.read(bb.data(), n)) return -1;
    for (size_t p = 0; p < n; p += 4096)
      diff += std::memcmp(ba.data() + p, bb.data() + p, std::min<size_t>(4096, n - p)) != 0;
  }
  return diff;
}

// The heartbeat over TCP: one connection held across the migration.
struct HeartbeatReader {
  explicit HeartbeatReader(boost::asio::io_context& io) : sock(io), buf(4096) {}
  boost::asio::ip::tcp::socket sock;
  boost::asio::streambuf buf;
  bool connected = false, closed = false;
  long long lines = 0, last_seq = 0, errors = 0, seq_gaps_backwards = 0;

  void read() {
    boost::asio::async_read_until(sock, buf, '\n', [this](boost::system::error_code ec, size_t n) {
      if (ec) {
        closed = true;
        return;
      }
      std::string l(boost::asio::buffers_begin(buf.data()), boost::asio::buffers_begin(buf.data()) + n);
      buf.consume(n);
      const long long seq = field(l, "seq");
      if (seq > 0) {
        if (seq <= last_seq) ++seq_gaps_backwards;
        last_seq = seq;
        errors = std::max(errors, field(l, "errors"));
        ++lines;
      }
      read();
    });
  }
};

struct Timeline {
  Clock::time_point t0 = Clock::now();
  std::vector<std::string> entries;
  void add(const std::string& who, const std::string& what) {
    char b[64];
    std::snprintf(b, sizeof b, "%9.1f ms ", ms_since(t0, Clock::now()));
    entries.push_back(b + who + " " + what);
  }
};

class QemuMigrate : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  std::string run;
  std::string guest;
  std::shared_ptr<QemuVm> src, dst;

  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0u) << "qemu.migrate needs root (network namespace, TAP); CI runs it as root";
    ASSERT_TRUE(find_in_path("qemu-system-x86_64")) << "qemu-system-x86_64 missing (deploy/install-deps.sh)";
    ASSERT_TRUE(find_in_path("ip")) << "ip (iproute2) missing";
    // Before the namespace: the first build downloads the kernel package.
    const char* g = std::getenv("GUEST_DIR");
    guest = g && *g ? g : std::string(TIDEWAY_BUILD_DIR) + "/guest";
    ASSERT_TRUE(sh({"bash", std::string(TIDEWAY_SOURCE_DIR) + "/deploy/guest/build-guest.sh", guest}))
        << "could not build the test guest";
    // An anonymous namespace for this process and its children (QEMU, ip).
    ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
    ASSERT_TRUE(sh({"ip", "link", "set", "lo", "up"}));
    ASSERT_TRUE(sh({"ip", "link", "add", "br0", "type", "bridge"}));
    ASSERT_TRUE(sh({"ip", "addr", "add", "10.0.0.1/24", "dev", "br0"}));
    ASSERT_TRUE(sh({"ip", "link", "set", "br0", "up"}));
    for (const char* tap : {"tap0", "tap1"}) {
      ASSERT_TRUE(sh({"ip", "tuntap", "add", "dev", tap, "mode", "tap"}));
      ASSERT_TRUE(sh({"ip", "link", "set", tap, "master", "br0", "up"}));
    }
    char tmpl[] = "/tmp/h5-qemu-migrate.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    run = tmpl;
  }

  void TearDown() override {
    // QemuVm's destructor kills and reaps a QEMU that still runs.
    const pid_t ps = src ? src->pid() : 0, pd = dst ? dst->pid() : 0;
    src.reset();
    dst.reset();
    for (pid_t p : {ps, pd}) EXPECT_TRUE(p == 0 || ::kill(p, 0) != 0) << "QEMU pid " << p << " left running";
    if (!run.empty() && std::getenv("KEEP") == nullptr) {
      std::error_code ec;
      fs::remove_all(run, ec);
    } else if (!run.empty()) {
      std::fprintf(stderr, "kept %s\n", run.c_str());
    }
  }

  VmSpec spec(const std::string& tap, const std::string& serial) {
    const std::string toml = "name = \"h5-guest\"\nmemory = \"524280K\"\n"
                             "kernel = \"" + guest + "/vmlinuz\"\n"
                             "initrd = \"" + guest + "/initramfs.cpio.gz\"\n"
                             "append = \"console=ttyS0 panic=-1 quiet tw.ip=" + kGuestIp +
                             "/24 tw.mem_mb=64 tw.dirty_mbps=16 tw.verify_mbps=16\"\n"
                             "serial_log = \"" + serial + "\"\n"
                             "extra_args = [\"-no-reboot\"]\n"
                             "[[nics]]\nmac = \"52:54:00:00:00:05\"\ntap = \"" + tap + "\"\nbridge = \"br0\"\n"
                             "ip = \"" + kGuestIp + "\"\n";
    const std::string path = run + "/" + tap + ".toml";
    std::ofstream(path) << toml;
    auto s = load_vm_spec(path);
    EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().detail);
    return s.ok() ? s.value() : VmSpec{};
  }

  std::shared_ptr<QemuVm> start(const VmSpec& s, const std::string& dir, LaunchMode mode) {
    QemuVmOptions o;
    o.run_dir = dir;
    o.mode = mode;
    o.paused_after_incoming = true;
    o.die_with_parent = true;
    auto vm = QemuVm::launch(io, s, o);
    EXPECT_TRUE(vm.ok()) << (vm.ok() ? "" : vm.error().detail);
    if (!vm) return nullptr;
    std::optional<proto::Result<void>> r;
    vm.value()->connect([&](proto::Result<void> res) { r = std::move(res); }, 60s);
    EXPECT_TRUE(run_until(io, [&] { return r.has_value(); }, 90s));
    EXPECT_TRUE(r && r->ok()) << (r && !r->ok() ? r->error().detail : "no answer");
    return vm.value();
  }

  // A QMP call that must succeed.
  bool call(QemuVm& vm, const std::function<void(qmp::Done)>& f, std::chrono::milliseconds limit = 30s) {
    std::optional<proto::Result<void>> r;
    f([&](proto::Result<void> res) { r = std::move(res); });
    if (!run_until(io, [&] { return r.has_value(); }, limit)) {
      ADD_FAILURE() << "QMP call to pid " << vm.pid() << " got no answer";
      return false;
    }
    EXPECT_TRUE(r->ok()) << r->error().detail;
    return r->ok();
  }
  std::string status(QemuVm& vm) {
    std::optional<proto::Result<RunState>> r;
    qmp::query_status(vm.qmp(), [&](proto::Result<RunState> res) { r = std::move(res); });
    if (!run_until(io, [&] { return r.has_value(); }, 30s) || !r->ok()) return "?";
    return (*r)->status;
  }
  std::optional<MigrationInfo> query(QemuVm& vm) {
    std::optional<proto::Result<MigrationInfo>> r;
    qmp::query_migrate(vm.qmp(), [&](proto::Result<MigrationInfo> res) { r = std::move(res); });
    if (!run_until(io, [&] { return r.has_value(); }, 30s)) return std::nullopt;
    EXPECT_TRUE(r->ok()) << r->error().detail;
    return r->ok() ? std::optional(r->value()) : std::nullopt;
  }
};

TEST_F(QemuMigrate, LaunchPauseMigrateCompareQuit) {
  Timeline tl;
  const std::string src_serial = run + "/src.serial", dst_serial = run + "/dst.serial";

  // --- launch and heartbeat ---
  src = start(spec("tap0", src_serial), run + "/src", LaunchMode::kRun);
  ASSERT_TRUE(src);
  tl.add("test", "source QMP up");
  std::vector<std::string> src_events, dst_events;
  int passes = 0;
  std::optional<Clock::time_point> t_stop, t_pre, t_src_done, t_dst_done;
  src->qmp().on_event([&](const std::string& name, const json& data) {
    auto e = parse_event(name, data);
    ASSERT_TRUE(e.ok()) << e.error().detail;
    if (e->kind == QemuEventKind::kOther) return;  // e.g. NIC_RX_FILTER_CHANGED when the guest sets up eth0
    std::string what = name;
    if (e->kind == QemuEventKind::kMigration) what += std::string(" ") + migration_status_name(e->status);
    if (e->kind == QemuEventKind::kMigrationPass) {
      what += " " + std::to_string(e->pass);
      passes = static_cast<int>(e->pass);
    }
    if (e->kind == QemuEventKind::kStop) t_stop = Clock::now();
    if (e->kind == QemuEventKind::kMigration && e->status == MigrationStatus::kPreSwitchover) t_pre = Clock::now();
    if (e->kind == QemuEventKind::kMigration && e->status == MigrationStatus::kCompleted) t_src_done = Clock::now();
    src_events.push_back(what);
    tl.add("src", what);
  });
  const auto t_launch = Clock::now();
  ASSERT_TRUE(run_until(io, [&] { return !last_line(read_file(src_serial), "TW-HB ").empty() || src->exited(); },
                        240s))
      << "no heartbeat on the serial console; QEMU log: " << src->log_tail();
  ASSERT_FALSE(src->exited()) << src->log_tail();
  const double boot_ms = ms_since(t_launch, Clock::now());
  tl.add("test", "first heartbeat");

  // --- query-status, stop, cont ---
  EXPECT_EQ(status(*src), "running");
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::stop(src->qmp(), d); }));
  EXPECT_EQ(status(*src), "paused");
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::cont(src->qmp(), d); }));
  EXPECT_EQ(status(*src), "running");
  ASSERT_TRUE(run_until(io, [&] { return src_events.size() >= 2; }, 10s));
  EXPECT_EQ(src_events[0], "STOP");
  EXPECT_EQ(src_events[1], "RESUME");

  // --- the heartbeat over TCP, held across the migration ---
  HeartbeatReader hb(io);
  const boost::asio::ip::tcp::endpoint guest_ep(boost::asio::ip::make_address(kGuestIp), 7000);
  for (int i = 0; i < 100 && !hb.connected; ++i) {
    boost::system::error_code ec;
    hb.sock.close(ec);
    std::optional<boost::system::error_code> cr;
    hb.sock.async_connect(guest_ep, [&](boost::system::error_code e) { cr = e; });
    ASSERT_TRUE(run_until(io, [&] { return cr.has_value(); }, 20s));
    hb.connected = !*cr;
    if (!hb.connected) run_until(io, [] { return false; }, 200ms);
  }
  ASSERT_TRUE(hb.connected) << "cannot connect to the guest's heartbeat port";
  hb.read();
  ASSERT_TRUE(run_until(io, [&] { return hb.lines >= 5; }, 30s));

  // --- destination, capabilities, parameters ---
  dst = start(spec("tap1", dst_serial), run + "/dst", LaunchMode::kIncoming);
  ASSERT_TRUE(dst);
  dst->qmp().on_event([&](const std::string& name, const json& data) {
    auto e = parse_event(name, data);
    ASSERT_TRUE(e.ok()) << e.error().detail;
    if (e->kind == QemuEventKind::kOther) return;
    std::string what = name;
    if (e->kind == QemuEventKind::kMigration) what += std::string(" ") + migration_status_name(e->status);
    if (e->kind == QemuEventKind::kMigration && e->status == MigrationStatus::kCompleted) t_dst_done = Clock::now();
    dst_events.push_back(what);
    tl.add("dst", what);
  });
  EXPECT_EQ(status(*dst), "inmigrate");
  MigrationCapabilities src_caps, dst_caps;
  src_caps.events = true;
  src_caps.pause_before_switchover = true;
  dst_caps.events = true;
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::set_migration_capabilities(src->qmp(), src_caps, d); }));
  ASSERT_TRUE(call(*dst, [&](qmp::Done d) { qmp::set_migration_capabilities(dst->qmp(), dst_caps, d); }));
  // QEMU switches over once a bitmap sync finds less than bandwidth x
  // downtime-limit left. At 64 MiB/s (16 pages per ms) it found fewer
  // than that every few ms (8 MiB/s dirtied) and switched over even at
  // 1 ms; with the link (max-bandwidth) at the dirty rate it cannot.
  MigrationParameters hold;
  hold.downtime_limit_ms = 1;
  hold.max_bandwidth = 16u << 20;
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::set_migration_parameters(src->qmp(), hold, d); }));

  // --- migrate, held at 1 ms for a few passes ---
  const std::string uri = "unix:" + run + "/migrate.sock";
  ASSERT_TRUE(call(*dst, [&](qmp::Done d) { qmp::migrate_incoming(dst->qmp(), uri, d); }));
  const auto t_migrate = Clock::now();
  tl.add("test", "migrate");
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::migrate(src->qmp(), uri, d); }));
  std::vector<MigrationInfo> polls;
  auto poll_until = [&](const std::function<bool()>& done, std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    while (!done() && Clock::now() < end && !src->exited()) {
      auto q = query(*src);
      if (!q) return false;
      polls.push_back(*q);
      if (migration_finished(q->status)) break;
      run_until(io, [] { return false; }, 250ms);
    }
    return done();
  };
  constexpr int kHoldPasses = 4;
  ASSERT_TRUE(poll_until([&] { return passes >= kHoldPasses; }, 300s))
      << "passes " << passes << ", last status "
      << (polls.empty() ? "?" : migration_status_name(polls.back().status));
  // Held: still iterating a while later.
  const auto t_held = Clock::now();
  poll_until([&] { return Clock::now() - t_held > 2s; }, 10s);
  auto held = query(*src);
  ASSERT_TRUE(held);
  EXPECT_EQ(held->status, MigrationStatus::kActive) << "QEMU switched over at downtime-limit 1 ms";
  ASSERT_TRUE(held->ram);
  const uint64_t remaining_at_raise = held->ram->remaining;
  const int passes_at_raise = passes;

  // --- release: raise downtime-limit; QEMU pauses before switchover ---
  MigrationParameters release;
  release.downtime_limit_ms = 300;
  const auto t_raise = Clock::now();
  tl.add("test", "downtime-limit 1 -> 300 ms");
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::set_migration_parameters(src->qmp(), release, d); }));
  ASSERT_TRUE(run_until(io, [&] { return t_pre.has_value() || src->exited(); }, 60s))
      << "no pre-switchover after raising downtime-limit";
  EXPECT_EQ(status(*src), "finish-migrate");  // vCPUs stopped, device state not yet sent
  tl.add("test", "migrate-continue");
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::migrate_continue(src->qmp(), d); }));
  ASSERT_TRUE(run_until(io, [&] { return t_src_done && t_dst_done; }, 60s));
  auto done = query(*src);
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, MigrationStatus::kCompleted);
  ASSERT_TRUE(done->total_time_ms && done->downtime_ms && done->ram);
  EXPECT_GT(*done->total_time_ms, 0u);
  auto dst_info = query(*dst);
  ASSERT_TRUE(dst_info);
  EXPECT_EQ(dst_info->status, MigrationStatus::kCompleted);
  EXPECT_EQ(status(*src), "postmigrate");
  EXPECT_EQ(status(*dst), "paused");  // -S: waits for us

  // --- both memories, byte for byte ---
  const std::string dump_src = run + "/src.mem", dump_dst = run + "/dst.mem";
  const auto t_dump = Clock::now();
  ASSERT_TRUE(call(*src, [&](qmp::Done d) { qmp::pmemsave(src->qmp(), 0, kRamBytes, dump_src, d); }, 120s));
  ASSERT_TRUE(call(*dst, [&](qmp::Done d) { qmp::pmemsave(dst->qmp(), 0, kRamBytes, dump_dst, d); }, 120s));
  const double dump_ms = ms_since(t_dump, Clock::now());
  const long long diff = differing_pages(dump_src, dump_dst);
  EXPECT_EQ(diff, 0) << "pages that differ between source and destination (-1: dump missing or short)";
  fs::remove(dump_src);
  fs::remove(dump_dst);

  // --- the destination runs on: checksums and the TCP heartbeat ---
  const long long seq_before = hb.last_seq;
  ASSERT_TRUE(call(*dst, [&](qmp::Done d) { qmp::cont(dst->qmp(), d); }));
  EXPECT_EQ(status(*dst), "running");
  ASSERT_TRUE(run_until(io, [&] { return hb.last_seq >= seq_before + 30 || hb.closed; }, 60s))
      << "the heartbeat connection did not carry on after the migration";
  EXPECT_FALSE(hb.closed);
  EXPECT_EQ(hb.errors, 0) << "the guest's verifier found damaged pages";
  EXPECT_EQ(hb.seq_gaps_backwards, 0);
  const std::string dst_hb = last_line(read_file(dst_serial), "TW-HB ");
  EXPECT_FALSE(dst_hb.empty()) << "no heartbeat on the destination's console";
  EXPECT_EQ(field(dst_hb, "errors"), 0) << dst_hb;
  EXPECT_EQ(read_file(dst_serial).find("TW-ERROR"), std::string::npos);

  // --- quit both; nothing left ---
  std::optional<ExitStatus> src_exit, dst_exit;
  src->stop(10s, [&](const ExitStatus& s) { src_exit = s; });
  dst->stop(10s, [&](const ExitStatus& s) { dst_exit = s; });
  ASSERT_TRUE(run_until(io, [&] { return src_exit && dst_exit; }, 60s));
  EXPECT_EQ(src_exit->code, 0) << src_exit->describe();
  EXPECT_EQ(dst_exit->code, 0) << dst_exit->describe();
  EXPECT_NE(::kill(src->pid(), 0), 0);
  EXPECT_NE(::kill(dst->pid(), 0), 0);

  // --- the record ---
  std::string seq_src, seq_dst;
  for (const auto& e : src_events) seq_src += (seq_src.empty() ? "" : ", ") + e;
  for (const auto& e : dst_events) seq_dst += (seq_dst.empty() ? "" : ", ") + e;
  std::printf("qemu.migrate: boot to first heartbeat %.0f ms\n", boot_ms);
  std::printf("qemu.migrate: passes %d (MIGRATION_PASS), %zu query-migrate polls\n", passes, polls.size());
  std::printf("qemu.migrate: source events: %s\n", seq_src.c_str());
  std::printf("qemu.migrate: destination events: %s\n", seq_dst.c_str());
  std::printf("qemu.migrate: held at 1 ms (max-bandwidth 16 MiB/s) for %d passes, %llu bytes remaining; after raising to 300 ms: STOP +%.0f ms, "
              "pre-switchover +%.0f ms, completed +%.0f ms (incl. our migrate-continue)\n",
              passes_at_raise, static_cast<unsigned long long>(remaining_at_raise), t_stop ? ms_since(t_raise, *t_stop) : -1.0,
              ms_since(t_raise, *t_pre), ms_since(t_raise, *t_src_done));
  std::printf("qemu.migrate: total-time %llu ms (migrate to completed on our clock %.0f ms), downtime %llu ms, "
              "setup %llu ms, transferred %llu B, normal %llu pages, duplicate %llu pages, dirty-sync-count %llu, "
              "downtime-bytes %llu\n",
              static_cast<unsigned long long>(*done->total_time_ms), ms_since(t_migrate, *t_src_done),
              static_cast<unsigned long long>(*done->downtime_ms),
              static_cast<unsigned long long>(done->setup_time_ms.value_or(0)),
              static_cast<unsigned long long>(done->ram->transferred),
              static_cast<unsigned long long>(done->ram->normal),
              static_cast<unsigned long long>(done->ram->duplicate),
              static_cast<unsigned long long>(done->ram->dirty_sync_count),
              static_cast<unsigned long long>(done->ram->downtime_bytes));
  std::printf("qemu.migrate: pmemsave x2 %.0f ms, %lld differing pages; TCP heartbeat %lld lines, errors %lld\n",
              dump_ms, diff, hb.lines, hb.errors);
  for (const auto& e : tl.entries) std::printf("  %s\n", e.c_str());
}

}  // namespace
}  // namespace tideway::testing

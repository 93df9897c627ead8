// QemuVm's process handling with stand-in "QEMU" scripts (no root, no
// real QEMU; tests/agent/qemu_migrate_test.cpp runs the real one): launch
// errors, QEMU's own error reported with its log, exit notification, stop
// escalating from SIGTERM to SIGKILL, the destructor killing a running VM,
// the wrapper prefix, and the run dir checks.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>

#include "agent/qemu_vm.h"
#include "tests/agent/fake_qmp_server.h"

namespace tideway::testing {
namespace {

using namespace agent;
using proto::Errc;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct QemuVmTest : ::testing::Test {
  boost::asio::io_context io;
  std::string dir;
  VmSpec spec;

  void SetUp() override {
    char tmpl[] = "/tmp/h5-qemuvm.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    spec.name = "fake";
    spec.memory_bytes = 524280ull * 1024;
    spec.kernel = "/nonexistent/vmlinuz";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  // A stand-in for qemu-system-x86_64: a shell script with this body.
  std::string script(const std::string& name, const std::string& body) {
    const std::string path = dir + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    fs::permissions(path, fs::perms::owner_all);
    return path;
  }
  QemuVmOptions options(const std::string& binary) {
    QemuVmOptions o;
    o.qemu_binary = binary;
    o.run_dir = dir + "/run";
    o.die_with_parent = true;
    return o;
  }
  std::shared_ptr<QemuVm> launch(const QemuVmOptions& o) {
    auto r = QemuVm::launch(io, spec, o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
    return r.ok() ? r.value() : nullptr;
  }
};

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

TEST_F(QemuVmTest, BinaryNotFound) {
  auto r = QemuVm::launch(io, spec, options("/nonexistent/qemu-system-x86_64"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kInvalid);
  EXPECT_NE(r.error().detail.find("not found"), std::string::npos) << r.error().detail;
}

TEST_F(QemuVmTest, QemuErrorComesWithItsLog) {
  auto bin = script("qemu-bad", "echo \"qemu-system-x86_64: -blockdev x: Could not open '/nope'\" >&2\nexit 1");
  auto vm = launch(options(bin));
  ASSERT_TRUE(vm);
  std::optional<ExitStatus> exited;
  vm->on_exit([&](const ExitStatus& st) { exited = st; });
  std::optional<proto::Result<void>> r;
  vm->connect([&](proto::Result<void> res) { r = std::move(res); }, 10000ms);
  ASSERT_TRUE(run_until(io, [&] { return r.has_value() && exited.has_value(); }));
  ASSERT_FALSE(r->ok());
  EXPECT_NE(r->error().detail.find("exit 1 before QMP was up"), std::string::npos) << r->error().detail;
  EXPECT_NE(r->error().detail.find("Could not open '/nope'"), std::string::npos) << r->error().detail;
  EXPECT_EQ(exited->code, 1);
  EXPECT_TRUE(vm->exited());
  EXPECT_FALSE(alive(vm->pid()));
  // After the exit, on_exit answers at once.
  bool late = false;
  vm->on_exit([&](const ExitStatus&) { late = true; });
  ASSERT_TRUE(run_until(io, [&] { return late; }));
}

TEST_F(QemuVmTest, ArgvReachesTheProcessThroughTheWrapper) {
  auto bin = script("qemu-echo", "for a in \"$@\"; do echo \"$a\"; done > \"$(dirname \"$0\")/args\"\nexit 0");
  auto o = options(bin);
  o.wrapper = {"/usr/bin/env"};  // env execs in place, as `ip netns exec` does
  o.mode = LaunchMode::kIncoming;
  auto vm = launch(o);
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->argv()[0], "/usr/bin/env");
  EXPECT_EQ(vm->argv()[1], bin);
  std::optional<ExitStatus> exited;
  vm->on_exit([&](const ExitStatus& st) { exited = st; });
  ASSERT_TRUE(run_until(io, [&] { return exited.has_value(); }));
  EXPECT_EQ(exited->code, 0);
  std::ifstream in(dir + "/args");
  std::vector<std::string> got;
  for (std::string l; std::getline(in, l);) got.push_back(l);
  const std::vector<std::string> want(vm->argv().begin() + 2, vm->argv().end());
  EXPECT_EQ(got, want);
  EXPECT_NE(std::find(got.begin(), got.end(), "socket,id=qmp,path=" + dir + "/run/qmp.sock,server=on,wait=off"),
            got.end());
}

TEST_F(QemuVmTest, StopSendsTermThenKill) {
  // Ignores SIGTERM; QMP never comes up, so stop() starts with SIGTERM.
  auto bin = script("qemu-stubborn", "trap '' TERM\nwhile :; do sleep 0.05; done");
  auto vm = launch(options(bin));
  ASSERT_TRUE(vm);
  ::usleep(200 * 1000);  // let the shell install its trap
  std::optional<ExitStatus> st;
  const auto t0 = std::chrono::steady_clock::now();
  vm->stop(300ms, [&](const ExitStatus& s) { st = s; });
  ASSERT_TRUE(run_until(io, [&] { return st.has_value(); }));
  const auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(st->signal, SIGKILL) << st->describe();
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 3000ms);
}

TEST_F(QemuVmTest, StopWithSigterm) {
  auto bin = script("qemu-sleepy", "exec sleep 100");
  auto vm = launch(options(bin));
  ASSERT_TRUE(vm);
  std::optional<ExitStatus> st;
  vm->stop(5000ms, [&](const ExitStatus& s) { st = s; });
  ASSERT_TRUE(run_until(io, [&] { return st.has_value(); }));
  EXPECT_EQ(st->signal, SIGTERM) << st->describe();
  EXPECT_EQ(st->describe(), "killed by signal 15 (Terminated)");
}

TEST_F(QemuVmTest, DestroyingTheVmKillsQemu) {
  auto bin = script("qemu-sleepy", "exec sleep 100");
  auto vm = launch(options(bin));
  ASSERT_TRUE(vm);
  const pid_t pid = vm->pid();
  ASSERT_TRUE(alive(pid));
  vm.reset();
  EXPECT_FALSE(alive(pid));  // killed and reaped, not a zombie
}

TEST_F(QemuVmTest, RunDirChecks) {
  auto bin = script("qemu-sleepy", "exec sleep 100");
  auto o = options(bin);
  o.run_dir = "relative/run";
  EXPECT_FALSE(QemuVm::launch(io, spec, o).ok());
  o.run_dir = dir + "/" + std::string(120, 'r');
  auto r = QemuVm::launch(io, spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("too long for a unix socket path"), std::string::npos);
  // A regular file where the socket goes is refused, and left alone.
  o.run_dir = dir + "/run";
  fs::create_directories(o.run_dir);
  std::ofstream(o.run_dir + "/qmp.sock") << "precious";
  r = QemuVm::launch(io, spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("not a socket"), std::string::npos);
  EXPECT_EQ(fs::file_size(o.run_dir + "/qmp.sock"), 8u);
}

TEST_F(QemuVmTest, LiveSocketIsRefusedStaleOneReplaced) {
  auto bin = script("qemu-sleepy", "exec sleep 100");
  auto o = options(bin);
  fs::create_directories(o.run_dir);
  // Someone (another QEMU) listens on the socket: refused.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  const std::string sock = o.run_dir + "/qmp.sock";
  std::strncpy(a.sun_path, sock.c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  auto r = QemuVm::launch(io, spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("already listening"), std::string::npos);
  // Nobody listens any more (a killed QEMU's socket): replaced.
  ::close(fd);
  auto vm = launch(o);
  ASSERT_TRUE(vm);
  EXPECT_FALSE(fs::exists(sock));
}

}  // namespace
}  // namespace tideway::testing

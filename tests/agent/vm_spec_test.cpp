// VmSpec: TOML parsed strictly (every bad input a clear error naming the
// key), memory sizes, and the QEMU argv built from a spec for each launch
// mode.
#include <gtest/gtest.h>

#include <algorithm>

#include "agent/vm_spec.h"

namespace tideway::testing {
namespace {

using namespace agent;
using proto::Errc;

const char* kFull = R"(
name = "web1"
memory = "524280K"
smp = 2
kernel = "/srv/guest/vmlinuz"
initrd = "/srv/guest/initramfs.cpio.gz"
append = "console=ttyS0 tw.mem_mb=64"
serial_log = "/var/log/tideway/web1,serial.log"
extra_args = ["-no-reboot"]

[[disks]]
socket = "/run/tideway/nbd/web1.sock"
export = "web1"

[[disks]]
socket = "/run/tideway/nbd/data.sock"
read_only = true

[[nics]]
mac = "52:54:00:AB:00:05"
tap = "tap-web1"
bridge = "br-site"
ip = "10.0.0.5"
)";

VmSpec parse_ok(const std::string& text) {
  auto r = parse_vm_spec(text, "vm.toml");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().detail);
  return r.ok() ? r.value() : VmSpec{};
}

// The error for `text`, which must not parse.
std::string parse_error(const std::string& text) {
  auto r = parse_vm_spec(text, "vm.toml");
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, Errc::kInvalid);
  return r.error().detail;
}

const std::string kMinimal = "name = \"a\"\nmemory = \"524280K\"\nkernel = \"/k\"\n";

TEST(VmSpecParse, FullExample) {
  VmSpec s = parse_ok(kFull);
  EXPECT_EQ(s.name, "web1");
  EXPECT_EQ(s.memory_bytes, 524280ull * 1024);
  EXPECT_EQ(s.machine, "q35");
  EXPECT_EQ(s.accel, "tcg");
  EXPECT_EQ(s.smp, 2u);
  EXPECT_EQ(s.kernel, "/srv/guest/vmlinuz");
  EXPECT_EQ(s.append, "console=ttyS0 tw.mem_mb=64");
  ASSERT_EQ(s.disks.size(), 2u);
  EXPECT_EQ(s.disks[0].export_name, "web1");
  EXPECT_FALSE(s.disks[0].read_only);
  EXPECT_TRUE(s.disks[1].read_only);
  EXPECT_EQ(s.disks[1].export_name, "");
  ASSERT_EQ(s.nics.size(), 1u);
  EXPECT_EQ(s.nics[0].mac, "52:54:00:ab:00:05");  // normalised to lower case
  EXPECT_EQ(s.nics[0].bridge, "br-site");
  EXPECT_EQ(s.nics[0].ip, "10.0.0.5");
  EXPECT_EQ(s.extra_args, std::vector<std::string>{"-no-reboot"});
}

TEST(VmSpecParse, Defaults) {
  VmSpec s = parse_ok(kMinimal);
  EXPECT_EQ(s.smp, 1u);
  EXPECT_EQ(s.machine, "q35");
  EXPECT_TRUE(s.disks.empty());
  EXPECT_TRUE(s.nics.empty());
  EXPECT_TRUE(s.serial_log.empty());
}

TEST(VmSpecParse, MemorySizes) {
  struct Case {
    const char* in;
    uint64_t bytes;
  } ok[] = {{"524280K", 524280ull << 10}, {"524280k", 524280ull << 10}, {"500M", 500ull << 20},
            {"500", 500ull << 20},        {"2G", 2ull << 30},           {"1T", 1ull << 40}};
  for (const auto& c : ok) {
    auto r = parse_memory_size(c.in);
    ASSERT_TRUE(r.ok()) << c.in << ": " << r.error().detail;
    EXPECT_EQ(r.value(), c.bytes) << c.in;
  }
  for (const char* bad : {"", "K", "12", "524281K", "1.5G", "-1G", "2P", "512 M", "2048G", "99999999999999999G",
                          "1000000000000000000"}) {
    auto r = parse_memory_size(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
}

TEST(VmSpecParse, TcgRamMultipleOf256KiBIsRefused) {
  // QEMU 7.2 TCG loses dirty pages at such sizes (DESIGN.md section 7).
  auto e = parse_error("name = \"a\"\nmemory = \"512M\"\nkernel = \"/k\"\n");
  EXPECT_NE(e.find("multiple of 256 KiB"), std::string::npos) << e;
  EXPECT_NE(e.find("524280K"), std::string::npos) << e;
  EXPECT_EQ(e.rfind("vm.toml:2: memory:", 0), 0u) << e;
  EXPECT_FALSE(parse_vm_spec("name = \"a\"\nmemory = 512\nkernel = \"/k\"\n", "x").ok());
  // Under KVM it is fine.
  VmSpec s = parse_ok("name = \"a\"\nmemory = 512\naccel = \"kvm\"\nkernel = \"/k\"\n");
  EXPECT_EQ(s.memory_bytes, 512ull << 20);
}

TEST(VmSpecParse, ErrorsNameTheKeyAndLine) {
  struct Case {
    std::string text;
    std::string expect;  // a substring of the error
  } cases[] = {
      {"memory = \"524280K\"\nkernel = \"/k\"\n", "name: required"},
      {"name = \"a b\"\n" + kMinimal.substr(kMinimal.find('\n') + 1), "vm.toml:1: name: 1-64 characters"},
      {"name = \"a\"\nkernel = \"/k\"\n", "memory: required"},
      {kMinimal + "colour = \"blue\"\n", "vm.toml:4: colour: unknown key"},
      {kMinimal + "smp = 0\n", "smp: expected an integer 1 .. 64"},
      {kMinimal + "smp = \"2\"\n", "smp: expected an integer"},
      {kMinimal + "accel = \"hvf\"\n", "accel: tcg or kvm"},
      {kMinimal + "machine = \"q35,x=1\"\n", "machine:"},
      {"name = \"a\"\nmemory = \"524280K\"\nkernel = \"vmlinuz\"\n", "kernel: expected an absolute path"},
      {"name = \"a\"\nmemory = \"524280K\"\ninitrd = \"/i\"\n[[disks]]\nsocket = \"/s\"\n", "initrd: needs kernel"},
      {"name = \"a\"\nmemory = \"524280K\"\n", "nothing to boot"},
      {kMinimal + "serial_log = \"/tmp/a\\nb\"\n", "serial_log: expected an absolute path"},
      {kMinimal + "[[disks]]\nexport = \"x\"\n", "disks[0].socket: give exactly one of socket"},
      {kMinimal + "[[disks]]\nsocket = \"/s\"\nimage = \"a.img\"\n", "give exactly one of socket"},
      {kMinimal + "[[disks]]\nimage = \"../a.img\"\n", "disks[0].image: expected a file name"},
      {kMinimal + "[[disks]]\nimage = \".a\"\n", "no leading dot"},
      {kMinimal + "[[disks]]\nimage = \"a.img\"\nsize = \"2X\"\n", "disks[0].size: expected a size"},
      {kMinimal + "[[disks]]\nsocket = \"/s\"\nsize = \"2G\"\n", "size: only with image"},
      {kMinimal + "[[disks]]\nimage = \"a.img\"\nexport = \"e\"\n", "export: only with socket"},
      {kMinimal + "[[disks]]\nsocket = \"rel.sock\"\n", "disks[0].socket: expected an absolute path"},
      {kMinimal + "[[disks]]\nsocket = \"/" + std::string(120, 's') + "\"\n", "longer than a unix socket path"},
      {kMinimal + "[[disks]]\nsocket = \"/s\"\nreadonly = true\n", "vm.toml:6: disks[0].readonly: unknown key"},
      {kMinimal + "[[disks]]\nsocket = \"/s\"\nread_only = \"yes\"\n", "read_only: expected true or false"},
      {kMinimal + "disks = \"/s\"\n", "disks: expected an array of tables"},
      {kMinimal + "[[nics]]\ntap = \"t0\"\n", "nics[0].mac: required"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00\"\ntap = \"t0\"\n", "nics[0].mac: a unicast MAC"},
      {kMinimal + "[[nics]]\nmac = \"01:00:5e:00:00:01\"\ntap = \"t0\"\n", "nics[0].mac: a unicast MAC"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:0g\"\ntap = \"t0\"\n", "nics[0].mac"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:01\"\ntap = \"a-very-long-tap-name\"\n", "nics[0].tap:"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:01\"\ntap = \"t0\"\n[[nics]]\nmac = \"52:54:00:00:00:02\"\n"
                  "tap = \"t0\"\n",
       "nics[1].tap: used by another NIC"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:01\"\ntap = \"t0\"\n[[nics]]\nmac = \"52:54:00:00:00:01\"\n"
                  "tap = \"t1\"\n",
       "nics[1].mac: used by another NIC"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:01\"\ntap = \"t0\"\nbridge = \"br 0\"\n", "nics[0].bridge"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:01\"\ntap = \"t0\"\nip = \"10.0.0.5/24\"\n", "nics[0].ip: an IPv4"},
      {kMinimal + "[[nics]]\nmac = \"52:54:00:00:00:01\"\ntap = \"t0\"\nip = \"10.0.0.256\"\n", "nics[0].ip"},
      {kMinimal + "extra_args = [\"-S\"]\n", "extra_args: \"-S\" is set by the launcher"},
      {kMinimal + "extra_args = [\"--incoming\"]\n", "is set by the launcher"},
      {kMinimal + "extra_args = [\"-qmp\", \"stdio\"]\n", "is set by the launcher"},
      {kMinimal + "extra_args = [\"-daemonize\"]\n", "is set by the launcher"},
      {kMinimal + "extra_args = [1]\n", "extra_args: expected an array of strings"},
      {kMinimal + "extra_args = \"-no-reboot\"\n", "extra_args: expected an array of strings"},
      {"name = \"a\"\nmemory = [1]\nkernel = \"/k\"\n", "memory: expected a size"},
      {"name = \"a\"\nmemory = \"12Q\"\nkernel = \"/k\"\n", "unknown unit"},
      {"name = \"a\nmemory = 1\n", "vm.toml:1:"},  // TOML syntax error, with the line
  };
  for (const auto& c : cases) {
    const std::string e = parse_error(c.text);
    EXPECT_NE(e.find(c.expect), std::string::npos) << "input:\n" << c.text << "\nerror: " << e;
  }
}

TEST(VmSpecParse, AgentServedImageDisk) {
  VmSpec s = parse_ok(kMinimal + "[[disks]]\nimage = \"web1-root.img\"\nsize = \"2G\"\n[[disks]]\nimage = \"b.img\"\n");
  ASSERT_EQ(s.disks.size(), 2u);
  EXPECT_EQ(s.disks[0].image, "web1-root.img");
  EXPECT_EQ(s.disks[0].create_bytes, uint64_t{2} << 30);
  EXPECT_TRUE(s.disks[0].socket.empty());  // the agent fills it in
  EXPECT_EQ(s.disks[1].create_bytes, 0u);  // must exist
}

TEST(VmSpecParse, LoadMissingFile) {
  auto r = load_vm_spec("/nonexistent/h5/vm.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("/nonexistent/h5/vm.toml"), std::string::npos);
}

TEST(VmSpecArgv, RunMode) {
  VmSpec s = parse_ok(kFull);
  LaunchArgs la;
  la.qmp_socket = "/run/tw/web1/qmp.sock";
  const std::vector<std::string> expect = {
      "qemu-system-x86_64",
      "-name", "web1",
      "-machine", "q35",
      "-accel", "tcg",
      "-smp", "2",
      "-m", "524280K",
      "-nodefaults", "-no-user-config", "-display", "none",
      "-kernel", "/srv/guest/vmlinuz",
      "-initrd", "/srv/guest/initramfs.cpio.gz",
      "-append", "console=ttyS0 tw.mem_mb=64",
      "-chardev", "file,id=serial0,path=/var/log/tideway/web1,,serial.log",  // comma doubled
      "-serial", "chardev:serial0",
      "-chardev", "socket,id=qmp,path=/run/tw/web1/qmp.sock,server=on,wait=off",
      "-mon", "chardev=qmp,mode=control",
      "-blockdev", "driver=nbd,node-name=disk0,server.type=unix,server.path=/run/tideway/nbd/web1.sock,export=web1",
      "-device", "virtio-blk-pci,drive=disk0,id=vdisk0",
      "-blockdev", "driver=nbd,node-name=disk1,server.type=unix,server.path=/run/tideway/nbd/data.sock,read-only=on",
      "-device", "virtio-blk-pci,drive=disk1,id=vdisk1",
      "-netdev", "tap,id=net0,ifname=tap-web1,script=no,downscript=no",
      "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:ab:00:05,romfile=,id=nic0",
      "-no-reboot",
  };
  EXPECT_EQ(qemu_argv(s, la), expect);
}

TEST(VmSpecArgv, Modes) {
  VmSpec s = parse_ok(kMinimal);
  LaunchArgs la;
  la.qmp_socket = "/q.sock";
  la.qemu_binary = "/usr/bin/qemu-system-x86_64";
  auto has = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  auto run = qemu_argv(s, la);
  EXPECT_EQ(run[0], "/usr/bin/qemu-system-x86_64");
  EXPECT_FALSE(has(run, "-S"));
  EXPECT_FALSE(has(run, "-incoming"));
  la.mode = LaunchMode::kPaused;
  auto paused = qemu_argv(s, la);
  EXPECT_TRUE(has(paused, "-S"));
  EXPECT_FALSE(has(paused, "-incoming"));
  la.mode = LaunchMode::kIncoming;
  auto in = qemu_argv(s, la);
  auto it = std::find(in.begin(), in.end(), "-incoming");
  ASSERT_NE(it, in.end());
  EXPECT_EQ(*(it + 1), "defer");
  EXPECT_FALSE(has(in, "-S"));
  la.paused_after_incoming = true;
  EXPECT_TRUE(has(qemu_argv(s, la), "-S"));
  // Both sides of a migration get the same devices: only the mode differs.
  la.mode = LaunchMode::kRun;
  la.paused_after_incoming = false;
  auto a = qemu_argv(s, la);
  la.mode = LaunchMode::kIncoming;
  auto b = qemu_argv(s, la);
  b.erase(std::find(b.begin(), b.end(), "-incoming"), std::find(b.begin(), b.end(), "-incoming") + 2);
  EXPECT_EQ(a, b);
}

TEST(VmSpecArgv, DiskBootWithoutKernel) {
  VmSpec s = parse_ok("name = \"d\"\nmemory = \"1048572K\"\n[[disks]]\nsocket = \"/s,1\"\nexport = \"e,x\"\n");
  LaunchArgs la;
  la.qmp_socket = "/q,.sock";
  auto a = qemu_argv(s, la);
  EXPECT_EQ(std::find(a.begin(), a.end(), "-kernel"), a.end());
  EXPECT_NE(std::find(a.begin(), a.end(), "virtio-blk-pci,drive=disk0,id=vdisk0,bootindex=0"), a.end());
  EXPECT_NE(std::find(a.begin(), a.end(),
                      "driver=nbd,node-name=disk0,server.type=unix,server.path=/s,,1,export=e,,x"),
            a.end());
  EXPECT_NE(std::find(a.begin(), a.end(), "socket,id=qmp,path=/q,,.sock,server=on,wait=off"), a.end());
  EXPECT_EQ(qemu_opt_escape(",a,,b"), ",,a,,,,b");
}

}  // namespace
}  // namespace tideway::testing

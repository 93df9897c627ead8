// The FUSE tap as production uses it: a loop device over the exported file,
// ext4 on the loop device, programs on ext4. Proves end to end that an fsync
// on ext4 reaches BlockTarget::flush after the file's blocks, that the
// backing file holds a clean filesystem afterwards, that a killed export
// gives EIO (not a hang) and cleans up, and that PostgreSQL runs on it.
// Root tests (LABELS root), run alone.
#include <sys/stat.h>

#include <cinttypes>

#include "agent/fuse_export.h"
#include "tests/agent/fuse_test_support.h"

namespace tideway::agent::test {
namespace {

using Kind = RecordingTarget::Kind;
constexpr uint64_t kVolSize = 512ull << 20;

class FuseExt4Test : public ::testing::Test {
 protected:
  void SetUp() override {
    require_root_and_fuse();
    ASSERT_FALSE(dir_.path().empty());
  }
  TempDir dir_;
};

struct Extent {
  uint64_t offset, length;  // bytes on the device
};

// The device extents of `file` (filefrag -v, in the filesystem's blocks).
std::vector<Extent> device_extents(const std::string& file) {
  auto r = run("filefrag -v " + file);
  std::vector<Extent> out;
  uint64_t block = 4096;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (auto at = line.find("blocksize of "); at != std::string::npos) block = std::stoull(line.substr(at + 13));
    // " 0:  0..  255:  34816..  35071:  256: ..."
    unsigned idx;
    uint64_t l0, l1, p0, p1;
    if (std::sscanf(line.c_str(), " %u: %" SCNu64 "..%" SCNu64 ": %" SCNu64 "..%" SCNu64 ":", &idx, &l0, &l1, &p0,
                    &p1) == 5)
      out.push_back({p0 * block, (p1 - p0 + 1) * block});
  }
  return out;
}

// The number after `key` in `text`, or -1.
double number_after(const std::string& text, const std::string& key) {
  auto at = text.find(key);
  if (at == std::string::npos) return -1;
  return std::strtod(text.c_str() + at + key.size(), nullptr);
}

bool write_file(const std::string& path, const std::vector<uint8_t>& data, bool do_fsync) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  if (do_fsync) ok = ok && ::fsync(fd) == 0;
  return ::close(fd) == 0 && ok;
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// ext4 over loop (--direct-io=on, as documented) over the export, served in
// this process with a recording fake below BlockTarget.
TEST_F(FuseExt4Test, Ext4FsyncReachesFlushAndBackingFileIsClean) {
  const std::string backing = dir_.path() + "/backing.img";
  const std::string ext4 = dir_.sub("ext4");
  std::map<std::string, std::vector<uint8_t>> files;
  {
    auto vol = LocalVolume::open(backing, kVolSize);
    ASSERT_TRUE(vol.ok()) << vol.error().detail;
    RecordingTarget rec(**vol);
    FuseExportOptions o;
    o.mountpoint = dir_.sub("fuse");
    auto exp = FuseExport::start(rec, o);
    ASSERT_TRUE(exp.ok()) << exp.error().detail;
    LoopDevice loop((*exp)->file_path(), /*direct_io=*/true);
    ASSERT_TRUE(loop.ok()) << loop.error();
    auto mk = run("mkfs.ext4 -q -F " + loop.dev());
    ASSERT_EQ(mk.status, 0) << mk.out;
    bool discarded = false;
    for (auto& e : rec.events()) discarded |= e.kind == Kind::kDiscardDone;
    EXPECT_TRUE(discarded) << "mkfs's discard did not reach BlockTarget::discard";
    Mount m(loop.dev(), ext4);
    ASSERT_TRUE(m.ok()) << m.error();

    // One fsync'd file: its blocks reached the target before the flush.
    const std::string f1 = ext4 + "/fsynced.bin";
    files[f1] = random_bytes(3 << 20, 11);
    const size_t before = rec.count();
    ASSERT_TRUE(write_file(f1, files[f1], /*do_fsync=*/true));
    auto ev = rec.events();
    size_t flush_call = ev.size();
    for (size_t i = before; i < ev.size(); ++i)
      if (ev[i].kind == Kind::kFlushCall) flush_call = i;
    ASSERT_LT(flush_call, ev.size()) << "fsync on ext4 did not reach BlockTarget::flush";
    auto extents = device_extents(f1);
    ASSERT_FALSE(extents.empty());
    uint64_t in_file = 0;
    for (auto& x : extents) {
      EXPECT_TRUE(covered_by_writes(ev, flush_call, x.offset, x.length))
          << "extent at " << x.offset << " not written before the flush";
      // And the bytes there are the file's, in the backing file.
      auto want = std::vector<uint8_t>(files[f1].begin() + static_cast<long>(in_file),
                                       files[f1].begin() + static_cast<long>(in_file + x.length));
      EXPECT_EQ(read_file_range(backing, x.offset, x.length), want) << "extent at " << x.offset;
      in_file += x.length;
    }
    EXPECT_EQ(in_file, files[f1].size());

    // More files without fsync: `sync` and unmount must carry them.
    ASSERT_EQ(::mkdir((ext4 + "/d").c_str(), 0755), 0);
    for (int i = 0; i < 20; ++i) {
      std::string p = ext4 + "/d/f" + std::to_string(i);
      files[p] = random_bytes(static_cast<size_t>(1000 + i * 37000), static_cast<uint32_t>(20 + i));
      ASSERT_TRUE(write_file(p, files[p], false));
    }
    EXPECT_EQ(run("sync").status, 0);
    ASSERT_TRUE(m.unmount()) << "ext4 did not unmount cleanly";
    loop.detach();
    (*exp)->stop();
  }
  // The backing file alone: a clean filesystem holding the same files.
  auto fsck = run("e2fsck -fn " + backing);
  EXPECT_EQ(fsck.status, 0) << fsck.out;
  LoopDevice direct(backing, false);
  ASSERT_TRUE(direct.ok()) << direct.error();
  Mount m(direct.dev(), ext4, "ro");
  ASSERT_TRUE(m.ok()) << m.error();
  for (auto& [path, data] : files) EXPECT_EQ(slurp(path), data) << path;
}

// A killed export: users get EIO, not a hang, and everything comes apart.
TEST_F(FuseExt4Test, KilledExportGivesEioAndTearsDown) {
  const std::string fuse_mnt = dir_.sub("fuse");
  const std::string ext4 = dir_.sub("ext4");
  Child exporter({TIDEWAY_FUSE_EXPORT_BIN, "--size", std::to_string(kVolSize), "--log-level", "warn",
                  dir_.path() + "/backing.img", fuse_mnt});
  ASSERT_GT(exporter.pid(), 0);
  const std::string ready = exporter.wait_line("ready ", std::chrono::seconds(20));
  ASSERT_EQ(ready, "ready " + fuse_mnt + "/disk.img");
  std::string loop_dev;
  {
    LoopDevice loop(fuse_mnt + "/disk.img", true);
    ASSERT_TRUE(loop.ok()) << loop.error();
    loop_dev = loop.dev();
    ASSERT_EQ(run("mkfs.ext4 -q -F " + loop.dev()).status, 0);
    Mount m(loop.dev(), ext4);
    ASSERT_TRUE(m.ok()) << m.error();
    ASSERT_TRUE(write_file(ext4 + "/before", random_bytes(1 << 20, 1), true));

    ASSERT_EQ(::kill(exporter.pid(), SIGKILL), 0);
    ASSERT_TRUE(exporter.wait_exit(std::chrono::seconds(10)));
    // `timeout` turns a hang into exit 137, distinguishable from an I/O error.
    auto w = run("timeout -s KILL 60 dd if=/dev/zero of=" + ext4 + "/after bs=64k count=16 oflag=direct conv=fsync");
    EXPECT_NE(w.status, 0) << "write after the kill succeeded: " << w.out;
    EXPECT_NE(w.status, 137) << "write after the kill hung";
    EXPECT_NE(w.out.find("Input/output error"), std::string::npos) << w.out;
    auto r = run("timeout -s KILL 60 dd if=" + loop.dev() + " of=/dev/null bs=4k count=1 skip=4000 iflag=direct");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.status, 137) << "read after the kill hung";
    EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
    // Teardown in order: ext4, the loop device, the dead FUSE mount.
    m.unmount();
    loop.detach();
  }
  EXPECT_FALSE(is_mounted(ext4));
  EXPECT_NE(run("losetup " + loop_dev).status, 0) << loop_dev << " still attached";
  auto u = run("fusermount3 -u -z " + fuse_mnt);
  EXPECT_EQ(u.status, 0) << u.out;
  EXPECT_FALSE(is_mounted(fuse_mnt));
}

// Optional workload: PostgreSQL 15 (as user postgres) on ext4 over the export.
TEST_F(FuseExt4Test, PostgresPgbenchRuns) {
  const std::string bin = "/usr/lib/postgresql/15/bin";
  ASSERT_EQ(::access((bin + "/pgbench").c_str(), X_OK), 0) << "PostgreSQL 15 is not installed";
  ::chmod(dir_.path().c_str(), 0755);  // postgres must reach its data dir
  const std::string fuse_mnt = dir_.sub("fuse");
  const std::string ext4 = dir_.sub("ext4");
  const std::string sock = dir_.sub("sock");
  Child exporter({TIDEWAY_FUSE_EXPORT_BIN, "--size", std::to_string(kVolSize), "--log-level", "warn",
                  dir_.path() + "/backing.img", fuse_mnt});
  ASSERT_EQ(exporter.wait_line("ready ", std::chrono::seconds(20)), "ready " + fuse_mnt + "/disk.img");
  LoopDevice loop(fuse_mnt + "/disk.img", true);
  ASSERT_TRUE(loop.ok()) << loop.error();
  ASSERT_EQ(run("mkfs.ext4 -q -F " + loop.dev()).status, 0);
  Mount m(loop.dev(), ext4);
  ASSERT_TRUE(m.ok()) << m.error();
  const std::string data = ext4 + "/pgdata";
  ASSERT_EQ(run("install -d -o postgres -g postgres -m 700 " + data + " && chown postgres " + sock).status, 0);
  const std::string as_pg = "runuser -u postgres -- ";
  const std::string port = "54" + std::to_string(10 + ::getpid() % 80);
  auto init = run(as_pg + bin + "/initdb -A trust -D " + data);
  ASSERT_EQ(init.status, 0) << init.out;
  auto start = run(as_pg + bin + "/pg_ctl -w -t 60 -D " + data + " -l " + data + "/log -o \"-k " + sock + " -p " +
                   port + " -c listen_addresses=''\" start");
  // Stop the server whatever happens below, before the guards unmount.
  struct PgStop {
    std::string cmd;
    ~PgStop() { run(cmd); }
  } stop{as_pg + bin + "/pg_ctl -w -t 60 -D " + data + " -m fast stop"};
  ASSERT_EQ(start.status, 0) << start.out;
  const std::string pgb = as_pg + bin + "/pgbench -h " + sock + " -p " + port + " ";
  auto i = run(pgb + "-i -s 1 postgres");
  ASSERT_EQ(i.status, 0) << i.out;
  auto b = run(pgb + "-c 4 -T 5 postgres");
  ASSERT_EQ(b.status, 0) << b.out;
  const double processed = number_after(b.out, "number of transactions actually processed: ");
  EXPECT_GT(processed, 100) << b.out;
  EXPECT_NE(b.out.find("number of failed transactions: 0 "), std::string::npos) << b.out;
  std::printf("pgbench -c4 -T5: %.0f transactions, tps %.0f\n", processed, number_after(b.out, "tps = "));
  auto count = run(as_pg + bin + "/psql -h " + sock + " -p " + port + " -Atc 'select count(*) from pgbench_accounts' postgres");
  EXPECT_EQ(count.out, "100000\n");
  EXPECT_EQ(run(stop.cmd).status, 0);
}

}  // namespace
}  // namespace tideway::agent::test

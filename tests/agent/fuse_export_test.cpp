// The FUSE tap served in this process, used directly through its file (no
// loop device): what reaches the BlockTarget for each call, in which order,
// and what the file refuses. Root tests (LABELS root).
#include "agent/fuse_export.h"

#include <linux/falloc.h>
#include <sys/stat.h>

#include <dirent.h>

#include <atomic>

#include "tests/agent/fuse_test_support.h"

namespace tideway::agent::test {
namespace {

using Kind = RecordingTarget::Kind;
constexpr uint64_t kVolSize = 64ull << 20;

// A LocalVolume in a temp dir, a recording wrapper, and the export of it.
// Members are destroyed in reverse: the export stops before the targets go.
struct Served {
  explicit Served(FuseCacheMode mode, BlockTarget* below = nullptr) {
    backing = dir.path() + "/backing.img";
    auto v = LocalVolume::open(backing, kVolSize);
    EXPECT_TRUE(v.ok()) << (v.ok() ? "" : v.error().detail);
    if (!v.ok()) return;
    vol = std::move(*v);
    rec = std::make_unique<RecordingTarget>(below != nullptr ? *below : *vol);
    FuseExportOptions o;
    o.mountpoint = dir.sub("mnt");
    o.cache = mode;
    auto e = FuseExport::start(*rec, o);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().detail);
    if (e.ok()) exp = std::move(*e);
  }
  bool ok() const { return exp != nullptr; }
  std::string file() const { return exp->file_path(); }

  TempDir dir;
  std::string backing;
  std::unique_ptr<LocalVolume> vol;
  std::unique_ptr<RecordingTarget> rec;
  std::unique_ptr<FuseExport> exp;
};

class FuseExportModes : public ::testing::TestWithParam<FuseCacheMode> {
 protected:
  void SetUp() override { require_root_and_fuse(); }
};

// fsync on the file is the barrier: BlockTarget::flush is called after every
// write it covers has completed at the target, in every cache mode (with the
// writeback cache the data only leaves the page cache because of the fsync).
TEST_P(FuseExportModes, FsyncFlushesAfterTheWritesItCovers) {
  Served s(GetParam());
  ASSERT_TRUE(s.ok());
  int fd = ::open(s.file().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  constexpr size_t kChunk = 64 << 10;
  const uint64_t offsets[] = {0, 1 << 20, 5 << 20, kVolSize - kChunk, 3 << 20, 4096 * 70};
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < std::size(offsets); ++i) {
    data.push_back(random_bytes(kChunk, static_cast<uint32_t>(i + 1)));
    ASSERT_EQ(::pwrite(fd, data[i].data(), kChunk, static_cast<off_t>(offsets[i])), static_cast<ssize_t>(kChunk));
  }
  const size_t before_fsync = s.rec->count();
  ASSERT_EQ(::fsync(fd), 0) << std::strerror(errno);
  auto ev = s.rec->events();
  // The last flush call made for our fsync, and its completion after it.
  size_t flush_call = ev.size();
  for (size_t i = before_fsync; i < ev.size(); ++i)
    if (ev[i].kind == Kind::kFlushCall) flush_call = i;
  ASSERT_LT(flush_call, ev.size()) << "fsync did not reach BlockTarget::flush";
  bool flush_done = false;
  for (size_t i = flush_call; i < ev.size(); ++i) flush_done |= ev[i].kind == Kind::kFlushDone;
  EXPECT_TRUE(flush_done);
  for (size_t i = 0; i < std::size(offsets); ++i)
    EXPECT_TRUE(covered_by_writes(ev, flush_call, offsets[i], kChunk))
        << "write at " << offsets[i] << " had not completed before the flush";
  // Byte-exact in the backing file, and through the mount.
  for (size_t i = 0; i < std::size(offsets); ++i) {
    EXPECT_EQ(read_file_range(s.backing, offsets[i], kChunk), data[i]) << "backing at " << offsets[i];
    std::vector<uint8_t> back(kChunk);
    ASSERT_EQ(::pread(fd, back.data(), kChunk, static_cast<off_t>(offsets[i])), static_cast<ssize_t>(kChunk));
    EXPECT_EQ(back, data[i]) << "mount at " << offsets[i];
  }
  ::close(fd);
}

// PUNCH_HOLE|KEEP_SIZE (what loop sends for a discard) becomes
// BlockTarget::discard, and the range reads back as zeros.
TEST_P(FuseExportModes, PunchHoleBecomesDiscard) {
  Served s(GetParam());
  ASSERT_TRUE(s.ok());
  int fd = ::open(s.file().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto data = random_bytes(1 << 20, 7);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 2 << 20), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (2 << 20) + 4096, 256 << 10), 0)
      << std::strerror(errno);
  auto ev = s.rec->events();
  bool discarded = false;
  for (auto& e : ev) discarded |= e.kind == Kind::kDiscardDone && e.offset == (2u << 20) + 4096 && e.length == (256u << 10);
  EXPECT_TRUE(discarded) << "no discard of the punched range reached the target";
  std::vector<uint8_t> expect = data;
  std::fill(expect.begin() + 4096, expect.begin() + 4096 + (256 << 10), 0);
  EXPECT_EQ(read_file_range(s.backing, 2 << 20, data.size()), expect);
  std::vector<uint8_t> back(data.size());
  ASSERT_EQ(::pread(fd, back.data(), back.size(), 2 << 20), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, expect);
  // Other fallocate modes: preallocation is a no-op, zero range unsupported.
  EXPECT_EQ(::fallocate(fd, 0, 0, 1 << 20), 0);
  EXPECT_EQ(::fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(Cache, FuseExportModes,
                         ::testing::Values(FuseCacheMode::kDirectIo, FuseCacheMode::kPageCache,
                                           FuseCacheMode::kWriteback),
                         [](const ::testing::TestParamInfo<FuseCacheMode>& p) { return std::string(fuse_cache_mode_name(p.param)); });

class FuseExportTest : public ::testing::Test {
 protected:
  void SetUp() override { require_root_and_fuse(); }
};

// The mount holds exactly one file of the volume's size; the namespace and
// the size are fixed; writes stop at the end like on a block device.
TEST_F(FuseExportTest, OneFixedSizeFile) {
  Served s(FuseCacheMode::kDirectIo);
  ASSERT_TRUE(s.ok());
  struct stat st {};
  ASSERT_EQ(::stat(s.file().c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kVolSize);
  std::vector<std::string> names;
  DIR* d = ::opendir(s.exp->mountpoint().c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "disk.img"}));

  int fd = ::open(s.file().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::ftruncate(fd, 4096), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(kVolSize)), 0) << "a no-op size change is fine";
  auto data = random_bytes(8192, 3);
  EXPECT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(kVolSize)), -1);
  EXPECT_EQ(errno, ENOSPC);
  EXPECT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(kVolSize - 4096)), 4096)
      << "a write across the end is cut short there";
  EXPECT_EQ(read_file_range(s.backing, kVolSize - 4096, 4096), std::vector<uint8_t>(data.begin(), data.begin() + 4096));
  ASSERT_EQ(::stat(s.file().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kVolSize);
  EXPECT_EQ(::fchmod(fd, 0644), 0) << "chmod is accepted (mkfs) and ignored";
  ::close(fd);

  EXPECT_EQ(::open((s.exp->mountpoint() + "/other").c_str(), O_CREAT | O_RDWR, 0600), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::unlink(s.file().c_str()), -1);
  EXPECT_EQ(::open(s.file().c_str(), O_RDWR | O_TRUNC), -1) << "O_TRUNC would empty the volume";
}

// An O_DSYNC file's writes reach the target with fua = true; plain ones not.
TEST_F(FuseExportTest, DsyncWritesAreFua) {
  Served s(FuseCacheMode::kDirectIo);
  ASSERT_TRUE(s.ok());
  auto data = random_bytes(4096, 9);
  int plain = ::open(s.file().c_str(), O_RDWR | O_CLOEXEC);
  int dsync = ::open(s.file().c_str(), O_RDWR | O_DSYNC | O_CLOEXEC);
  ASSERT_GE(plain, 0);
  ASSERT_GE(dsync, 0);
  ASSERT_EQ(::pwrite(plain, data.data(), 4096, 0), 4096);
  ASSERT_EQ(::pwrite(dsync, data.data(), 4096, 8192), 4096);
  ::close(plain);
  ::close(dsync);
  std::map<uint64_t, bool> fua;
  for (auto& e : s.rec->events())
    if (e.kind == Kind::kWriteCall) fua[e.offset] = e.fua;
  ASSERT_TRUE(fua.count(0) && fua.count(8192));
  EXPECT_FALSE(fua[0]);
  EXPECT_TRUE(fua[8192]);
}

// Sync mode: every completion comes 100 ms late from another thread. O_DIRECT
// writes from 8 threads to a loop device over the export (the production
// path: loop submits them asynchronously) must overlap - about one delay in
// all, not 8 - and fsync waits for its own delayed flush.
//
// (pwrite from several threads on the FUSE file itself is serialised by the
// kernel's inode lock: FOPEN_PARALLEL_DIRECT_WRITES is not settable through
// libfuse 3.14. Loop's asynchronous direct I/O does not hold that lock.)
TEST_F(FuseExportTest, DelayedCompletionsOverlap) {
  TempDir dir;
  auto vol = LocalVolume::open(dir.path() + "/backing.img", kVolSize);
  ASSERT_TRUE(vol.ok());
  constexpr auto kDelay = std::chrono::milliseconds(100);
  DelayedTarget delayed(**vol, kDelay);
  FuseExportOptions o;
  o.mountpoint = dir.sub("mnt");
  auto exp = FuseExport::start(delayed, o);
  ASSERT_TRUE(exp.ok()) << exp.error().detail;
  LoopDevice loop((*exp)->file_path(), /*direct_io=*/true);
  ASSERT_TRUE(loop.ok()) << loop.error();

  constexpr int kThreads = 8;
  constexpr size_t kLen = 64 << 10;
  std::vector<int> fds(kThreads);
  for (auto& fd : fds) ASSERT_GE(fd = ::open(loop.dev().c_str(), O_RDWR | O_DIRECT | O_CLOEXEC), 0);
  std::atomic<int> failures{0};
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      auto d = random_bytes(kLen, static_cast<uint32_t>(100 + i));
      void* buf = std::aligned_alloc(4096, kLen);  // O_DIRECT alignment
      std::memcpy(buf, d.data(), kLen);
      if (::pwrite(fds[i], buf, kLen, static_cast<off_t>(i) << 20) != static_cast<ssize_t>(kLen)) ++failures;
      std::free(buf);
    });
  for (auto& t : threads) t.join();
  auto writes = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(failures, 0);
  EXPECT_GE(writes, kDelay);
  EXPECT_LT(writes, kDelay * 4) << "writes were serialized: "
                                << std::chrono::duration_cast<std::chrono::milliseconds>(writes).count() << " ms";
  EXPECT_GE(delayed.max_pending(), kThreads / 2) << "completions never overlapped";

  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(::fsync(fds[0]), 0);
  auto fsync_time = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(fsync_time, kDelay) << "fsync answered before the target's flush completed";
  for (int fd : fds) ::close(fd);
  loop.detach();
  (*exp)->stop();
  for (int i = 0; i < kThreads; ++i)
    EXPECT_EQ(read_file_range(dir.path() + "/backing.img", static_cast<uint64_t>(i) << 20, kLen),
              random_bytes(kLen, static_cast<uint32_t>(100 + i)));
}

// stop() returns while the mount is in use (an open file here, a loop device
// in production): the user gets an error, not a hang.
TEST_F(FuseExportTest, StopWhileInUseDoesNotHang) {
  Served s(FuseCacheMode::kDirectIo);
  ASSERT_TRUE(s.ok());
  int fd = ::open(s.file().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const std::string mnt = s.exp->mountpoint();
  s.exp->stop();
  EXPECT_FALSE(s.exp->running());
  EXPECT_FALSE(is_mounted(mnt));
  char b[4096] = {};
  EXPECT_EQ(::pwrite(fd, b, sizeof b, 0), -1);
  ::close(fd);
}

TEST(FuseExportErrors, BadMountPointsAndNames) {
  TempDir dir;
  auto vol = LocalVolume::open(dir.path() + "/backing.img", 1 << 20);
  ASSERT_TRUE(vol.ok());
  FuseExportOptions o;
  o.mountpoint = dir.path() + "/missing";
  auto r = FuseExport::start(**vol, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, proto::Errc::kInvalid);
  EXPECT_NE(r.error().detail.find("missing"), std::string::npos) << r.error().detail;

  o.mountpoint = dir.path() + "/backing.img";
  r = FuseExport::start(**vol, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, proto::Errc::kInvalid);
  EXPECT_NE(r.error().detail.find("not a directory"), std::string::npos) << r.error().detail;

  o.mountpoint = dir.sub("mnt");
  o.file_name = "a/b";
  r = FuseExport::start(**vol, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, proto::Errc::kInvalid);
}

// Not root: a clear kSystem error (checked in a child that drops root).
TEST_F(FuseExportTest, NotRootIsAClearError) {
  TempDir dir;
  auto vol = LocalVolume::open(dir.path() + "/backing.img", 1 << 20);
  ASSERT_TRUE(vol.ok());
  FuseExportOptions o;
  o.mountpoint = dir.sub("mnt");
  ::chmod(dir.path().c_str(), 0755);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setresuid(65534, 65534, 65534) != 0) ::_exit(2);
    auto r = FuseExport::start(**vol, o);
    bool good = !r.ok() && r.error().code == proto::Errc::kSystem &&
                r.error().detail.find("root") != std::string::npos;
    ::_exit(good ? 0 : 1);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "status " << st;
  EXPECT_FALSE(is_mounted(o.mountpoint));
}

}  // namespace
}  // namespace tideway::agent::test

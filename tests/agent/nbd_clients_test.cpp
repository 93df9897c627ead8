// The NBD tap against real clients: qemu-img, qemu-io and nbdcopy/nbdinfo
// (libnbd) over a unix socket, backed by a LocalVolume on a temp file.
// Every test checks the bytes in the backing file, not just exit codes.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "tests/agent/nbd_harness.h"

namespace tideway::testing {
namespace {

bool all_equal(const std::vector<uint8_t>& b, size_t from, size_t to, uint8_t v) {
  return to <= b.size() && std::all_of(b.begin() + from, b.begin() + to, [v](uint8_t x) { return x == v; });
}

TEST(NbdClients, QemuImgInfo) {
  NbdHarness h(64 << 20);
  const auto r = run({"qemu-img", "info", "--output=json", h.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("\"virtual-size\": 67108864"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"format\": \"raw\""), std::string::npos) << r.out;
}

TEST(NbdClients, QemuIoWriteFlushDiscardRead) {
  NbdHarness h(16 << 20);
  const auto r = run({"qemu-io", "-f", "raw", "-c", "write -P 0xab 0 1M", "-c", "flush", "-c", "discard 0 64k",
                      "-c", "read -P 0 0 64k", "-c", "read -P 0xab 64k 960k", "-c", "write -z 2M 128k",
                      "-c", "write -f -P 0xcd 4M 512", h.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  // qemu-io reports a failed pattern check on stdout and still exits 0.
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("error"), std::string::npos) << r.out;
  const auto img = read_file(h.image());
  ASSERT_EQ(img.size(), 16u << 20);
  EXPECT_TRUE(all_equal(img, 0, 64 << 10, 0x00));
  EXPECT_TRUE(all_equal(img, 64 << 10, 1 << 20, 0xab));
  EXPECT_TRUE(all_equal(img, 1 << 20, 4 << 20, 0x00));
  EXPECT_TRUE(all_equal(img, 4 << 20, (4 << 20) + 512, 0xcd));  // FUA write
}

TEST(NbdClients, QemuIoReadsWhatWasWrittenBelow) {
  NbdHarness h(4 << 20);
  const auto data = random_bytes(1 << 20, 11);
  ASSERT_EQ(h.volume->pwrite_all(1 << 20, data), 0);
  // Data written below the tap is what the client reads; its write lands.
  const auto r = run({"qemu-io", "-f", "raw", "-c", "read -v 1M 16", "-c", "write -P 0x5a 1536k 4k", h.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  char first[8];
  std::snprintf(first, sizeof first, "%02x %02x", data[0], data[1]);
  EXPECT_NE(r.out.find(first), std::string::npos) << "expected " << first << " in " << r.out;
  const auto img = read_file(h.image());
  EXPECT_TRUE(std::equal(data.begin(), data.begin() + (512 << 10), img.begin() + (1 << 20)));
  EXPECT_TRUE(all_equal(img, (1536 << 10), (1536 << 10) + 4096, 0x5a));
}

TEST(NbdClients, QemuImgConvertInAndOut) {
  NbdHarness h(16 << 20);
  const auto src = random_bytes(16 << 20, 12);
  write_file(h.dir.file("src.img"), src);
  auto r = run({"qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", h.dir.file("src.img"), h.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(read_file(h.image()), src);
  r = run({"qemu-img", "convert", "-f", "raw", "-O", "raw", h.uri(), h.dir.file("out.img")});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_EQ(read_file(h.dir.file("out.img")), src);
}

// nbdcopy with several connections: the server advertises CAN_MULTI_CONN,
// so libnbd really opens them; a poller records how many were open at once.
TEST(NbdClients, NbdcopyMultiConnInAndOut) {
  NbdHarness h(32 << 20);
  const auto src = random_bytes(32 << 20, 13);
  write_file(h.dir.file("src.img"), src);

  std::atomic<bool> done{false};
  std::atomic<size_t> max_conns{0};
  std::thread poll([&] {
    while (!done) {
      max_conns = std::max(max_conns.load(), h.server->connections());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  // nbdcopy uses at most one connection per thread (default: one per core).
  auto r = run({"nbdcopy", "--connections=4", "--threads=4", "--flush", h.dir.file("src.img"), h.uri()});
  const auto r2 = run({"nbdcopy", "--connections=4", "--threads=4", h.uri(), h.dir.file("out.img")});
  done = true;
  poll.join();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  ASSERT_EQ(r2.exit_code, 0) << r2.describe();
  EXPECT_EQ(read_file(h.image()), src);
  EXPECT_EQ(read_file(h.dir.file("out.img")), src);
  EXPECT_EQ(max_conns.load(), 4u) << "nbdcopy did not use four connections at once";
}

TEST(NbdClients, NbdinfoSeesTheExport) {
  NbdHarness h(8 << 20);
  const auto r = run({"nbdinfo", "--json", h.uri()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.out.find("\"export-size\": 8388608"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"can_multi_conn\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"can_flush\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"can_fua\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"can_trim\": true"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"can_zero\": true"), std::string::npos) << r.out;
}

TEST(NbdClients, WrongExportNameFailsClearly) {
  NbdHarness h(1 << 20);
  auto r = run({"qemu-img", "info", h.uri("wrong")});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("no export named 'wrong'"), std::string::npos) << r.describe();
  // libnbd shows the error code (ENOENT for NBD_REP_ERR_UNKNOWN), not our text.
  r = run({"nbdinfo", h.uri("wrong")});
  EXPECT_NE(r.exit_code, 0) << r.describe();
  EXPECT_NE(r.err.find("No such file or directory for export: wrong"), std::string::npos) << r.describe();
  // The right name still works afterwards.
  r = run({"qemu-img", "info", h.uri()});
  EXPECT_EQ(r.exit_code, 0) << r.describe();
}

}  // namespace
}  // namespace tideway::testing

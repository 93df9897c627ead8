// NbdServer against a raw client: the handshake options, error replies,
// malformed input, pipelining under a slow (sync-mode-like) target, the
// in-flight bound, DISC and stop() with requests in flight.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "tests/agent/nbd_harness.h"

namespace tideway::testing {
namespace {

namespace nbd = proto::nbd;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kRead = static_cast<uint16_t>(nbd::Cmd::kRead);
constexpr uint16_t kWrite = static_cast<uint16_t>(nbd::Cmd::kWrite);
constexpr uint16_t kDisc = static_cast<uint16_t>(nbd::Cmd::kDisc);
constexpr uint16_t kFlush = static_cast<uint16_t>(nbd::Cmd::kFlush);
constexpr uint16_t kTrim = static_cast<uint16_t>(nbd::Cmd::kTrim);
constexpr uint16_t kZeroes = static_cast<uint16_t>(nbd::Cmd::kWriteZeroes);
constexpr uint32_t kEinval = static_cast<uint32_t>(nbd::Err::kInval);
constexpr uint32_t opt(nbd::Opt o) { return static_cast<uint32_t>(o); }
constexpr uint32_t rep(nbd::Rep r) { return static_cast<uint32_t>(r); }

std::string text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

std::vector<uint8_t> read_back(RawClient& c, uint64_t offset, uint32_t length, uint64_t cookie = 99) {
  c.request(kRead, cookie, offset, length);
  const auto r = c.reply();
  if (r.cookie != cookie || r.error != 0) return {};
  return c.recv_n(length);
}

TEST(NbdHandshake, OptionsBeforeGo) {
  NbdHarness h(1 << 20);
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(c.greet(), nbd::kFlagFixedNewstyle | nbd::kFlagNoZeroes);

  c.send_option(opt(nbd::Opt::kStructuredReply));
  auto r = c.recv_option_reply();
  EXPECT_EQ(r.h.option, opt(nbd::Opt::kStructuredReply));
  EXPECT_EQ(r.h.type, rep(nbd::Rep::kErrUnsup));

  c.send_option(0x4242, std::vector<uint8_t>(100, 7));  // unknown, with data to skip
  EXPECT_EQ(c.recv_option_reply().h.type, rep(nbd::Rep::kErrUnsup));

  c.send_option(opt(nbd::Opt::kList));
  r = c.recv_option_reply();
  ASSERT_EQ(r.h.type, rep(nbd::Rep::kServer));
  EXPECT_EQ(r.data, nbd::encode_rep_server("disk"));
  EXPECT_EQ(c.recv_option_reply().h.type, rep(nbd::Rep::kAck));

  c.send_option(opt(nbd::Opt::kList), std::vector<uint8_t>{1});
  EXPECT_EQ(c.recv_option_reply().h.type, rep(nbd::Rep::kErrInvalid));

  c.send_option(opt(nbd::Opt::kInfo), nbd::encode_go({"nope", {}}));
  r = c.recv_option_reply();
  EXPECT_EQ(r.h.type, rep(nbd::Rep::kErrUnknown));
  EXPECT_NE(text(r.data).find("no export named 'nope'"), std::string::npos) << text(r.data);

  c.send_option(opt(nbd::Opt::kGo), std::vector<uint8_t>{0, 0, 0, 9});  // name runs past the data
  EXPECT_EQ(c.recv_option_reply().h.type, rep(nbd::Rep::kErrInvalid));

  // INFO then GO: export size, our flags, block sizes, then ACK.
  for (auto o : {nbd::Opt::kInfo, nbd::Opt::kGo}) {
    c.send_option(opt(o), nbd::encode_go({"disk", {static_cast<uint16_t>(nbd::Info::kBlockSize)}}));
    std::vector<std::vector<uint8_t>> infos;
    for (r = c.recv_option_reply(); r.h.type == rep(nbd::Rep::kInfo); r = c.recv_option_reply()) infos.push_back(r.data);
    EXPECT_EQ(r.h.type, rep(nbd::Rep::kAck));
    ASSERT_EQ(infos.size(), 2u);
    EXPECT_EQ(infos[0], nbd::encode_info_export(1 << 20, agent::NbdServer::transmission_flags()));
    EXPECT_EQ(infos[1], nbd::encode_info_block_size(1, 4096, 32u << 20));
  }
  const uint16_t f = agent::NbdServer::transmission_flags();
  for (uint16_t bit : {nbd::kTxHasFlags, nbd::kTxSendFlush, nbd::kTxSendFua, nbd::kTxSendTrim,
                       nbd::kTxSendWriteZeroes, nbd::kTxCanMultiConn})
    EXPECT_TRUE(f & bit) << bit;
  EXPECT_FALSE(f & nbd::kTxReadOnly);

  // In transmission now.
  const auto data = random_bytes(4096, 1);
  c.request(kWrite, 1, 8192, 4096, 0, data);
  EXPECT_EQ(c.reply().cookie, 1u);
  EXPECT_EQ(read_back(c, 8192, 4096), data);
}

TEST(NbdHandshake, ExportNameAndZeroPadding) {
  NbdHarness h(1 << 20);
  {
    auto c = RawClient::unix_socket(h.socket());
    c.greet(nbd::kClientFixedNewstyle);  // no NO_ZEROES: 124 zero bytes follow
    c.send_option(opt(nbd::Opt::kExportName), std::vector<uint8_t>{'d', 'i', 's', 'k'});
    const auto r = c.recv_n(134);
    ASSERT_EQ(r.size(), 134u);
    EXPECT_EQ(std::vector<uint8_t>(r.begin(), r.begin() + 10),
              nbd::encode_export_name_reply(1 << 20, agent::NbdServer::transmission_flags(), true));
    EXPECT_TRUE(std::all_of(r.begin() + 10, r.end(), [](uint8_t b) { return b == 0; }));
    EXPECT_EQ(read_back(c, 0, 512), std::vector<uint8_t>(512, 0));
  }
  {
    auto c = RawClient::unix_socket(h.socket());
    c.greet();
    c.send_option(opt(nbd::Opt::kExportName));  // empty name: the default export
    EXPECT_EQ(c.recv_n(10).size(), 10u);
    EXPECT_EQ(read_back(c, 0, 512).size(), 512u);
  }
  {
    // EXPORT_NAME cannot report an error: a wrong name closes.
    auto c = RawClient::unix_socket(h.socket());
    c.greet();
    c.send_option(opt(nbd::Opt::kExportName), std::vector<uint8_t>{'x'});
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    auto c = RawClient::unix_socket(h.socket());
    c.greet();
    c.send_option(opt(nbd::Opt::kAbort));
    EXPECT_EQ(c.recv_option_reply().h.type, rep(nbd::Rep::kAck));
    EXPECT_TRUE(c.closed_by_peer());
  }
}

TEST(NbdHandshake, MalformedInputClosesTheConnection) {
  NbdHarness h(1 << 20);
  {
    auto c = RawClient::unix_socket(h.socket());
    c.greet(0x10);  // unknown client flag
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    auto c = RawClient::unix_socket(h.socket());
    c.greet();
    auto hdr = nbd::encode_option_header({opt(nbd::Opt::kGo), 0});
    hdr[0] ^= 0xff;  // bad IHAVEOPT
    c.send(hdr);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    auto c = RawClient::unix_socket(h.socket());
    c.greet();
    c.send(nbd::encode_option_header({opt(nbd::Opt::kGo), nbd::kMaxOptionLength + 1}));
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    auto c = RawClient::unix_socket(h.socket());
    ASSERT_TRUE(c.go("disk"));
    auto req = nbd::encode_request({0, kRead, 1, 0, 512});
    req[0] = 0;  // bad request magic
    c.send(req);
    EXPECT_TRUE(c.closed_by_peer());
  }
  {
    auto c = RawClient::unix_socket(h.socket());
    ASSERT_TRUE(c.go("disk"));
    c.request(kWrite, 1, 0, nbd::kMaxRequestLength + 1);  // payload too large to take
    EXPECT_TRUE(c.closed_by_peer());
  }
  // The server is unharmed.
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  EXPECT_EQ(read_back(c, 0, 4096).size(), 4096u);
}

TEST(NbdTransmission, BadRequestsGetEinvalAndTheConnectionGoesOn) {
  const uint64_t size = 1 << 20;
  NbdHarness h(size);
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  const auto expect_einval = [&](uint16_t type, uint64_t off, uint32_t len, uint16_t flags,
                                 std::span<const uint8_t> payload = {}) {
    static uint64_t cookie = 1000;
    ++cookie;
    c.request(type, cookie, off, len, flags, payload);
    const auto r = c.reply();
    EXPECT_EQ(r.cookie, cookie);
    EXPECT_EQ(r.error, kEinval) << nbd::cmd_name(type) << " off " << off << " len " << len;
  };
  expect_einval(kRead, size - 512, 1024, 0);
  expect_einval(kRead, ~0ull - 100, 512, 0);  // offset + length overflows
  expect_einval(kRead, 0, nbd::kMaxRequestLength + 1, 0);
  expect_einval(kWrite, size, 4096, 0, random_bytes(4096, 2));  // payload still consumed
  expect_einval(kTrim, size - 4096, 8192, 0);
  expect_einval(kZeroes, size + 1, 0, 0);
  expect_einval(kFlush, 4096, 0, 0);
  expect_einval(kRead, 0, 512, nbd::kCmdFlagDf);
  expect_einval(kWrite, 0, 512, nbd::kCmdFlagNoHole, random_bytes(512, 3));
  expect_einval(kZeroes, 0, 512, nbd::kCmdFlagFastZero);
  expect_einval(static_cast<uint16_t>(nbd::Cmd::kBlockStatus), 0, 512, 0);
  expect_einval(0x77, 0, 0, 0);
  // Nothing was written by the refused WRITEs; the connection still works.
  EXPECT_EQ(read_back(c, 0, 4096), std::vector<uint8_t>(4096, 0));
  EXPECT_EQ(read_back(c, size - 4096, 4096), std::vector<uint8_t>(4096, 0));
}

TEST(NbdTransmission, WriteFuaFlushTrimAndZeroes) {
  NbdHarness h(8 << 20);
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  const auto data = random_bytes(4 << 20, 4);
  c.request(kWrite, 1, 0, 4 << 20, nbd::kCmdFlagFua, data);
  EXPECT_EQ(c.reply().error, 0u);
  c.request(kFlush, 2, 0, 0);
  EXPECT_EQ(c.reply().cookie, 2u);
  EXPECT_EQ(read_file(h.image()).size(), 8u << 20);
  {
    const auto img = read_file(h.image());
    EXPECT_TRUE(std::equal(data.begin(), data.end(), img.begin()));
  }
  struct stat before {};
  ::stat(h.image().c_str(), &before);
  // TRIM (FUA), WRITE_ZEROES (hole allowed) and WRITE_ZEROES NO_HOLE.
  c.request(kTrim, 3, 0, 1 << 20, nbd::kCmdFlagFua);
  EXPECT_EQ(c.reply().error, 0u);
  c.request(kZeroes, 4, 1 << 20, 1 << 20, 0);
  EXPECT_EQ(c.reply().error, 0u);
  c.request(kZeroes, 5, 2 << 20, (1 << 20) + 4096, nbd::kCmdFlagNoHole | nbd::kCmdFlagFua);
  EXPECT_EQ(c.reply().error, 0u);
  const auto img = read_file(h.image());
  const size_t zeroed = (3 << 20) + 4096;
  EXPECT_TRUE(std::all_of(img.begin(), img.begin() + zeroed, [](uint8_t b) { return b == 0; }));
  EXPECT_TRUE(std::equal(data.begin() + zeroed, data.end(), img.begin() + zeroed));
  // ext4 punches holes: two of the three zeroed MiB are deallocated; the
  // NO_HOLE range stays allocated.
  struct stat after {};
  ::stat(h.image().c_str(), &after);
  EXPECT_LE(after.st_blocks, before.st_blocks - 2 * 2048 + 64) << before.st_blocks << " -> " << after.st_blocks;
  EXPECT_GE(after.st_blocks, before.st_blocks - 2 * 2048 - 64);
}

// The point of the tap's design: with a target that acknowledges writes
// only after a round trip (sync mode), N pipelined writes take about one
// round trip, not N. Later writes are made faster than earlier ones, so
// replies come back out of order and only the cookies match them up.
constexpr int kN = 16;
constexpr auto kDelay = 300ms;
TEST(NbdTransmission, PipelinedWritesShareOneRoundTrip) {
  NbdHarness h(8 << 20, [](uint64_t i) { return kDelay + std::chrono::milliseconds(10 * (kN - static_cast<int>(i % kN))); });
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  std::vector<std::vector<uint8_t>> blocks;
  const auto t0 = Clock::now();
  for (int i = 0; i < kN; ++i) {
    blocks.push_back(random_bytes(64 << 10, 100 + i));
    c.request(kWrite, 500 + i, uint64_t(i) * (64 << 10), 64 << 10, 0, blocks.back());
  }
  std::vector<uint64_t> order;
  for (int i = 0; i < kN; ++i) {
    const auto r = c.reply();
    EXPECT_EQ(r.error, 0u);
    order.push_back(r.cookie);
  }
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, kDelay);
  EXPECT_LT(took, 2 * kDelay + 200ms) << "writes were serialised: "
                                      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
  EXPECT_EQ(h.delayed->max_pending(), size_t{kN});
  auto sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < kN; ++i) EXPECT_EQ(sorted[i], uint64_t(500 + i));
  EXPECT_NE(order, sorted) << "replies came back in request order";
  for (int i = 0; i < kN; ++i) EXPECT_EQ(read_back(c, uint64_t(i) * (64 << 10), 64 << 10, 900 + i), blocks[i]);
}

// Requests are parsed out of a read-ahead buffer: a burst of small writes
// arrives in arbitrary pieces (headers and payloads split anywhere), with a
// WRITE larger than the buffer in the middle. Every request is answered
// and the image holds every byte.
TEST(NbdTransmission, BurstSplitAnywhereIsParsedFromTheReadAhead) {
  for (uint32_t seed = 1; seed <= 3; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    NbdHarness h(8 << 20);
    auto c = RawClient::unix_socket(h.socket());
    ASSERT_TRUE(c.go("disk"));
    std::vector<uint8_t> burst, expect(8 << 20, 0);
    auto add = [&](uint16_t type, uint64_t cookie, uint64_t offset, std::span<const uint8_t> data) {
      nbd::Request r;
      r.type = type;
      r.cookie = cookie;
      r.offset = offset;
      r.length = static_cast<uint32_t>(data.size());
      const auto hdr = nbd::encode_request(r);
      burst.insert(burst.end(), hdr.begin(), hdr.end());
      burst.insert(burst.end(), data.begin(), data.end());
      std::copy(data.begin(), data.end(), expect.begin() + static_cast<ptrdiff_t>(offset));
    };
    constexpr int kSmall = 200;
    for (int i = 0; i < kSmall; ++i) {
      add(kWrite, 1000 + i, uint64_t(i) * 4096, random_bytes(4096, seed * 1000 + i));
      if (i == kSmall / 2) add(kWrite, 1, 4 << 20, random_bytes((1 << 20) + 3, seed));  // > read-ahead
    }
    add(kFlush, 2, 0, {});
    std::mt19937 rng(seed);
    std::thread sender([&] {
      for (size_t off = 0; off < burst.size();) {
        const size_t n = std::min<size_t>(std::uniform_int_distribution<size_t>(1, 9000)(rng), burst.size() - off);
        c.send({burst.data() + off, n});
        off += n;
        if (rng() % 8 == 0) std::this_thread::sleep_for(1ms);  // let the server catch a partial request
      }
    });
    std::set<uint64_t> answered;
    for (int i = 0; i < kSmall + 2; ++i) {
      const auto r = c.reply();
      EXPECT_EQ(r.error, 0u) << "cookie " << r.cookie;
      answered.insert(r.cookie);
    }
    sender.join();
    EXPECT_EQ(answered.size(), size_t{kSmall + 2});
    EXPECT_TRUE(answered.count(1) && answered.count(2) && answered.count(1000) && answered.count(1000 + kSmall - 1));
    EXPECT_TRUE(read_file(h.image()) == expect);
  }
}

TEST(NbdTransmission, InFlightBoundStopsReading) {
  agent::NbdServerOptions o;
  o.max_inflight_requests = 4;
  NbdHarness h(8 << 20, [](uint64_t) { return 200ms; }, o);
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  const auto t0 = Clock::now();
  const auto data = random_bytes(4096, 5);
  for (int i = 0; i < 12; ++i) c.request(kWrite, i + 1, uint64_t(i) * 4096, 4096, 0, data);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(c.reply().error, 0u);
  EXPECT_EQ(h.delayed->max_pending(), 4u);
  EXPECT_GE(Clock::now() - t0, 3 * 200ms);  // three batches of four
}

TEST(NbdTransmission, DiscAnswersInFlightThenCloses) {
  NbdHarness h(1 << 20, [](uint64_t) { return 300ms; });
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  const auto data = random_bytes(4096, 6);
  c.request(kWrite, 7, 0, 4096, 0, data);
  c.request(kDisc, 8, 0, 0);
  const auto r = c.reply();
  EXPECT_EQ(r.cookie, 7u);
  EXPECT_EQ(r.error, 0u);
  EXPECT_TRUE(c.closed_by_peer());
  const auto img = read_file(h.image());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), img.begin()));
}

TEST(NbdServer, StopWaitsForInFlightCompletions) {
  NbdHarness h(1 << 20, [](uint64_t) { return 500ms; });
  auto c = RawClient::unix_socket(h.socket());
  ASSERT_TRUE(c.go("disk"));
  const auto data = random_bytes(4096, 7);
  for (int i = 0; i < 4; ++i) c.request(kWrite, 10 + i, uint64_t(i) * 4096, 4096, 0, data);
  // Wait until the target holds all four, then stop.
  for (int i = 0; i < 200 && h.delayed->pending() < 4; ++i) std::this_thread::sleep_for(5ms);
  ASSERT_EQ(h.delayed->pending(), 4u);
  const auto t0 = Clock::now();
  h.server->stop();
  EXPECT_GE(Clock::now() - t0, 300ms);
  EXPECT_EQ(h.delayed->pending(), 0u);
  EXPECT_EQ(h.server->connections(), 0u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c.reply().error, 0u);  // answered before the close
  EXPECT_TRUE(c.closed_by_peer());
  EXPECT_FALSE(RawClient::unix_socket(h.socket()).connected());  // socket file removed
}

TEST(NbdServer, ConcurrentConnectionsAndTcp) {
  agent::NbdServerOptions o;
  o.tcp_address = "127.0.0.1";
  NbdHarness h(16 << 20, nullptr, o);
  ASSERT_NE(h.server->tcp_port(), 0);
  constexpr int kConns = 4;
  std::vector<std::thread> threads;
  std::vector<int> ok(kConns, 0);
  for (int t = 0; t < kConns; ++t) {
    threads.emplace_back([&, t] {
      auto c = t % 2 == 0 ? RawClient::unix_socket(h.socket()) : RawClient::tcp(h.server->tcp_port());
      if (!c.go("disk")) return;
      const auto data = random_bytes(1 << 20, 50 + t);
      for (int k = 0; k < 4; ++k) c.request(kWrite, k, uint64_t(t) * (4 << 20) + uint64_t(k) * (1 << 20), 1 << 20, 0, data);
      int good = 0;
      for (int k = 0; k < 4; ++k) good += c.reply().error == 0;
      c.request(kFlush, 9, 0, 0);
      good += c.reply().error == 0;
      ok[t] = good;
    });
  }
  for (auto& t : threads) t.join();
  for (int t = 0; t < kConns; ++t) EXPECT_EQ(ok[t], 5) << "connection " << t;
  const auto img = read_file(h.image());
  for (int t = 0; t < kConns; ++t) {
    const auto data = random_bytes(1 << 20, 50 + t);
    for (int k = 0; k < 4; ++k)
      EXPECT_TRUE(std::equal(data.begin(), data.end(), img.begin() + t * (4 << 20) + k * (1 << 20))) << t << "/" << k;
  }
}

TEST(NbdServer, RejectsBadOptions) {
  TempDir d;
  auto v = agent::LocalVolume::open(d.file("x.img"), 1 << 20);
  ASSERT_TRUE(v.ok());
  IoThreads io(1);
  agent::NbdServerOptions o;
  EXPECT_FALSE(agent::NbdServer(io.io(), **v, o).start().ok());  // no listener
  o.unix_path = d.file("s");
  o.min_block = 3;
  EXPECT_FALSE(agent::NbdServer(io.io(), **v, o).start().ok());
  o.min_block = 1;
  write_file(d.file("s"), std::vector<uint8_t>{1});
  auto r = agent::NbdServer(io.io(), **v, o).start();  // refuses to replace a regular file
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("not a socket"), std::string::npos);
}

}  // namespace
}  // namespace tideway::testing

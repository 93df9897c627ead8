// The injectable clock: dilated time runs `factor` times slower than real
// time, and the channel's timers follow it (DieCast-style dilation).
#include "wan/clock.h"

#include <gtest/gtest.h>

#include <thread>

#include "tests/wan/channel_harness.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

TEST(Clock, DilatedTimeRunsSlower) {
  wan::DilatedClock clock(4.0);
  EXPECT_EQ(clock.to_real(100ms), 400ms);
  const auto v0 = clock.now();
  const auto r0 = wan::system_clock().now();
  std::this_thread::sleep_for(200ms);
  const double virt = std::chrono::duration<double>(clock.now() - v0).count();
  const double real = std::chrono::duration<double>(wan::system_clock().now() - r0).count();
  EXPECT_NEAR(virt, real / 4.0, 0.01);
}

TEST(Clock, ManualClockMovesOnlyWhenTold) {
  wan::ManualClock clock;
  const auto t0 = clock.now();
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(clock.now(), t0);
  clock.advance(3s);
  EXPECT_EQ(clock.now() - t0, 3s);
}

// A silent peer is declared dead after dead_peer_timeout of the channel's
// clock: 500 ms of dilated time at factor 4 is about 2 s of real time.
TEST(Clock, ChannelTimersFollowTheDilatedClock) {
  LogCapture logs;
  IoThread io;
  wan::DilatedClock clock(4.0);
  auto o = base_options("backup");
  o.tls.plaintext_for_tests = true;
  o.clock = &clock;
  o.heartbeat_interval = 100ms;
  o.dead_peer_timeout = 500ms;
  auto server = wan::ChannelServer::create(io.io(), o, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  io.call([&] {
    server->start();
    return 0;
  });
  tcp::socket sock(io.io());
  sock.connect(tcp::endpoint(asio::ip::address_v4::loopback(), server->port()));
  proto::Hello hello;
  hello.features = proto::kAllFeatures;
  asio::write(sock, asio::buffer(proto::encode_message(hello)));
  // Read until the server gives up on us, counting its heartbeats.
  const auto start = std::chrono::steady_clock::now();
  proto::FrameParser parser;
  std::vector<uint8_t> buf(4096);
  int heartbeats = 0;
  boost::system::error_code ec;
  while (!ec) {
    const size_t n = sock.read_some(asio::buffer(buf), ec);
    parser.feed({buf.data(), n});
    for (auto f = parser.next(); f.ok() && f->has_value(); f = parser.next())
      if ((*f)->header.type == proto::MessageType::kHeartbeat) ++heartbeats;
  }
  const double real = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(logs.contains("peer silent for"));
  EXPECT_GE(real, 1.9) << "the timeout ran on real time, not the injected clock";
  EXPECT_LE(real, 4.0);
  // 100 ms of dilated time is 400 ms real: about 5 heartbeats in 2-2.5 s.
  // Timers on real time would have sent about 20.
  EXPECT_GE(heartbeats, 3);
  EXPECT_LE(heartbeats, 8) << "heartbeat timer ignored the injected clock";
  io.call([&] {
    server->stop();
    return 0;
  });
}

}  // namespace
}  // namespace tideway::testing

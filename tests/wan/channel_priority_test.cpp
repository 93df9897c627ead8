// Acks never queue behind bulk data: while a bulk stream saturates the
// channel's link rate, small messages on the control-class stream see only
// a few milliseconds of queueing; the same messages sent FIFO behind the
// bulk data (one queue, as a single-socket design would) wait far longer.
// Queueing delay = receive time - send time on loopback (same clock).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "tests/wan/channel_harness.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct Result {
  std::vector<double> latency_ms;
  double bulk_mbit = 0;
  double pct(double p) const {
    auto v = latency_ms;
    std::sort(v.begin(), v.end());
    return v.empty() ? 1e9 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
  }
};

int64_t now_ns() { return wan::system_clock().now().count(); }

Result run(uint32_t probe_stream, std::chrono::milliseconds duration) {
  IoThread server_io;  // the two sites run on their own threads, as two hosts would
  IoThread io;
  auto so = base_options("backup");
  so.tls.plaintext_for_tests = true;
  auto server = wan::ChannelServer::create(server_io.io(), so, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  Result r;
  std::atomic<uint64_t> bulk_bytes{0};
  auto on_msg = [&](proto::MessageType, std::span<const uint8_t> p) {
    if (p.size() == 16) {
      int64_t sent = 0;
      std::memcpy(&sent, p.data(), 8);
      r.latency_ms.push_back(static_cast<double>(now_ns() - sent) / 1e6);
    } else {
      bulk_bytes += p.size();
    }
  };
  server->on_session([&](const std::shared_ptr<wan::Session>& s) {
    s->on_message(kAckStream, on_msg);
    s->on_message(kBulkStream, on_msg);
  });
  auto co = base_options("primary");
  co.tls.plaintext_for_tests = true;
  co.link_rate_bytes_per_sec = 100'000'000 / 8;  // the channel's own 100 Mbit/s link limit
  co.streams[2].max_retained_bytes = 16u << 20;
  auto client = wan::ChannelClient::create(io.io(), co, "127.0.0.1", server->port());

  // Keep 8 MiB of bulk queued (always more than the link drains between
  // refills) while leaving room in the stream for the FIFO probes.
  std::vector<uint8_t> chunk(64 * 1024, 0x5a);
  asio::steady_timer pump_timer(io.io());
  std::function<void()> pump = [&] {
    // At most 512 KiB per tick so the sender's own loop adds no latency.
    for (int i = 0; i < 8 && client->session()->retained_bytes(kBulkStream) < (8u << 20); ++i)
      if (!client->session()->send(kBulkStream, proto::MessageType::kProbe, chunk)) return;
    pump_timer.expires_after(2ms);
    pump_timer.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) pump();
    });
  };
  asio::steady_timer probe_timer(io.io());
  int probes = 0;
  std::function<void()> probe = [&] {
    uint8_t m[16] = {};
    const int64_t t = now_ns();
    std::memcpy(m, &t, 8);
    client->session()->send(probe_stream, proto::MessageType::kProbe, m);
    if (++probes < duration / 10ms) {
      probe_timer.expires_after(10ms);
      probe_timer.async_wait([&](const boost::system::error_code& ec) {
        if (!ec) probe();
      });
    }
  };
  server_io.call([&] {
    server->start();
    return 0;
  });
  io.call([&] {
    client->start();
    return 0;
  });
  // Let the bulk stream fill the link before measuring.
  EXPECT_TRUE(eventually(io, [&] { return client->session()->state() == wan::SessionState::kConnected; }));
  io.call([&] {
    pump();
    return 0;
  });
  std::this_thread::sleep_for(300ms);
  const uint64_t b0 = bulk_bytes.load();
  const auto t0 = std::chrono::steady_clock::now();
  io.call([&] {
    probe();
    return 0;
  });
  std::this_thread::sleep_for(duration + 200ms);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.bulk_mbit = static_cast<double>(bulk_bytes.load() - b0) * 8 / secs / 1e6;
  io.call([&] {
    probe_timer.cancel();
    pump_timer.cancel();
    client->stop();
    return 0;
  });
  server_io.call([&] {
    server->stop();
    return 0;
  });
  io.stop();
  server_io.stop();
  return r;
}

TEST(ChannelPriority, AcksDoNotQueueBehindBulk) {
  const Result r = run(kAckStream, 2000ms);
  std::printf("control-class probes: n=%zu p50 %.2f ms p99 %.2f ms max %.2f ms; bulk %.1f Mbit/s\n",
              r.latency_ms.size(), r.pct(0.5), r.pct(0.99), r.pct(1.0), r.bulk_mbit);
  ASSERT_GE(r.latency_ms.size(), 150u);
  EXPECT_GE(r.bulk_mbit, 85.0) << "bulk must saturate the 100 Mbit/s link for the test to mean anything";
  EXPECT_LT(r.pct(0.5), 5.0);
  EXPECT_LT(r.pct(0.99), 5.0);
}

TEST(ChannelPriority, SameMessagesBehindBulkInOneQueueWaitLong) {
  // The check above can fail: this is what it would see without priorities.
  const Result r = run(kBulkStream, 1000ms);
  std::printf("FIFO probes: n=%zu p50 %.2f ms p99 %.2f ms\n", r.latency_ms.size(), r.pct(0.5), r.pct(0.99));
  ASSERT_GE(r.latency_ms.size(), 20u);
  EXPECT_GT(r.pct(0.5), 50.0);
}

}  // namespace
}  // namespace tideway::testing

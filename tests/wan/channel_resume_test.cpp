// Reconnect with resume: a 200 MB transfer through a relay that is cut three
// times (two resets and one silent partition) arrives complete, in order,
// exactly once, with the payload intact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "tests/wan/channel_harness.h"
#include "tests/wan/fault_proxy.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr size_t kMessageBytes = 64 * 1024;
constexpr uint64_t kMessages = 200 * 1024 * 1024 / kMessageBytes;  // 200 MiB

// Message i: its index, then bytes derived from the index, so the receiver
// can check order and content without keeping a copy.
void fill(uint64_t i, std::vector<uint8_t>& m) {
  m.resize(kMessageBytes);
  std::memcpy(m.data(), &i, 8);
  uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
  for (size_t k = 8; k + 8 <= m.size(); k += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(m.data() + k, &x, 8);
  }
}

TEST(ChannelResume, TransferSurvivesThreeCutsExactlyOnceInOrder) {
  const TestPki pki = TestPki::create();
  IoThread io;
  auto so = base_options("backup");
  use_certs(so, pki, pki.issue("backup"));
  auto server = wan::ChannelServer::create(io.io(), so, tcp::endpoint(asio::ip::address_v4::loopback(), 0));

  std::atomic<uint64_t> next_expected{0};
  std::atomic<uint64_t> bad{0};
  std::string first_error;
  server->on_session([&](const std::shared_ptr<wan::Session>& s) {
    s->on_message(kBulkStream, [&](proto::MessageType, std::span<const uint8_t> p) {
      uint64_t idx = 0;
      std::vector<uint8_t> want;
      if (p.size() == kMessageBytes) std::memcpy(&idx, p.data(), 8);
      fill(idx, want);
      if (p.size() != kMessageBytes || idx != next_expected.load() ||
          std::memcmp(p.data(), want.data(), kMessageBytes) != 0) {
        if (bad.fetch_add(1) == 0)
          first_error = "message " + std::to_string(idx) + " at position " + std::to_string(next_expected.load());
      }
      next_expected.fetch_add(1);
    });
  });
  io.call([&] {
    server->start();
    return 0;
  });

  FaultProxy proxy(server->port());
  auto co = base_options("primary");
  use_certs(co, pki, pki.issue("primary"));
  co.streams[2].max_retained_bytes = 32u << 20;
  auto client = wan::ChannelClient::create(io.io(), co, "127.0.0.1", proxy.port());

  // The sender runs on the io thread: fill the stream until it refuses,
  // then continue when it has room.
  uint64_t sent = 0;
  std::vector<uint8_t> msg;
  std::function<void()> pump = [&] {
    while (sent < kMessages) {
      fill(sent, msg);
      if (!client->session()->send(kBulkStream, proto::MessageType::kProbe, msg)) return;
      ++sent;
    }
  };
  io.call([&] {
    client->session()->on_writable(kBulkStream, pump);
    client->start();
    pump();
    return 0;
  });

  auto wait_for = [&](uint64_t n) {
    return eventually(io, [&] { return next_expected.load() >= n; }, 120s);
  };
  ASSERT_TRUE(wait_for(kMessages / 4));
  proxy.cut();  // reset
  ASSERT_TRUE(wait_for(kMessages / 2));
  proxy.blackhole(true);  // silent partition: only heartbeats can notice
  std::this_thread::sleep_for(1500ms);
  proxy.cut();
  proxy.blackhole(false);
  ASSERT_TRUE(wait_for(3 * kMessages / 4));
  proxy.cut();
  ASSERT_TRUE(wait_for(kMessages)) << "stalled at " << next_expected.load();

  // Give a stray duplicate time to show up.
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(bad.load(), 0u) << first_error;
  EXPECT_EQ(next_expected.load(), kMessages) << "messages delivered more than once";
  const auto cs = io.call([&] { return client->session()->stats(); });
  EXPECT_GE(cs.links, 4u) << "three cuts mean at least four links";
  EXPECT_GT(cs.frames_resent, 0u) << "cuts in flight must force resends";
  EXPECT_GE(proxy.connections(), 4u);
  std::printf("links %llu, frames resent %llu, proxy connections %llu\n",
              static_cast<unsigned long long>(cs.links), static_cast<unsigned long long>(cs.frames_resent),
              static_cast<unsigned long long>(proxy.connections()));
  io.call([&] {
    client->stop();
    server->stop();
    return 0;
  });
  pki.remove();
}

// The backup restarts and forgets the session: the client must notice
// (state kReset, so the application resynchronises), start a new session,
// and carry on with fresh sequence numbers instead of failing forever.
TEST(ChannelResume, PeerThatLostTheSessionStartsANewOne) {
  IoThread io;
  auto so = base_options("backup");
  so.tls.plaintext_for_tests = true;
  std::atomic<int> delivered{0};
  auto make_server = [&](uint16_t port) {
    auto s = wan::ChannelServer::create(io.io(), so, tcp::endpoint(asio::ip::address_v4::loopback(), port));
    s->on_session([&](const std::shared_ptr<wan::Session>& sess) {
      sess->on_message(kReplStream, [&](proto::MessageType, std::span<const uint8_t>) { ++delivered; });
    });
    io.call([&] {
      s->start();
      return 0;
    });
    return s;
  };
  auto server = make_server(0);
  const uint16_t port = server->port();
  auto co = base_options("primary");
  co.tls.plaintext_for_tests = true;
  auto client = wan::ChannelClient::create(io.io(), co, "127.0.0.1", port);
  std::vector<wan::SessionState> states;
  const std::vector<uint8_t> msg(100, 1);
  io.call([&] {
    client->session()->on_state([&](wan::SessionState st) { states.push_back(st); });
    client->start();
    return client->session()->send(kReplStream, proto::MessageType::kProbe, msg);
  });
  ASSERT_TRUE(eventually(io, [&] { return delivered.load() == 1; }));
  const auto first_id = io.call([&] { return client->session()->id(); });

  io.call([&] {
    server->stop();
    return 0;
  });
  server.reset();
  server = make_server(port);  // a restarted backup: no sessions
  io.call([&] { return client->session()->send(kReplStream, proto::MessageType::kProbe, msg); });
  ASSERT_TRUE(eventually(io, [&] {
    return client->session()->state() == wan::SessionState::kConnected && client->session()->id() != first_id;
  }));
  // The message queued across the restart was dropped with the old session
  // (the application learns it from kReset); new messages flow.
  io.call([&] { return client->session()->send(kReplStream, proto::MessageType::kProbe, msg); });
  ASSERT_TRUE(eventually(io, [&] { return delivered.load() >= 2; }));
  const auto seen = io.call([&] { return states; });
  EXPECT_NE(std::find(seen.begin(), seen.end(), wan::SessionState::kReset), seen.end())
      << "the application must be told the session was reset";
  io.call([&] {
    client->stop();
    server->stop();
    return 0;
  });
}

}  // namespace
}  // namespace tideway::testing

// Bad input on the wire: garbage, an incompatible HELLO, a corrupted frame
// and a sequence gap each close the connection with a logged reason and
// deliver nothing to the application. Plaintext so the test can forge frames.
#include <gtest/gtest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "tests/wan/channel_harness.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class ChannelProtocol : public ::testing::Test {
 protected:
  void SetUp() override {
    auto o = base_options("backup");
    o.tls.plaintext_for_tests = true;
    server = wan::ChannelServer::create(io.io(), o, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    server->on_session([this](const std::shared_ptr<wan::Session>& s) {
      ++sessions;
      s->on_message(kReplStream, [this](proto::MessageType, std::span<const uint8_t>) { ++delivered; });
    });
    io.call([&] {
      server->start();
      return 0;
    });
    sock.connect(tcp::endpoint(asio::ip::address_v4::loopback(), server->port()));
  }
  void TearDown() override {
    io.call([&] {
      server->stop();
      return 0;
    });
  }
  void send(const std::vector<uint8_t>& b) { asio::write(sock, asio::buffer(b)); }
  // Reads one frame; nullopt if the server closed the connection.
  std::optional<proto::Message> read_message() {
    std::vector<uint8_t> hdr(proto::kHeaderSize);
    boost::system::error_code ec;
    asio::read(sock, asio::buffer(hdr), ec);
    if (ec) return std::nullopt;
    auto h = proto::decode_header(hdr);
    if (!h) return std::nullopt;
    std::vector<uint8_t> payload(h->length);
    asio::read(sock, asio::buffer(payload), ec);
    if (ec) return std::nullopt;
    auto m = proto::decode_payload(h->type, payload);
    if (!m) return std::nullopt;
    return std::move(m).value();
  }
  bool closed_by_server() {
    std::vector<uint8_t> b(1 << 16);
    boost::system::error_code ec;
    for (int i = 0; i < 100 && !ec; ++i) sock.read_some(asio::buffer(b), ec);  // drain heartbeats
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }
  void handshake() {
    proto::Hello hello;
    hello.features = proto::kAllFeatures;
    hello.site = "forger";
    send(proto::encode_message(hello));
    auto m = read_message();
    ASSERT_TRUE(m && std::holds_alternative<proto::Welcome>(*m));
  }

  LogCapture logs;
  IoThread io;
  std::shared_ptr<wan::ChannelServer> server;
  tcp::socket sock{io.io()};
  std::atomic<int> sessions{0}, delivered{0};
};

std::vector<uint8_t> repl_frame(uint64_t seq) {
  const std::vector<uint8_t> data(512, 1);
  proto::ReplWrite w;
  w.writer = 1;
  w.volume = 1;
  w.seq = seq;
  w.length = 512;
  w.data = data;
  return proto::encode_message(w, kReplStream, seq);
}

TEST_F(ChannelProtocol, GarbageBeforeHelloIsDropped) {
  send(std::vector<uint8_t>(64, 0xAB));
  EXPECT_TRUE(closed_by_server());
  EXPECT_EQ(sessions.load(), 0);
  EXPECT_TRUE(eventually(io, [&] { return logs.contains("not a Tideway frame"); }));
}

TEST_F(ChannelProtocol, IncompatibleVersionGetsAClearError) {
  proto::Hello hello;
  hello.min_version = 7;
  hello.max_version = 9;
  hello.features = proto::kAllFeatures;
  send(proto::encode_message(hello));
  auto m = read_message();
  ASSERT_TRUE(m.has_value());
  auto* e = std::get_if<proto::ErrorMsg>(&*m);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, proto::ErrorCode::kIncompatible);
  EXPECT_NE(e->reason.find("no common protocol version"), std::string::npos) << e->reason;
  EXPECT_TRUE(closed_by_server());
  EXPECT_EQ(sessions.load(), 0);
}

TEST_F(ChannelProtocol, MissingRequiredFeatureIsRefused) {
  proto::Hello hello;
  hello.features = proto::kFeatReplication;  // no resume
  send(proto::encode_message(hello));
  auto m = read_message();
  ASSERT_TRUE(m.has_value());
  auto* e = std::get_if<proto::ErrorMsg>(&*m);
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->reason.find("required features"), std::string::npos) << e->reason;
}

TEST_F(ChannelProtocol, CorruptedFrameClosesAndAppliesNothing) {
  handshake();
  auto f = repl_frame(1);
  f[proto::kHeaderSize + 40] ^= 0x01;  // one bit in the payload
  send(f);
  EXPECT_TRUE(closed_by_server());
  EXPECT_EQ(delivered.load(), 0);
  EXPECT_TRUE(eventually(io, [&] { return logs.contains("CRC32C mismatch"); }));
}

TEST_F(ChannelProtocol, SequenceGapClosesAndAppliesNothingAfterIt) {
  handshake();
  send(repl_frame(1));
  send(repl_frame(3));
  EXPECT_TRUE(closed_by_server());
  EXPECT_EQ(delivered.load(), 1);
  EXPECT_TRUE(eventually(io, [&] { return logs.contains("expected 2"); }));
}

TEST_F(ChannelProtocol, DuplicateIsDroppedNotDeliveredTwice) {
  handshake();
  send(repl_frame(1));
  send(repl_frame(1));
  send(repl_frame(2));
  EXPECT_TRUE(eventually(io, [&] { return delivered.load() == 2; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(delivered.load(), 2);
}

TEST_F(ChannelProtocol, SilentPeerIsDeclaredDead) {
  handshake();
  // Say nothing: the server's dead-peer timeout (1 s in tests) must fire.
  EXPECT_TRUE(eventually(io, [&] { return logs.contains("peer silent for"); }, 5s));
}

}  // namespace
}  // namespace tideway::testing

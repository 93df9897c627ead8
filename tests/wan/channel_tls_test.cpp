// Mutual TLS on the channel: valid certificates talk; a wrong CA, an expired
// certificate, no certificate and a peer not on the allow list are refused,
// get no data, and the refusal is logged.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include "tests/wan/channel_harness.h"

namespace tideway::testing {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class ChannelTls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new TestPki(TestPki::create()); }
  static void TearDownTestSuite() {
    pki_->remove();
    delete pki_;
  }
  void TearDown() override {
    io.call([&] {
      if (client) client->stop();
      if (server) server->stop();
      return 0;
    });
  }

  void start_server(std::vector<std::string> allowed = {}) {
    auto o = base_options("backup");
    use_certs(o, *pki_, pki_->issue("backup"));
    o.tls.allowed_peers = std::move(allowed);
    server = wan::ChannelServer::create(io.io(), o, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    server->on_session([this](const std::shared_ptr<wan::Session>& s) {
      ++sessions;
      s->on_message(kReplStream, [this, s](proto::MessageType, std::span<const uint8_t> p) {
        received.fetch_add(p.size());
        s->send(kAckStream, proto::MessageType::kProbe, p);  // echo back
      });
    });
    io.call([&] {
      server->start();
      return 0;
    });
  }

  void start_client(std::pair<std::string, std::string> cert, const std::string& ca = "") {
    auto o = base_options("primary");
    use_certs(o, *pki_, cert);
    if (!ca.empty()) o.tls.ca_file = ca;
    client = wan::ChannelClient::create(io.io(), o, "127.0.0.1", server->port());
    client->session()->on_message(kAckStream, [this](proto::MessageType, std::span<const uint8_t> p) {
      echoed.fetch_add(p.size());
    });
    io.call([&] {
      client->start();
      return client->session()->send(kReplStream, proto::MessageType::kProbe, std::vector<uint8_t>(100, 7));
    });
  }

  // A refused client: the server sees no session, no bytes reach either
  // application, and the client keeps failing to connect.
  void expect_refused(const std::string& log_needle) {
    ASSERT_TRUE(eventually(io, [&] { return server->refused() >= 2; }))
        << "the server never refused the client";
    EXPECT_EQ(sessions.load(), 0);
    EXPECT_EQ(received.load(), 0u);
    EXPECT_EQ(echoed.load(), 0u);
    EXPECT_NE(io.call([&] { return client->session()->state(); }), wan::SessionState::kConnected);
    EXPECT_TRUE(logs.contains(log_needle)) << "refusal not logged (looked for '" << log_needle << "')";
  }

  static TestPki* pki_;
  LogCapture logs;
  IoThread io;
  std::shared_ptr<wan::ChannelServer> server;
  std::shared_ptr<wan::ChannelClient> client;
  std::atomic<int> sessions{0};
  std::atomic<size_t> received{0}, echoed{0};
};
TestPki* ChannelTls::pki_ = nullptr;

TEST_F(ChannelTls, ValidCertificatesExchangeMessages) {
  start_server();
  start_client(pki_->issue("primary"));
  ASSERT_TRUE(eventually(io, [&] { return echoed.load() == 100; }));
  EXPECT_EQ(sessions.load(), 1);
  EXPECT_EQ(io.call([&] { return client->session()->peer_name(); }), "backup");
  EXPECT_TRUE(logs.contains("accepted site 'primary'"));
}

TEST_F(ChannelTls, CertificateFromAnotherCaIsRefused) {
  start_server();
  start_client(pki_->issue("primary", /*by_other_ca=*/true));
  expect_refused("TLS handshake failed");
}

TEST_F(ChannelTls, ExpiredCertificateIsRefused) {
  start_server();
  start_client(pki_->issue("primary", false, /*not_before_days=*/-30, /*valid_days=*/10));
  expect_refused("certificate has expired");
}

TEST_F(ChannelTls, NotYetValidCertificateIsRefused) {
  start_server();
  start_client(pki_->issue("primary", false, /*not_before_days=*/5, /*valid_days=*/10));
  expect_refused("certificate is not yet valid");
}

TEST_F(ChannelTls, PeerNotOnAllowListIsRefused) {
  start_server({"some-other-site"});
  start_client(pki_->issue("primary"));
  expect_refused("is not an allowed peer");
}

TEST_F(ChannelTls, ClientRefusesServerFromUntrustedCa) {
  start_server();
  // The client trusts only the other CA, so the real server is a stranger.
  start_client(pki_->issue("primary", true), pki_->other_ca);
  ASSERT_TRUE(eventually(io, [&] { return client->connect_attempts() >= 2; }));
  EXPECT_EQ(sessions.load(), 0);
  EXPECT_TRUE(logs.contains("refusing server certificate"));
}

TEST_F(ChannelTls, ClientWithoutCertificateGetsNoData) {
  start_server();
  // A raw TLS client that presents no certificate at all.
  asio::io_context io2;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(pki_->ca);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  asio::ssl::stream<tcp::socket> s(io2, ctx);
  s.next_layer().connect(tcp::endpoint(asio::ip::address_v4::loopback(), server->port()));
  boost::system::error_code ec;
  s.handshake(asio::ssl::stream_base::client, ec);  // TLS 1.3: may "succeed" client-side
  size_t got = 0;
  if (!ec) {
    proto::Hello hello;
    hello.features = proto::kAllFeatures;
    hello.site = "intruder";
    asio::write(s, asio::buffer(proto::encode_message(hello)), ec);
    std::vector<uint8_t> buf(4096);
    got = s.read_some(asio::buffer(buf), ec);
  }
  EXPECT_TRUE(ec) << "the server must close the connection";
  EXPECT_EQ(got, 0u) << "an unauthenticated peer must receive no data";
  ASSERT_TRUE(eventually(io, [&] { return server->refused() >= 1; }));
  EXPECT_EQ(sessions.load(), 0);
  EXPECT_TRUE(logs.contains("TLS handshake failed"));
}

TEST_F(ChannelTls, BadKeyMaterialIsAClearError) {
  auto o = base_options("x");
  o.tls.ca_file = pki_->ca;
  o.tls.cert_file = "/nonexistent/cert.pem";
  o.tls.key_file = "/nonexistent/key.pem";
  try {
    wan::ChannelClient::create(io.io(), o, "127.0.0.1", 1);
    FAIL() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/cert.pem"), std::string::npos) << e.what();
  }
  auto mismatched = pki_->issue("a");
  o.tls.cert_file = mismatched.first;
  o.tls.key_file = pki_->issue("b").second;
  EXPECT_THROW(wan::ChannelClient::create(io.io(), o, "127.0.0.1", 1), std::runtime_error);
}

}  // namespace
}  // namespace tideway::testing

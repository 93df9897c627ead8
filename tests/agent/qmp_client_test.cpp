// QmpClient against a scripted fake QMP server (tests/agent/fake_qmp_server.h):
// greeting and negotiation, replies matched by id when they come out of
// order with events between them, error replies, a server that closes in
// the middle of a command, malformed and random input (a clear error, never
// a crash), timeouts and the bound on outstanding commands.
#include <gtest/gtest.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <optional>
#include <random>

#include "agent/qmp_client.h"
#include "tests/agent/fake_qmp_server.h"
#include "tests/test_seed.h"

namespace tideway::testing {
namespace {

using agent::QmpClient;
using nlohmann::json;
using proto::Errc;
using namespace std::chrono_literals;

struct Fixture : ::testing::Test {
  boost::asio::io_context io;
  FakeQmpServer server{io};
  std::shared_ptr<QmpClient> client;

  void SetUp() override {
    server.listen();
    client = QmpClient::create(io, server.path());
  }
  void TearDown() override {
    if (client) client->close();
  }
  // Connects and fails the test if that does not work.
  void connect() {
    std::optional<proto::Result<void>> r;
    client->connect([&](proto::Result<void> res) { r = std::move(res); }, 3000ms);
    ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
    ASSERT_TRUE(r->ok()) << r->error().detail;
    ASSERT_TRUE(client->connected());
  }
};

using Qmp = Fixture;

TEST_F(Qmp, GreetingAndNegotiation) {
  connect();
  EXPECT_EQ(client->greeting()["QMP"]["version"]["qemu"]["major"], 7);
  ASSERT_EQ(server.received().size(), 1u);
  EXPECT_EQ(server.received()[0]["execute"], "qmp_capabilities");
  EXPECT_TRUE(server.received()[0].contains("id"));
  EXPECT_FALSE(server.received()[0].contains("arguments"));
}

TEST_F(Qmp, SecondConnectIsRefused) {
  connect();
  std::optional<proto::Result<void>> r;
  client->connect([&](proto::Result<void> res) { r = std::move(res); }, 1000ms);
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, Errc::kInvalid);
  EXPECT_TRUE(client->connected());  // the first connection is untouched
}

TEST(QmpConnect, WaitsForTheSocketToAppear) {
  boost::asio::io_context io;
  FakeQmpServer server(io);
  auto client = QmpClient::create(io, server.path());
  std::optional<proto::Result<void>> r;
  client->connect([&](proto::Result<void> res) { r = std::move(res); }, 3000ms);
  // QEMU creates its socket a moment after it starts.
  boost::asio::steady_timer later(io, 300ms);
  later.async_wait([&](boost::system::error_code) { server.listen(); });
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  ASSERT_TRUE(r->ok()) << r->error().detail;
  client->close();
}

TEST(QmpConnect, TimesOutWhenNobodyListens) {
  boost::asio::io_context io;
  FakeQmpServer server(io);  // never listens
  auto client = QmpClient::create(io, server.path());
  std::optional<proto::Result<void>> r;
  const auto t0 = std::chrono::steady_clock::now();
  client->connect([&](proto::Result<void> res) { r = std::move(res); }, 300ms);
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, Errc::kSystem);
  EXPECT_NE(r->error().detail.find("timed out after 300 ms waiting for QEMU's QMP socket"), std::string::npos)
      << r->error().detail;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2000ms);
  EXPECT_FALSE(client->connected());
}

TEST(QmpConnect, SocketPathTooLong) {
  boost::asio::io_context io;
  auto client = QmpClient::create(io, "/tmp/" + std::string(200, 'x'));
  std::optional<proto::Result<void>> r;
  client->connect([&](proto::Result<void> res) { r = std::move(res); }, 300ms);
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, Errc::kInvalid);
}

TEST(QmpConnect, BadGreetingIsAClearError) {
  for (const char* greeting : {R"({"hello": 1})", "not json at all", "[1, 2, 3]", R"({"QMP": 7})"}) {
    SCOPED_TRACE(greeting);
    boost::asio::io_context io;
    FakeQmpServer server(io, greeting);
    server.listen();
    auto client = QmpClient::create(io, server.path());
    std::optional<proto::Result<void>> r;
    client->connect([&](proto::Result<void> res) { r = std::move(res); }, 2000ms);
    ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
    ASSERT_FALSE(r->ok());
    EXPECT_EQ(r->error().code, Errc::kMalformed) << r->error().detail;
    EXPECT_FALSE(client->connected());
  }
}

TEST(QmpConnect, CapabilitiesRefused) {
  boost::asio::io_context io;
  FakeQmpServer server(io);
  server.set_answer_capabilities(false);
  server.set_script([](FakeQmpServer& s, const json& cmd) { s.error(cmd, "CommandNotFound", "nope"); });
  server.listen();
  auto client = QmpClient::create(io, server.path());
  std::optional<proto::Result<void>> r;
  client->connect([&](proto::Result<void> res) { r = std::move(res); }, 2000ms);
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().detail, "qmp_capabilities: CommandNotFound: nope");
}

TEST_F(Qmp, RepliesMatchedByIdWithEventsBetween) {
  // Holds three commands, then answers them in reverse order with events
  // before, between and after the replies.
  std::vector<json> held;
  server.set_script([&](FakeQmpServer& s, const json& cmd) {
    held.push_back(cmd);
    if (held.size() < 3) return;
    s.event("MIGRATION", {{"status", "setup"}});
    s.reply(held[2], {{"n", 3}});
    s.event("MIGRATION_PASS", {{"pass", 1}});
    s.reply(held[1], {{"n", 2}});
    s.event("STOP");
    s.reply(held[0], {{"n", 1}});
    s.event("RESUME");
  });
  connect();
  std::vector<std::pair<std::string, json>> events;
  client->on_event([&](const std::string& e, const json& d) { events.emplace_back(e, d); });
  std::vector<int> order;
  std::map<std::string, int> got;
  for (const char* c : {"a", "b", "c"}) {
    client->execute(c, nullptr, [&, c](proto::Result<json> r) {
      ASSERT_TRUE(r.ok()) << r.error().detail;
      got[c] = r->at("n").get<int>();
      order.push_back(got[c]);
    });
  }
  ASSERT_TRUE(run_until(io, [&] { return got.size() == 3 && events.size() == 4; }));
  EXPECT_EQ(got["a"], 1);
  EXPECT_EQ(got["b"], 2);
  EXPECT_EQ(got["c"], 3);
  EXPECT_EQ(order, (std::vector<int>{3, 2, 1}));
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].first, "MIGRATION");
  EXPECT_EQ(events[0].second["status"], "setup");
  EXPECT_EQ(events[1].first, "MIGRATION_PASS");
  EXPECT_EQ(events[1].second["pass"], 1);
  EXPECT_EQ(events[2].first, "STOP");
  EXPECT_TRUE(events[2].second.is_object() && events[2].second.empty());  // no data: an empty object
  EXPECT_EQ(events[3].first, "RESUME");
  EXPECT_EQ(client->outstanding(), 0u);
}

TEST_F(Qmp, ArgumentsAreSentAndIdsAreDistinct) {
  server.set_script([](FakeQmpServer& s, const json& cmd) { s.reply(cmd, json::object()); });
  connect();
  int done = 0;
  client->execute("migrate", json{{"uri", "unix:/x"}}, [&](proto::Result<json> r) { done += r.ok(); });
  client->execute("stop", json::object(), [&](proto::Result<json> r) { done += r.ok(); });
  ASSERT_TRUE(run_until(io, [&] { return done == 2; }));
  const auto& rx = server.received();
  ASSERT_EQ(rx.size(), 3u);
  EXPECT_EQ(rx[1]["execute"], "migrate");
  EXPECT_EQ(rx[1]["arguments"]["uri"], "unix:/x");
  EXPECT_FALSE(rx[2].contains("arguments"));
  EXPECT_NE(rx[0]["id"], rx[1]["id"]);
  EXPECT_NE(rx[1]["id"], rx[2]["id"]);
}

TEST_F(Qmp, ErrorReplyCarriesClassAndDesc) {
  server.set_script([](FakeQmpServer& s, const json& cmd) {
    s.error(cmd, "GenericError", "There's a migration process in progress");
  });
  connect();
  std::optional<proto::Result<json>> r;
  client->execute("migrate", json{{"uri", "unix:/x"}}, [&](proto::Result<json> res) { r = std::move(res); });
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, Errc::kInvalid);
  EXPECT_EQ(r->error().detail, "migrate: GenericError: There's a migration process in progress");
  EXPECT_TRUE(client->connected());  // an error reply is not a broken connection
}

TEST_F(Qmp, ReplyWithoutIdAnswersTheOldestCommand) {
  // QEMU answers a request it cannot parse without an id; it runs commands in order.
  std::vector<json> held;
  server.set_script([&](FakeQmpServer& s, const json& cmd) {
    held.push_back(cmd);
    if (held.size() < 2) return;
    s.send(json{{"error", {{"class", "GenericError"}, {"desc", "JSON parse error"}}}});
    s.reply(held[1], {{"ok", true}});
  });
  connect();
  std::optional<proto::Result<json>> first, second;
  client->execute("one", nullptr, [&](proto::Result<json> r) { first = std::move(r); });
  client->execute("two", nullptr, [&](proto::Result<json> r) { second = std::move(r); });
  ASSERT_TRUE(run_until(io, [&] { return first && second; }));
  ASSERT_FALSE(first->ok());
  EXPECT_EQ(first->error().detail, "one: GenericError: JSON parse error");
  EXPECT_TRUE(second->ok());
}

TEST_F(Qmp, ServerClosesMidCommand) {
  server.set_script([](FakeQmpServer& s, const json& cmd) {
    if (cmd["execute"] == "second") s.close_now();  // both still unanswered
  });
  connect();
  std::optional<proto::Error> closed;
  client->on_close([&](const proto::Error& e) { closed = e; });
  std::vector<proto::Result<json>> replies;
  client->execute("first", nullptr, [&](proto::Result<json> r) { replies.push_back(std::move(r)); });
  client->execute("second", nullptr, [&](proto::Result<json> r) { replies.push_back(std::move(r)); });
  ASSERT_TRUE(run_until(io, [&] { return replies.size() == 2 && closed; }));
  for (const auto& r : replies) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kSystem);
    EXPECT_NE(r.error().detail.find(agent::kQmpPeerClosed), std::string::npos) << r.error().detail;
  }
  EXPECT_EQ(replies[0].error().detail.rfind("first: ", 0), 0u);
  EXPECT_FALSE(client->connected());
  // Later commands fail at once with a clear error, and nothing is sent.
  std::optional<proto::Result<json>> late;
  client->execute("third", nullptr, [&](proto::Result<json> r) { late = std::move(r); });
  ASSERT_TRUE(run_until(io, [&] { return late.has_value(); }));
  ASSERT_FALSE(late->ok());
  EXPECT_NE(late->error().detail.find("not connected"), std::string::npos);
}

TEST_F(Qmp, MalformedJsonIsAClearErrorNotACrash) {
  server.set_script([](FakeQmpServer& s, const json&) { s.send_raw("{\"return\": {\"status\": \"act\r\n"); });
  connect();
  std::optional<proto::Error> closed;
  client->on_close([&](const proto::Error& e) { closed = e; });
  std::optional<proto::Result<json>> r;
  client->execute("query-migrate", nullptr, [&](proto::Result<json> res) { r = std::move(res); });
  ASSERT_TRUE(run_until(io, [&] { return r.has_value() && closed; }));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, Errc::kMalformed);
  EXPECT_NE(r->error().detail.find("not a JSON object"), std::string::npos) << r->error().detail;
  EXPECT_EQ(closed->code, Errc::kMalformed);
  EXPECT_FALSE(client->connected());
}

TEST_F(Qmp, OverlongLineIsRefused) {
  server.set_script([](FakeQmpServer& s, const json&) {
    s.send_raw("{\"return\": \"" + std::string(QmpClient::kMaxLine + 10, 'x') + "\"}\r\n");
  });
  connect();
  std::optional<proto::Result<json>> r;
  client->execute("query-qmp-schema", nullptr, [&](proto::Result<json> res) { r = std::move(res); });
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }, 20000ms));
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->error().code, Errc::kTooLarge) << r->error().detail;
}

TEST_F(Qmp, TimeoutThenLateReplyIsDropped) {
  std::vector<json> held;
  server.set_script([&](FakeQmpServer& s, const json& cmd) {
    held.push_back(cmd);
    if (cmd["execute"] == "fast") {
      s.reply(held[0], {{"late", true}});  // the slow one's answer, after its timeout
      s.reply(cmd, {{"fast", true}});
    }
  });
  connect();
  std::optional<proto::Result<json>> slow, fast;
  client->execute("slow", nullptr, [&](proto::Result<json> r) { slow = std::move(r); }, 100ms);
  ASSERT_TRUE(run_until(io, [&] { return slow.has_value(); }));
  ASSERT_FALSE(slow->ok());
  EXPECT_EQ(slow->error().code, Errc::kSystem);
  EXPECT_EQ(slow->error().detail, "slow: no reply from QEMU within 100 ms");
  client->execute("fast", nullptr, [&](proto::Result<json> r) { fast = std::move(r); });
  ASSERT_TRUE(run_until(io, [&] { return fast.has_value(); }));
  ASSERT_TRUE(fast->ok());
  EXPECT_EQ((*fast)->at("fast"), true);
  EXPECT_TRUE(client->connected());
}

TEST_F(Qmp, OutstandingCommandsAreBounded) {
  connect();  // the script answers nothing
  int failed_full = 0, failed_closed = 0;
  for (size_t i = 0; i < QmpClient::kMaxOutstanding + 3; ++i) {
    client->execute("hang", nullptr, [&](proto::Result<json> r) {
      ASSERT_FALSE(r.ok());
      if (r.error().code == Errc::kTooLarge) ++failed_full;
      if (r.error().code == Errc::kSystem) ++failed_closed;
    });
  }
  EXPECT_EQ(client->outstanding(), QmpClient::kMaxOutstanding);
  ASSERT_TRUE(run_until(io, [&] { return failed_full == 3; }));
  // close() answers every pending reply, once, before it returns.
  client->close();
  EXPECT_EQ(failed_closed, static_cast<int>(QmpClient::kMaxOutstanding));
  EXPECT_EQ(client->outstanding(), 0u);
}

TEST_F(Qmp, BadArgumentsSendNothing) {
  connect();
  int errors = 0;
  client->execute("x", json::array({1}), [&](proto::Result<json> r) { errors += !r.ok(); });
  client->execute("", nullptr, [&](proto::Result<json> r) { errors += !r.ok(); });
  client->execute("x", json{{"file", std::string("\xff\xfe")}}, [&](proto::Result<json> r) {
    errors += !r.ok();
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::kInvalid);
    }
  });
  ASSERT_TRUE(run_until(io, [&] { return errors == 3; }));
  EXPECT_EQ(server.received().size(), 1u);  // only qmp_capabilities
  EXPECT_TRUE(client->connected());
}

TEST_F(Qmp, UnknownIdAndExtraGreetingAreIgnored) {
  server.set_script([](FakeQmpServer& s, const json& cmd) {
    s.send(json{{"return", json::object()}, {"id", 987654}});
    s.send_raw(FakeQmpServer::default_greeting() + "\r\n");
    s.send_raw("\r\n");
    s.reply(cmd, {{"ok", 1}});
  });
  connect();
  std::optional<proto::Result<json>> r;
  client->execute("x", nullptr, [&](proto::Result<json> res) { r = std::move(res); });
  ASSERT_TRUE(run_until(io, [&] { return r.has_value(); }));
  ASSERT_TRUE(r->ok());
  EXPECT_TRUE(client->connected());
}

// Random garbage from "QEMU": every line must end in a reply (ok or a
// clear error) or be ignored, never a crash or a hang; after a fatal line
// the client is closed and refuses further commands.
TEST(QmpFuzz, RandomLinesNeverCrash) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const std::vector<std::string> pieces = {
      "{", "}", "[", "]", "\"return\"", "\"error\"", "\"event\"", "\"id\"", ":", ",", "1", "-1", "1e999", "null",
      "\"x\"", "{\"class\": 3}", "\"data\"", "\"QMP\"", "true", "\xff", "\\u0000", " ", "18446744073709551616"};
  for (int round = 0; round < 200; ++round) {
    boost::asio::io_context io;
    FakeQmpServer server(io);
    std::string line;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) line += pieces[rng() % pieces.size()];
    server.set_script([&](FakeQmpServer& s, const json& cmd) {
      s.send_raw(line + "\r\n");
      s.reply(cmd, {{"after", true}});
    });
    server.listen();
    auto client = QmpClient::create(io, server.path());
    std::optional<proto::Result<void>> c;
    client->connect([&](proto::Result<void> r) { c = std::move(r); }, 2000ms);
    ASSERT_TRUE(run_until(io, [&] { return c.has_value(); }));
    ASSERT_TRUE(c->ok());
    int events = 0;
    client->on_event([&](const std::string&, const json&) { ++events; });
    std::optional<proto::Result<json>> r;
    client->execute("x", nullptr, [&](proto::Result<json> res) { r = std::move(res); });
    ASSERT_TRUE(run_until(io, [&] { return r.has_value(); })) << "line: " << line;
    if (!r->ok()) {
      const auto code = r->error().code;
      EXPECT_TRUE(code == Errc::kMalformed || code == Errc::kInvalid) << r->error().detail;
      if (code == Errc::kMalformed) {
        EXPECT_FALSE(client->connected());
      }
    }
    client->close();
  }
}

}  // namespace
}  // namespace tideway::testing

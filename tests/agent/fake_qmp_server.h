// A scripted QMP server for QmpClient tests: listens on a unix socket in a
// temp dir, on the test's io_context, sends a greeting and hands every line
// the client sends to the test's script, which answers (or not) with
// whatever bytes it likes: out-of-order replies, events in between, errors,
// garbage, or a closed socket.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace tideway::testing {

// Runs `io` until `done()`; false after `limit` (the caller fails the test).
template <typename Pred>
bool run_until(boost::asio::io_context& io, Pred done,
               std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  const auto end = std::chrono::steady_clock::now() + limit;
  io.restart();
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    io.run_one_for(std::chrono::milliseconds(10));
    io.restart();
  }
  return true;
}

class FakeQmpServer {
 public:
  using local = boost::asio::local::stream_protocol;
  // Called with each command the client sent (parsed; the raw line if it
  // did not parse).
  using Script = std::function<void(FakeQmpServer& s, const nlohmann::json& cmd)>;

  FakeQmpServer(boost::asio::io_context& io, std::string greeting = default_greeting())
      : io_(io), acceptor_(io), greeting_(std::move(greeting)) {
    char tmpl[] = "/tmp/h5-qmp-test.XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    EXPECT_NE(d, nullptr);
    dir_ = d ? d : "/tmp";
    path_ = dir_ + "/qmp.sock";
  }
  ~FakeQmpServer() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    if (conn_) conn_->sock.close(ec);
    std::filesystem::remove_all(dir_, ec_fs_);
  }

  static std::string default_greeting() {
    return R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": ["oob"]}})";
  }

  const std::string& path() const { return path_; }
  void set_script(Script s) { script_ = std::move(s); }
  // By default qmp_capabilities is answered {"return": {}} before the script sees anything.
  void set_answer_capabilities(bool on) { answer_caps_ = on; }

  void listen() {
    acceptor_.open(local());
    acceptor_.bind(local::endpoint(path_));
    acceptor_.listen(4);
    accept();
  }

  // Replies and events, as QEMU writes them (one object and CRLF).
  void send(const nlohmann::json& j) { send_raw(j.dump() + "\r\n"); }
  void reply(const nlohmann::json& cmd, nlohmann::json ret) {
    nlohmann::json r{{"return", std::move(ret)}};
    if (cmd.contains("id")) r["id"] = cmd["id"];
    send(r);
  }
  void error(const nlohmann::json& cmd, const std::string& cls, const std::string& desc) {
    nlohmann::json r{{"error", {{"class", cls}, {"desc", desc}}}};
    if (cmd.contains("id")) r["id"] = cmd["id"];
    send(r);
  }
  void event(const std::string& name, nlohmann::json data = nullptr) {
    nlohmann::json e{{"timestamp", {{"seconds", 1}, {"microseconds", 2}}}, {"event", name}};
    if (!data.is_null()) e["data"] = std::move(data);
    send(e);
  }
  void send_raw(std::string bytes) {
    if (!conn_) return;
    conn_->out.push_back(std::move(bytes));
    if (conn_->out.size() == 1) write_next(conn_);
  }
  // Closes the connection once everything queued has been written.
  void close_after_writes() {
    if (!conn_) return;
    conn_->close_when_flushed = true;
    if (conn_->out.empty()) close_now();
  }
  void close_now() {
    boost::system::error_code ec;
    if (conn_) conn_->sock.close(ec);
  }

  // Every command line the client sent, parsed (discarded if not JSON).
  const std::vector<nlohmann::json>& received() const { return received_; }
  int connections() const { return connections_; }

 private:
  struct Conn {
    explicit Conn(boost::asio::io_context& io) : sock(io) {}
    local::socket sock;
    boost::asio::streambuf in;
    std::deque<std::string> out;
    bool close_when_flushed = false;
  };

  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, local::socket s) {
      if (ec) return;
      ++connections_;
      conn_ = std::make_shared<Conn>(io_);
      conn_->sock = std::move(s);
      send_raw(greeting_ + "\r\n");
      read(conn_);
      accept();
    });
  }
  void read(std::shared_ptr<Conn> c) {
    boost::asio::async_read_until(c->sock, c->in, '\n', [this, c](boost::system::error_code ec, size_t n) {
      if (ec) return;
      std::string line(boost::asio::buffers_begin(c->in.data()), boost::asio::buffers_begin(c->in.data()) + n);
      c->in.consume(n);
      auto j = nlohmann::json::parse(line, nullptr, false);
      received_.push_back(j);
      if (answer_caps_ && j.is_object() && j.value("execute", "") == "qmp_capabilities") {
        reply(j, nlohmann::json::object());
      } else if (script_) {
        script_(*this, j);
      }
      if (c == conn_) read(c);
    });
  }
  void write_next(std::shared_ptr<Conn> c) {
    boost::asio::async_write(c->sock, boost::asio::buffer(c->out.front()),
                             [this, c](boost::system::error_code ec, size_t) {
                               if (ec) return;
                               c->out.pop_front();
                               if (!c->out.empty()) return write_next(c);
                               if (c->close_when_flushed) {
                                 boost::system::error_code e2;
                                 c->sock.close(e2);
                               }
                             });
  }

  boost::asio::io_context& io_;
  local::acceptor acceptor_;
  std::string greeting_;
  std::string dir_, path_;
  std::error_code ec_fs_;
  Script script_;
  bool answer_caps_ = true;
  std::shared_ptr<Conn> conn_;
  std::vector<nlohmann::json> received_;
  int connections_ = 0;
};

}  // namespace tideway::testing

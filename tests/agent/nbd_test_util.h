// Helpers for the NBD tap tests: a temp dir, child processes with a
// timeout, an io_context on two threads, a BlockTarget that delays write
// completion (sync mode's WAN round trip), and a small blocking NBD client
// for the protocol details real clients never exercise.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/block_target.h"
#include "proto/nbd.h"

namespace tideway::testing {

// mkdtemp under /tmp (short: unix socket paths are limited to 107 bytes);
// removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;  // -1: killed (timeout or signal)
  bool timed_out = false;
  std::string out, err;
  std::string describe() const;  // for assertion messages
};
// Runs argv[0] from PATH; kills it (SIGKILL) and reaps it after `timeout`.
RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));

// Runs an io_context on `n` threads until destroyed.
class IoThreads {
 public:
  explicit IoThreads(int n = 2);
  ~IoThreads();
  boost::asio::io_context& io() { return io_; }
  void stop();

 private:
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
};

// Wraps a real target; writes go to it at once, but their completion (and
// a flush's) is reported from another thread after delay(write index), as
// in sync mode. Records how many writes were pending at the same time.
class DelayedTarget final : public agent::BlockTarget {
 public:
  using DelayFn = std::function<std::chrono::milliseconds(uint64_t index)>;
  DelayedTarget(agent::BlockTarget& inner, DelayFn delay);
  ~DelayedTarget() override;  // completes whatever is still pending first

  uint64_t size() const override { return inner_.size(); }
  int read(uint64_t offset, std::span<uint8_t> out) override { return inner_.read(offset, out); }
  void write(uint64_t offset, std::span<const uint8_t> data, bool fua, agent::IoDone done) override;
  void flush(agent::IoDone done) override;
  void discard(uint64_t offset, uint64_t length, agent::IoDone done) override;

  size_t max_pending() const;
  size_t pending() const;
  uint64_t writes() const;

 private:
  void schedule(std::chrono::milliseconds delay, std::function<void()> fn);
  void loop();

  agent::BlockTarget& inner_;
  DelayFn delay_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::chrono::steady_clock::time_point, std::function<void()>> queue_;
  size_t pending_ = 0, max_pending_ = 0;
  uint64_t writes_ = 0;
  bool quit_ = false;
  std::thread thread_;
};

// Blocking NBD client over a unix or TCP socket, with a receive timeout so
// a server bug fails the test instead of hanging it.
class RawClient {
 public:
  static RawClient unix_socket(const std::string& path);
  static RawClient tcp(uint16_t port);
  ~RawClient();
  RawClient(RawClient&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  RawClient& operator=(RawClient&&) = delete;

  bool connected() const { return fd_ >= 0; }
  void send(std::span<const uint8_t> b);
  // False on EOF, error or timeout.
  bool recv(std::span<uint8_t> b);
  std::vector<uint8_t> recv_n(size_t n);  // empty on failure
  // True when the server has closed the connection (EOF, not a timeout).
  bool closed_by_peer();

  // Handshake steps. greet() reads the greeting and sends `client_flags`.
  uint16_t greet(uint32_t client_flags = proto::nbd::kClientFixedNewstyle | proto::nbd::kClientNoZeroes);
  void send_option(uint32_t option, std::span<const uint8_t> data = {});
  struct OptReply {
    proto::nbd::OptionReplyHeader h;
    std::vector<uint8_t> data;
  };
  OptReply recv_option_reply();
  // greet + GO(name, BLOCK_SIZE); true when the server acked. Size and
  // flags from NBD_INFO_EXPORT land in the out-parameters.
  bool go(const std::string& name, uint64_t* size = nullptr, uint16_t* flags = nullptr);

  // Transmission.
  void request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length, uint16_t flags = 0,
               std::span<const uint8_t> payload = {});
  proto::nbd::SimpleReply reply();  // cookie 0 / error 0xffffffff on failure

 private:
  explicit RawClient(int fd) : fd_(fd) {}
  int fd_ = -1;
};

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed);
std::vector<uint8_t> read_file(const std::string& path);
void write_file(const std::string& path, std::span<const uint8_t> data);

}  // namespace tideway::testing

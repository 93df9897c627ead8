#include "tests/agent/nbd_test_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace tideway::testing {

namespace nbd = proto::nbd;

TempDir::TempDir() {
  char tmpl[] = "/tmp/tw-nbd-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string RunResult::describe() const {
  std::ostringstream s;
  s << "exit " << exit_code << (timed_out ? " (timed out)" : "") << "\n--- stdout ---\n"
    << out << "\n--- stderr ---\n"
    << err;
  return s.str();
}

RunResult run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  RunResult r;
  TempDir logs;
  const std::string out = logs.file("out"), err = logs.file("err");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    r.err = std::string("posix_spawnp ") + argv[0] + ": " + std::strerror(rc);
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);  // never leave a client behind
      ::waitpid(pid, &status, 0);
      r.timed_out = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!r.timed_out && WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  const auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

IoThreads::IoThreads(int n) : work_(io_.get_executor()) {
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { io_.run(); });
}
IoThreads::~IoThreads() { stop(); }
void IoThreads::stop() {
  work_.reset();
  io_.stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

// DelayedTarget ----------------------------------------------------------------

DelayedTarget::DelayedTarget(agent::BlockTarget& inner, DelayFn delay)
    : inner_(inner), delay_(std::move(delay)), thread_([this] { loop(); }) {}

DelayedTarget::~DelayedTarget() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DelayedTarget::schedule(std::chrono::milliseconds delay, std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    queue_.emplace(std::chrono::steady_clock::now() + delay, std::move(fn));
    max_pending_ = std::max(max_pending_, ++pending_);
  }
  cv_.notify_all();
}

void DelayedTarget::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (queue_.empty()) {
      if (quit_) return;
      cv_.wait(lock);
      continue;
    }
    const auto due = queue_.begin()->first;
    // On quit, run what is left at once: nobody may wait on a lost completion.
    if (!quit_ && std::chrono::steady_clock::now() < due) {
      cv_.wait_until(lock, due);
      continue;
    }
    auto fn = std::move(queue_.begin()->second);
    queue_.erase(queue_.begin());
    // No longer pending once its completion is delivered: the server may
    // take on the next request before fn() has even returned.
    --pending_;
    lock.unlock();
    fn();
    fn = nullptr;  // drop what it holds (the connection) outside the lock
    lock.lock();
  }
}

void DelayedTarget::write(uint64_t offset, std::span<const uint8_t> data, bool fua, agent::IoDone done) {
  uint64_t index;
  {
    std::lock_guard lock(mu_);
    index = writes_++;
  }
  int err = 0;
  inner_.write(offset, data, fua, [&err](int e) { err = e; });  // LocalVolume completes inline
  schedule(delay_(index), [done = std::move(done), err] { done(err); });
}

void DelayedTarget::flush(agent::IoDone done) {
  int err = 0;
  inner_.flush([&err](int e) { err = e; });
  schedule(delay_(0), [done = std::move(done), err] { done(err); });
}

void DelayedTarget::discard(uint64_t offset, uint64_t length, agent::IoDone done) {
  inner_.discard(offset, length, std::move(done));
}

size_t DelayedTarget::max_pending() const {
  std::lock_guard lock(mu_);
  return max_pending_;
}
size_t DelayedTarget::pending() const {
  std::lock_guard lock(mu_);
  return pending_;
}
uint64_t DelayedTarget::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

// RawClient ----------------------------------------------------------------------

namespace {
int with_timeout(int fd) {
  timeval tv{};
  tv.tv_sec = 10;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}
}  // namespace

RawClient RawClient::unix_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return RawClient(-1);
  }
  return RawClient(with_timeout(fd));
}

RawClient RawClient::tcp(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return RawClient(-1);
  }
  return RawClient(with_timeout(fd));
}

RawClient::~RawClient() {
  if (fd_ >= 0) ::close(fd_);
}

void RawClient::send(std::span<const uint8_t> b) {
  size_t done = 0;
  while (done < b.size()) {
    const ssize_t n = ::send(fd_, b.data() + done, b.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;  // the next recv reports the failure
    done += static_cast<size_t>(n);
  }
}

bool RawClient::recv(std::span<uint8_t> b) {
  size_t done = 0;
  while (done < b.size()) {
    const ssize_t n = ::recv(fd_, b.data() + done, b.size() - done, 0);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::vector<uint8_t> RawClient::recv_n(size_t n) {
  std::vector<uint8_t> b(n);
  if (!recv(b)) return {};
  return b;
}

bool RawClient::closed_by_peer() {
  uint8_t b;
  const ssize_t n = ::recv(fd_, &b, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

uint16_t RawClient::greet(uint32_t client_flags) {
  auto g = recv_n(nbd::kGreetingSize);
  auto flags = nbd::decode_greeting(g);
  send(nbd::encode_client_flags(client_flags));
  return flags.ok() ? *flags : 0;
}

void RawClient::send_option(uint32_t option, std::span<const uint8_t> data) {
  send(nbd::encode_option_header({option, static_cast<uint32_t>(data.size())}));
  send(data);
}

RawClient::OptReply RawClient::recv_option_reply() {
  OptReply r;
  auto h = nbd::decode_option_reply_header(recv_n(nbd::kOptionReplyHeaderSize));
  if (!h) {
    r.h.type = 0;
    return r;
  }
  r.h = *h;
  r.data = recv_n(h->length);
  return r;
}

bool RawClient::go(const std::string& name, uint64_t* size, uint16_t* flags) {
  greet();
  send_option(static_cast<uint32_t>(nbd::Opt::kGo),
              nbd::encode_go({name, {static_cast<uint16_t>(nbd::Info::kBlockSize)}}));
  for (;;) {
    auto r = recv_option_reply();
    if (r.h.type == static_cast<uint32_t>(nbd::Rep::kAck)) return true;
    if (r.h.type != static_cast<uint32_t>(nbd::Rep::kInfo)) return false;
    if (r.data.size() == 12 && r.data[0] == 0 && r.data[1] == 0) {
      uint64_t s = 0;
      for (int i = 2; i < 10; ++i) s = s << 8 | r.data[i];
      if (size) *size = s;
      if (flags) *flags = static_cast<uint16_t>(r.data[10] << 8 | r.data[11]);
    }
  }
}

void RawClient::request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length, uint16_t flags,
                        std::span<const uint8_t> payload) {
  send(nbd::encode_request({flags, type, cookie, offset, length}));
  send(payload);
}

nbd::SimpleReply RawClient::reply() {
  auto r = nbd::decode_simple_reply(recv_n(nbd::kSimpleReplySize));
  if (!r) return {0xffffffffu, 0};
  return *r;
}

// Files ----------------------------------------------------------------------------

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(b.data() + i, &v, std::min<size_t>(8, n - i));
  }
  return b;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::string& path, std::span<const uint8_t> data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
}

}  // namespace tideway::testing

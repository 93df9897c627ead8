// Test support for the FUSE tap: fakes below BlockTarget (recording, delayed
// completion) and RAII guards that undo every mount, loop device, process
// and temp dir, also when a test fails half-way.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/block_target.h"
#include "agent/local_volume.h"

namespace tideway::agent::test {

// Root tests fail (never skip) when they cannot run: CI runs them as root.
inline void require_root_and_fuse() {
  ASSERT_EQ(::geteuid(), 0u) << "FUSE tap tests need root (CI runs them as root)";
  ASSERT_EQ(::access("/dev/fuse", R_OK | W_OK), 0) << "/dev/fuse is missing: modprobe fuse";
}

struct CmdResult {
  int status = -1;  // exit code, or 128 + signal
  std::string out;  // stdout and stderr
};

// Runs a shell command, capturing its output.
inline CmdResult run(const std::string& cmd) {
  CmdResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline bool is_mounted(const std::string& path) {
  std::ifstream m("/proc/self/mounts");
  std::string dev, mnt, rest;
  while (m >> dev >> mnt && std::getline(m, rest))
    if (mnt == path) return true;
  return false;
}

inline std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

inline std::vector<uint8_t> read_file_range(const std::string& path, uint64_t off, size_t n) {
  std::vector<uint8_t> v(n);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  ssize_t got = ::pread(fd, v.data(), n, static_cast<off_t>(off));
  ::close(fd);
  if (got != static_cast<ssize_t>(n)) return {};
  return v;
}

// A unique directory under /tmp. Anything still mounted below it is detached
// before it is removed (remove_all must never descend into a live mount).
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/tideway-fuse-test.XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::ifstream m("/proc/self/mounts");
    std::string dev, mnt, rest;
    std::vector<std::string> below;
    while (m >> dev >> mnt && std::getline(m, rest))
      if (mnt.rfind(path_ + "/", 0) == 0) below.push_back(mnt);
    for (auto it = below.rbegin(); it != below.rend(); ++it) ::umount2(it->c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const {
    std::string p = path_ + "/" + name;
    std::filesystem::create_directories(p);
    return p;
  }

 private:
  std::string path_;
};

// A loop device over `file`, detached in the destructor.
class LoopDevice {
 public:
  LoopDevice(const std::string& file, bool direct_io) {
    auto r = run("losetup --find --show --direct-io=" + std::string(direct_io ? "on " : "off ") + file);
    if (r.status == 0 && r.out.rfind("/dev/loop", 0) == 0) dev_ = r.out.substr(0, r.out.find('\n'));
    else error_ = r.out;
  }
  ~LoopDevice() { detach(); }
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  bool ok() const { return !dev_.empty(); }
  const std::string& dev() const { return dev_; }
  const std::string& error() const { return error_; }
  void detach() {
    if (dev_.empty()) return;
    run("losetup -d " + dev_);
    dev_.clear();
  }

 private:
  std::string dev_, error_;
};

// `mount` of a device, unmounted (lazily if it must be) in the destructor.
class Mount {
 public:
  Mount(const std::string& dev, const std::string& dir, const std::string& opts = "") : dir_(dir) {
    auto r = run("mount " + (opts.empty() ? "" : "-o " + opts + " ") + dev + " " + dir);
    ok_ = r.status == 0;
    error_ = r.out;
  }
  ~Mount() { unmount(); }
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  bool unmount() {
    if (!ok_) return true;
    ok_ = false;
    if (::umount2(dir_.c_str(), 0) == 0) return true;
    ::umount2(dir_.c_str(), MNT_DETACH);
    return false;
  }

 private:
  std::string dir_, error_;
  bool ok_ = false;
};

// A child process (argv[0] is a path), stdout on a pipe. The destructor ends
// it (SIGTERM, then SIGKILL) and reaps it.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      std::vector<char*> a;
      for (auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      ::execv(a[0], a.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      if (!wait_exit(std::chrono::seconds(10))) {
        ::kill(pid_, SIGKILL);
        wait_exit(std::chrono::seconds(10));
      }
    }
    if (out_ >= 0) ::close(out_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }

  // Reads stdout until a line starting with `prefix`; returns that line.
  std::string wait_line(const std::string& prefix, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      for (size_t nl; (nl = buf_.find('\n')) != std::string::npos;) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (line.rfind(prefix, 0) == 0) return line;
      }
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char tmp[512];
      ssize_t n = ::read(out_, tmp, sizeof tmp);
      if (n <= 0) return {};
      buf_.append(tmp, static_cast<size_t>(n));
    }
    return {};
  }

  // Waits for the child to exit; false on timeout. Sets status().
  bool wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pid_ > 0) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = st;
        pid_ = -1;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  int status() const { return status_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int status_ = 0;
  std::string buf_;
};

// A fake BELOW the tap: forwards to a LocalVolume and logs every call and
// every completion, in the order they happen.
class RecordingTarget final : public BlockTarget {
 public:
  enum class Kind { kWriteCall, kWriteDone, kFlushCall, kFlushDone, kDiscardCall, kDiscardDone };
  struct Event {
    Kind kind;
    uint64_t offset = 0, length = 0;
    bool fua = false;
  };
  explicit RecordingTarget(BlockTarget& inner) : inner_(inner) {}

  uint64_t size() const override { return inner_.size(); }
  int read(uint64_t offset, std::span<uint8_t> out) override { return inner_.read(offset, out); }
  void write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) override {
    log({Kind::kWriteCall, offset, data.size(), fua});
    inner_.write(offset, data, fua, [this, offset, n = data.size(), fua, done = std::move(done)](int e) {
      log({Kind::kWriteDone, offset, n, fua});
      done(e);
    });
  }
  void flush(IoDone done) override {
    log({Kind::kFlushCall});
    inner_.flush([this, done = std::move(done)](int e) {
      log({Kind::kFlushDone});
      done(e);
    });
  }
  void discard(uint64_t offset, uint64_t length, IoDone done) override {
    log({Kind::kDiscardCall, offset, length});
    inner_.discard(offset, length, [this, offset, length, done = std::move(done)](int e) {
      log({Kind::kDiscardDone, offset, length});
      done(e);
    });
  }

  std::vector<Event> events() const {
    std::lock_guard lk(mu_);
    return events_;
  }
  size_t count() const {
    std::lock_guard lk(mu_);
    return events_.size();
  }

 private:
  void log(Event e) {
    std::lock_guard lk(mu_);
    events_.push_back(e);
  }
  BlockTarget& inner_;
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

// True if [off, off+len) is covered by the write completions among
// events[0, end) (the bytes reached the target before events[end]).
inline bool covered_by_writes(const std::vector<RecordingTarget::Event>& ev, size_t end, uint64_t off,
                              uint64_t len) {
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (size_t i = 0; i < end && i < ev.size(); ++i)
    if (ev[i].kind == RecordingTarget::Kind::kWriteDone) spans.emplace_back(ev[i].offset, ev[i].offset + ev[i].length);
  std::sort(spans.begin(), spans.end());
  uint64_t pos = off;
  for (auto& [a, b] : spans) {
    if (a > pos) break;
    pos = std::max(pos, b);
    if (pos >= off + len) return true;
  }
  return len == 0 || pos >= off + len;
}

// A fake BELOW the tap that emulates sync mode: the local I/O is done at
// once, the completion runs on another thread `delay` later (a WAN ack).
class DelayedTarget final : public BlockTarget {
 public:
  DelayedTarget(BlockTarget& inner, std::chrono::milliseconds delay) : inner_(inner), delay_(delay) {
    thread_ = std::thread([this] { run_completions(); });
  }
  ~DelayedTarget() override {
    {
      std::lock_guard lk(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  uint64_t size() const override { return inner_.size(); }
  int read(uint64_t offset, std::span<uint8_t> out) override { return inner_.read(offset, out); }
  void write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) override {
    inner_.write(offset, data, fua, [this, done = std::move(done)](int e) mutable { later(std::move(done), e); });
  }
  void flush(IoDone done) override {
    inner_.flush([this, done = std::move(done)](int e) mutable { later(std::move(done), e); });
  }
  void discard(uint64_t offset, uint64_t length, IoDone done) override {
    inner_.discard(offset, length, [this, done = std::move(done)](int e) mutable { later(std::move(done), e); });
  }
  int max_pending() const {
    std::lock_guard lk(mu_);
    return max_pending_;
  }

 private:
  struct Pending {
    std::chrono::steady_clock::time_point due;
    IoDone done;
    int err;
  };
  void later(IoDone done, int err) {
    std::lock_guard lk(mu_);
    queue_.push_back({std::chrono::steady_clock::now() + delay_, std::move(done), err});
    max_pending_ = std::max(max_pending_, static_cast<int>(queue_.size()));
    cv_.notify_all();
  }
  // The delay is constant, so the FIFO is also ordered by due time.
  void run_completions() {
    std::unique_lock lk(mu_);
    for (;;) {
      if (queue_.empty()) {
        if (quit_) return;
        cv_.wait(lk);
        continue;
      }
      if (std::chrono::steady_clock::now() < queue_.front().due) {
        cv_.wait_until(lk, queue_.front().due);
        continue;
      }
      Pending p = std::move(queue_.front());
      queue_.pop_front();
      lk.unlock();
      p.done(p.err);
      lk.lock();
    }
  }
  BlockTarget& inner_;
  const std::chrono::milliseconds delay_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  int max_pending_ = 0;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace tideway::agent::test

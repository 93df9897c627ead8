#include "wan/wanem/control_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tideway::wanem {

namespace {
constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxClients = 64;
constexpr uint64_t kListenTag = ~uint64_t{0}, kSignalTag = ~uint64_t{0} - 1;

std::runtime_error sys_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

sigset_t control_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGUSR1, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  return set;
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw std::runtime_error("control socket path too long (max " +
                             std::to_string(sizeof addr.sun_path - 1) + " bytes): " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

void send_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("send");
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
}
}  // namespace

void block_control_signals() {
  const sigset_t set = control_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

ControlServer::ControlServer(const std::string& socket_path, Handler handler,
                             std::function<void()> on_usr1)
    : path_(socket_path), handler_(std::move(handler)), on_usr1_(std::move(on_usr1)) {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw sys_error("epoll_create1");
  const sigset_t set = control_signals();
  signal_fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) throw sys_error("signalfd");
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  ev.data.u64 = kSignalTag;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, signal_fd_, &ev) != 0) throw sys_error("epoll_ctl");
  if (path_.empty()) return;

  const sockaddr_un addr = unix_address(path_);
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw sys_error("socket(AF_UNIX)");
  if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EADDRINUSE) throw sys_error("bind " + path_);
    // Is somebody listening there? If not, the file is stale.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool live = ::connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    ::close(probe);
    if (live) throw std::runtime_error("control socket " + path_ + " is in use by another process");
    ::unlink(path_.c_str());
    if (::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      throw sys_error("bind " + path_);
    }
  }
  ::chmod(path_.c_str(), 0600);
  if (::listen(listen_fd_, 16) != 0) throw sys_error("listen " + path_);
  ev.data.u64 = kListenTag;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, listen_fd_, &ev) != 0) throw sys_error("epoll_ctl");
}

ControlServer::~ControlServer() {
  for (auto& [fd, c] : clients_) ::close(fd);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(path_.c_str());
  }
  if (signal_fd_ >= 0) ::close(signal_fd_);
  if (epfd_ >= 0) ::close(epfd_);
}

void ControlServer::accept_clients() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a client that went away
    if (clients_.size() >= kMaxClients) {
      ::close(fd);
      continue;
    }
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint64_t>(fd);
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ::close(fd);
      continue;
    }
    clients_.emplace(fd, Client{});
  }
}

bool ControlServer::serve_client(int fd, Client& c) {
  char buf[1024];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return false;
    }
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.size() > kMaxLine && c.in.find('\n') == std::string::npos) {
      try { send_all(fd, "error: line too long\n"); } catch (...) {}
      return false;
    }
  }
  size_t nl;
  while ((nl = c.in.find('\n')) != std::string::npos) {
    const std::string line = c.in.substr(0, nl);
    c.in.erase(0, nl + 1);
    try {
      send_all(fd, handler_(line) + "\n");
    } catch (...) {
      return false;  // replies are small: a client that cannot take one is gone
    }
  }
  return true;
}

int ControlServer::run() {
  struct epoll_event events[16];
  for (;;) {
    const int n = ::epoll_wait(epfd_, events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw sys_error("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kSignalTag) {
        signalfd_siginfo si{};
        while (::read(signal_fd_, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          if (si.ssi_signo == SIGUSR1) {
            on_usr1_();
          } else {
            return static_cast<int>(si.ssi_signo);
          }
        }
      } else if (tag == kListenTag) {
        accept_clients();
      } else {
        const int fd = static_cast<int>(tag);
        auto it = clients_.find(fd);
        if (it == clients_.end()) continue;
        if (!serve_client(fd, it->second)) {
          ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
          ::close(fd);
          clients_.erase(it);
        }
      }
    }
  }
}

std::string control_request(const std::string& socket_path, std::string_view line) {
  const sockaddr_un addr = unix_address(socket_path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sys_error("socket(AF_UNIX)");
  struct Closer { int fd; ~Closer() { ::close(fd); } } closer{fd};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw sys_error("cannot connect to control socket " + socket_path +
                    " (is tideway-wanem running with --control?)");
  }
  std::string msg(line);
  msg += '\n';
  send_all(fd, msg);
  std::string reply;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
    if (const size_t nl = reply.find('\n'); nl != std::string::npos) {
      reply.resize(nl);
      return reply;
    }
  }
  throw std::runtime_error("control socket " + socket_path + " closed without a reply");
}

}  // namespace tideway::wanem

#include "agent/qemu_vm.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <spdlog/spdlog.h>
#include <string_view>
#include <utility>

#include "agent/qmp_commands.h"

extern char** environ;

namespace tideway::agent {

namespace asio = boost::asio;
using proto::Errc;
using proto::Error;

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

// Raw system calls: Debian 12's <sys/pidfd.h> (glibc 2.36) lacks extern
// "C", so its declarations do not link from C++.
int pidfd_open_(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_signal_(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

Error sys(const std::string& what, int err) { return Error{Errc::kSystem, what + ": " + std::strerror(err)}; }

// PATH lookup in the parent: the child may only make async-signal-safe
// calls between fork and exec, and execvp is not one.
std::optional<std::string> resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (true) {
    const size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";
    std::string full = dir + "/" + name;
    if (::access(full.c_str(), X_OK) == 0) return full;
    if (colon == std::string_view::npos) return std::nullopt;
    rest.remove_prefix(colon + 1);
  }
}

bool socket_alive(const std::string& path) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.fd < 0) return false;
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  return ::connect(fd.fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

ExitStatus from_wait_status(int status) {
  ExitStatus st;
  if (WIFEXITED(status)) st.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) st.signal = WTERMSIG(status);
  return st;
}

}  // namespace

std::string ExitStatus::describe() const {
  if (!known) return "exit status unknown (reaped elsewhere)";
  if (signal != 0) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit " + std::to_string(code);
}

proto::Result<std::shared_ptr<QemuVm>> QemuVm::launch(asio::io_context& io, const VmSpec& spec,
                                                      QemuVmOptions options) {
  if (options.run_dir.empty() || options.run_dir[0] != '/')
    return Error{Errc::kInvalid, "QEMU run dir \"" + options.run_dir + "\": expected an absolute path"};
  while (options.run_dir.size() > 1 && options.run_dir.back() == '/') options.run_dir.pop_back();
  const std::string sock = options.run_dir + "/qmp.sock";
  if (sock.size() >= sizeof(sockaddr_un{}.sun_path))
    return Error{Errc::kInvalid, "QEMU run dir " + options.run_dir + ": too long for a unix socket path (" + sock +
                                     " must be under 108 bytes)"};
  std::error_code ec;
  std::filesystem::create_directories(options.run_dir, ec);
  if (ec) return Error{Errc::kSystem, "QEMU run dir " + options.run_dir + ": " + ec.message()};
  ::chmod(options.run_dir.c_str(), 0700);  // QMP is full control of the VM
  struct stat st {};
  if (::lstat(sock.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error{Errc::kInvalid, sock + " exists and is not a socket"};
    if (socket_alive(sock)) return Error{Errc::kInvalid, sock + ": another QEMU is already listening there"};
    ::unlink(sock.c_str());  // left by a QEMU that was killed
  }

  LaunchArgs la;
  la.qemu_binary = options.qemu_binary;
  la.qmp_socket = sock;
  la.mode = options.mode;
  la.paused_after_incoming = options.paused_after_incoming;
  std::vector<std::string> argv = options.wrapper;
  for (auto& a : qemu_argv(spec, la)) argv.push_back(std::move(a));
  const auto exe = resolve(argv[0]);
  if (!exe) return Error{Errc::kInvalid, argv[0] + ": not found or not executable (is it installed? PATH?)"};

  const std::string log = options.run_dir + "/qemu.log";
  Fd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (log_fd.fd < 0) return sys("QEMU log " + log, errno);
  Fd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_fd.fd < 0) return sys("/dev/null", errno);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return sys("pipe2", errno);
  Fd err_rd(p[0]), err_wr(p[1]);

  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return sys("fork", errno);
  if (pid == 0) {
    // Child: async-signal-safe calls only. An exec failure reports errno
    // through the close-on-exec pipe.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) sigaction(s, &dfl, nullptr);  // fails harmlessly for KILL/STOP
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent is already gone
    }
    ::setsid();  // not in the agent's terminal or process group (no Ctrl-C)
    if (::dup2(null_fd.fd, 0) < 0 || ::dup2(log_fd.fd, 1) < 0 || ::dup2(log_fd.fd, 2) < 0) {
      int e = errno;
      (void)!::write(err_wr.fd, &e, sizeof e);
      ::_exit(127);
    }
    // Nothing else of the agent's may leak into QEMU: a control connection
    // it held would never see EOF (the CLI waits for it), a channel socket
    // would outlive the channel. The error pipe is close-on-exec already.
    if (::close_range(3, ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
      for (int fd = 3; fd < 65536; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    ::execve(exe->c_str(), cargv.data(), environ);
    int e = errno;
    (void)!::write(err_wr.fd, &e, sizeof e);
    ::_exit(127);
  }
  ::close(err_wr.release());
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_rd.fd, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return sys("cannot run " + *exe, child_errno);
  }
  // Cannot be reused before we reap it, so the pidfd is QEMU's.
  const int pidfd = pidfd_open_(pid);
  if (pidfd < 0) {
    const int e = errno;
    ::kill(pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return sys("pidfd_open (Linux >= 5.3 needed)", e);
  }
  auto vm = std::shared_ptr<QemuVm>(new QemuVm(io, options.run_dir, std::move(argv), pid, pidfd));
  vm->watch_exit();
  spdlog::info("qemu: started \"{}\" pid {} in {}", spec.name, pid, options.run_dir);
  return vm;
}

QemuVm::QemuVm(asio::io_context& io, std::string run_dir, std::vector<std::string> argv, pid_t pid, int pidfd)
    : io_(io),
      run_dir_(std::move(run_dir)),
      argv_(std::move(argv)),
      pid_(pid),
      pidfd_(io, pidfd),
      qmp_(QmpClient::create(io, run_dir_ + "/qmp.sock")),
      stop_timer_(io) {}

QemuVm::~QemuVm() {
  qmp_->close();
  if (!exit_) {
    // The owner let go of a running VM: end it rather than leak it.
    send_signal(SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    spdlog::warn("qemu: pid {} killed: its QemuVm was destroyed while it ran", pid_);
  }
}

void QemuVm::watch_exit() {
  // A weak reference: watching does not keep the VM object alive.
  std::weak_ptr<QemuVm> weak = shared_from_this();
  pidfd_.async_wait(asio::posix::stream_descriptor::wait_read, [weak](boost::system::error_code ec) {
    auto self = weak.lock();
    if (!self || ec || self->exit_) return;
    int status = 0;
    const pid_t r = ::waitpid(self->pid_, &status, WNOHANG);
    if (r == 0) return self->watch_exit();  // not yet (spurious wakeup)
    if (r < 0) {
      ExitStatus unknown;
      unknown.known = false;
      return self->reaped(unknown);
    }
    self->reaped(from_wait_status(status));
  });
}

void QemuVm::reaped(ExitStatus st) {
  assert(!exit_);
  exit_ = st;
  stop_timer_.cancel();
  spdlog::info("qemu: pid {} ended: {}", pid_, st.describe());
  qmp_->close();
  auto handlers = std::move(exit_handlers_);
  exit_handlers_.clear();
  for (auto& h : handlers) h(st);
}

void QemuVm::on_exit(ExitHandler h) {
  if (exit_) {
    asio::post(io_, [h = std::move(h), st = *exit_] { h(st); });
    return;
  }
  exit_handlers_.push_back(std::move(h));
}

void QemuVm::connect(std::function<void(proto::Result<void>)> done, std::chrono::milliseconds timeout) {
  // Whichever comes first, QMP or QEMU's exit, answers.
  auto once = std::make_shared<std::function<void(proto::Result<void>)>>(std::move(done));
  std::weak_ptr<QemuVm> weak = shared_from_this();
  on_exit([weak, once](const ExitStatus& st) {
    if (!*once) return;
    auto d = std::move(*once);
    *once = nullptr;
    auto self = weak.lock();
    d(Error{Errc::kSystem, "QEMU " + st.describe() + " before QMP was up" +
                               (self ? "; its log ends: " + self->log_tail(1024) : std::string())});
  });
  qmp_->connect(
      [weak, once](proto::Result<void> r) {
        if (!*once) return;
        auto d = std::move(*once);
        *once = nullptr;
        auto self = weak.lock();
        // QEMU's exit closes QMP first: say why it closed.
        if (!r && self && self->exit_)
          r = Error{Errc::kSystem, "QEMU " + self->exit_->describe() + " before QMP was up; its log ends: " +
                                       self->log_tail(1024)};
        d(std::move(r));
      },
      timeout);
}

void QemuVm::stop(std::chrono::milliseconds grace, ExitHandler done) {
  on_exit(std::move(done));
  if (exit_ || stop_step_ != 0) return;
  if (qmp_->connected()) {
    stop_step_ = 1;
    qmp::quit(*qmp_, [pid = pid_](proto::Result<void> r) {
      if (!r) spdlog::warn("qemu: pid {}: quit: {}", pid, r.error().detail);
    });
  } else {
    stop_step_ = 2;
    send_signal(SIGTERM);
  }
  escalate(grace);
}

void QemuVm::escalate(std::chrono::milliseconds grace) {
  std::weak_ptr<QemuVm> weak = shared_from_this();
  stop_timer_.expires_after(grace);
  stop_timer_.async_wait([weak, grace](boost::system::error_code ec) {
    auto self = weak.lock();
    if (ec || !self || self->exit_) return;
    if (self->stop_step_ == 1) {
      spdlog::warn("qemu: pid {} still runs {} ms after quit: SIGTERM", self->pid_, grace.count());
      self->stop_step_ = 2;
      self->send_signal(SIGTERM);
      self->escalate(grace);
      return;
    }
    spdlog::warn("qemu: pid {} still runs {} ms after SIGTERM: SIGKILL", self->pid_, grace.count());
    self->stop_step_ = 3;
    self->send_signal(SIGKILL);
  });
}

void QemuVm::kill() {
  if (!exit_) send_signal(SIGKILL);
}

void QemuVm::send_signal(int sig) {
  // Through the pidfd: never a recycled pid.
  if (pidfd_signal_(pidfd_.native_handle(), sig) != 0 && errno != ESRCH)
    spdlog::warn("qemu: pid {}: signal {}: {}", pid_, sig, std::strerror(errno));
}

std::string QemuVm::log_tail(size_t max_bytes) const {
  std::ifstream in(log_path(), std::ios::binary);
  if (!in) return "(no log)";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(std::max<std::streamoff>(0, in.tellg()));
  const size_t from = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(from));
  std::string s(size - from, '\0');
  in.read(s.data(), static_cast<std::streamsize>(s.size()));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s.empty() ? "(empty log)" : s;
}

}  // namespace tideway::agent

#include "agent/holder_command.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>

extern char** environ;

namespace tideway::agent {
namespace {

// iptables' messages are short; a runaway child cannot grow our memory.
constexpr size_t kMaxOutput = 64 * 1024;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string CommandResult::describe(const std::vector<std::string>& argv) const {
  std::string cmd;
  for (const auto& a : argv) {
    if (!cmd.empty()) cmd += ' ';
    cmd += a;
  }
  std::string tool = argv.empty() ? std::string("?") : argv[0];
  if (spawn_errno == ENOENT) return tool + ": not found in PATH (is it installed?)";
  if (spawn_errno != 0) return tool + ": cannot run: " + std::strerror(spawn_errno);
  std::string out = output;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  std::string how = signal != 0 ? "killed by signal " + std::to_string(signal)
                                : "exit " + std::to_string(exit_code);
  return cmd + ": " + how + (out.empty() ? std::string() : ": " + out);
}

bool find_in_path(const std::string& name) {
  if (name.empty()) return false;
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::string_view rest = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (true) {
    size_t colon = rest.find(':');
    std::string dir(rest.substr(0, colon));
    if (dir.empty()) dir = ".";
    if (::access((dir + "/" + name).c_str(), X_OK) == 0) return true;
    if (colon == std::string_view::npos) return false;
    rest.remove_prefix(colon + 1);
  }
}

CommandResult run_command(const std::vector<std::string>& argv) {
  assert(!argv.empty());
  CommandResult r;
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    r.spawn_errno = errno;
    return r;
  }
  Fd rd{p[0]}, wr{p[1]};

  // posix_spawn, not fork: safe in a multi-threaded agent (no copied locks).
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, wr.fd, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int err = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (err != 0) {
    r.spawn_errno = err;
    return r;
  }
  ::close(wr.fd);
  wr.fd = -1;

  char buf[4096];
  while (true) {
    ssize_t n = ::read(rd.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t room = kMaxOutput - std::min(kMaxOutput, r.output.size());
    r.output.append(buf, std::min(room, static_cast<size_t>(n)));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      r.spawn_errno = errno;
      return r;
    }
  }
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

}  // namespace tideway::agent

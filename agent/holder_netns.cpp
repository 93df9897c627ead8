#include "agent/holder_netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>

namespace tideway::agent {
namespace {

using proto::Errc;

std::string sys_error(const std::string& what, int err) { return what + ": " + std::strerror(err); }

}  // namespace

std::string netns_path(const std::string& name_or_path) {
  if (name_or_path.find('/') != std::string::npos) return name_or_path;
  return "/run/netns/" + name_or_path;
}

proto::Result<int> socket_in_netns(const std::string& netns, int domain, int type, int protocol) {
  if (netns.empty()) {
    int fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    if (fd < 0) return proto::Error{Errc::kSystem, sys_error("socket", errno)};
    return fd;
  }
  std::string path = netns_path(netns);
  // This thread's own namespace (not the process's: another thread may have
  // moved, and setns acts on the calling thread only).
  int self = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return proto::Error{Errc::kSystem, sys_error("open /proc/thread-self/ns/net", errno)};
  int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    ::close(self);
    return proto::Error{Errc::kInvalid, sys_error("network namespace " + path, err)};
  }
  if (::setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    ::close(self);
    ::close(target);
    return proto::Error{Errc::kSystem, sys_error("setns " + path + " (needs CAP_SYS_ADMIN)", err)};
  }
  ::close(target);
  int fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
  int sock_err = errno;
  if (::setns(self, CLONE_NEWNET) != 0) {
    spdlog::critical("holder: cannot return to the original network namespace: {}", std::strerror(errno));
    std::abort();
  }
  ::close(self);
  if (fd < 0) return proto::Error{Errc::kSystem, sys_error("socket in " + path, sock_err)};
  return fd;
}

}  // namespace tideway::agent

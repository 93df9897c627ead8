#include "wan/wanem/tun.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace tideway::wanem {

namespace {

std::string errno_text() { return std::strerror(errno); }

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { if (fd >= 0) ::close(fd); }
  int release() { int f = fd; fd = -1; return f; }
};

// Enters a namespace for the lifetime of the object, then returns.
class NetnsGuard {
 public:
  explicit NetnsGuard(const std::string& netns) : home_(-1), target_(-1) {
    if (netns.empty()) return;
    home_.fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home_.fd < 0) throw std::runtime_error("cannot open /proc/thread-self/ns/net: " + errno_text());
    const std::string path = netns.find('/') == std::string::npos ? "/run/netns/" + netns : netns;
    target_.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (target_.fd < 0) {
      throw std::runtime_error("network namespace '" + netns + "' not found (" + path + ": " +
                               errno_text() + "); create it with: ip netns add " + netns);
    }
    if (::setns(target_.fd, CLONE_NEWNET) != 0) {
      throw std::runtime_error("setns into '" + netns + "' failed: " + errno_text() +
                               (errno == EPERM ? " (run as root / with CAP_SYS_ADMIN)" : ""));
    }
    entered_ = true;
  }
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;
  ~NetnsGuard() {
    if (entered_ && ::setns(home_.fd, CLONE_NEWNET) != 0) std::abort();  // cannot continue safely
  }

 private:
  Fd home_, target_;
  bool entered_ = false;
};

void set_link_up(const std::string& name) {
  Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (sock.fd < 0) throw std::runtime_error("socket(AF_INET): " + errno_text());
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock.fd, SIOCGIFFLAGS, &ifr) != 0) throw std::runtime_error("SIOCGIFFLAGS " + name + ": " + errno_text());
  if (ifr.ifr_flags & IFF_UP) return;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.fd, SIOCSIFFLAGS, &ifr) != 0) throw std::runtime_error("set " + name + " up: " + errno_text());
}

}  // namespace

Tun Tun::open(const std::string& netns, const std::string& name, bool vnet_hdr) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    throw std::runtime_error("device name '" + name + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters");
  }
  const std::string label = (netns.empty() ? std::string("(current)") : netns) + "/" + name;
  NetnsGuard in_ns(netns);
  Fd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (fd.fd < 0) {
    throw std::runtime_error("cannot open /dev/net/tun: " + errno_text() +
                             (errno == ENOENT ? " (load the tun module: modprobe tun)" : "") +
                             (errno == EACCES || errno == EPERM ? " (run as root)" : ""));
  }
  struct ifreq ifr {};
  ifr.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0));
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd.fd, TUNSETIFF, &ifr) != 0) {
    const int e = errno;
    std::string hint;
    if (e == EBUSY) hint = " (another process has it open: is another tideway-wanem running?)";
    if (e == EINVAL) hint = " (a device of that name exists and is not a single-queue TUN)";
    if (e == EPERM) hint = " (run as root, or the persistent device belongs to another user)";
    errno = e;
    throw std::runtime_error("TUNSETIFF " + label + ": " + errno_text() + hint);
  }
  if (vnet_hdr) {
    int sz = 10;  // struct virtio_net_hdr, no num_buffers
    if (::ioctl(fd.fd, TUNSETVNETHDRSZ, &sz) != 0) throw std::runtime_error("TUNSETVNETHDRSZ " + label + ": " + errno_text());
    if (::ioctl(fd.fd, TUNSETOFFLOAD, 0) != 0) throw std::runtime_error("TUNSETOFFLOAD " + label + ": " + errno_text());
  }
  set_link_up(name);
  return Tun(fd.release(), vnet_hdr, label);
}

void Tun::set_offload(bool tso) {
  if (!vnet_hdr_) return;
  // Checksum offload stays on either way: the far TUN accepts partial
  // checksums, so nobody ever computes them.
  const unsigned long flags = TUN_F_CSUM | (tso ? (TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) : 0);
  if (::ioctl(fd_, TUNSETOFFLOAD, flags) != 0) {
    throw std::runtime_error("TUNSETOFFLOAD " + label_ + ": " + errno_text());
  }
}

Tun::Tun(Tun&& other) noexcept : fd_(other.fd_), vnet_hdr_(other.vnet_hdr_), label_(std::move(other.label_)) {
  other.fd_ = -1;
}

Tun& Tun::operator=(Tun&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    vnet_hdr_ = other.vnet_hdr_;
    label_ = std::move(other.label_);
    other.fd_ = -1;
  }
  return *this;
}

Tun::~Tun() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace tideway::wanem

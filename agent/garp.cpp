#include "agent/garp.h"

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <thread>

#include "agent/holder_netns.h"
#include "agent/holder_rules.h"

namespace tideway::agent {
namespace {

using proto::Errc;
using Clock = std::chrono::steady_clock;
namespace arp = proto::arp;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string where(const GarpRequest& req) {
  return "'" + req.iface + "'" + (req.netns.empty() ? std::string() : " in network namespace " + req.netns);
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

}  // namespace

std::vector<std::chrono::milliseconds> default_garp_schedule() { return garp_schedule(3); }

std::vector<std::chrono::milliseconds> garp_schedule(int count) {
  assert(count >= 1 && count <= kMaxGarpFrames);
  static constexpr int kFirst[] = {0, 20, 100, 250, 500, 1000, 2000};
  std::vector<std::chrono::milliseconds> s;
  for (int i = 0; i < count; ++i) {
    const int n = static_cast<int>(std::size(kFirst));
    s.emplace_back(i < n ? kFirst[i] : kFirst[n - 1] + 1000 * (i - n + 1));
  }
  return s;
}

proto::Result<void> validate_garp(const GarpRequest& req) {
  if (!valid_interface_name(req.iface))
    return proto::Error{Errc::kInvalid, "bad interface name '" + req.iface + "' (1-15 of A-Z a-z 0-9 _ . -)"};
  if (!req.netns.empty() && req.netns[0] != '/' && !valid_netns_name(req.netns))
    return proto::Error{Errc::kInvalid, "bad network namespace name '" + req.netns + "'"};
  if (arp::is_multicast(req.mac) || req.mac == arp::kZeroMac)
    return proto::Error{Errc::kInvalid, "MAC " + arp::format_mac(req.mac) +
                                            " is not a unicast station address (a VM NIC's MAC is)"};
  const arp::Ipv4& ip = req.ip;
  if (ip == arp::Ipv4{} || ip == arp::Ipv4{255, 255, 255, 255} || ip[0] == 127 || (ip[0] >= 224 && ip[0] <= 239))
    return proto::Error{Errc::kInvalid, "IPv4 " + arp::format_ipv4(ip) +
                                            " cannot be announced (unspecified, broadcast, loopback or multicast)"};
  if (req.schedule.empty() || req.schedule.size() > static_cast<size_t>(kMaxGarpFrames))
    return proto::Error{Errc::kInvalid, "a burst has 1 to " + std::to_string(kMaxGarpFrames) + " frames, not " +
                                            std::to_string(req.schedule.size())};
  for (size_t i = 0; i < req.schedule.size(); ++i) {
    if (req.schedule[i].count() < 0 || (i > 0 && req.schedule[i] < req.schedule[i - 1]))
      return proto::Error{Errc::kInvalid, "the burst's offsets must be non-negative and non-decreasing"};
  }
  if (req.schedule.back() > kMaxGarpSpan)
    return proto::Error{Errc::kInvalid, "the burst may last at most " + std::to_string(kMaxGarpSpan.count()) + " ms"};
  return {};
}

proto::Result<GarpReport> send_garp(const GarpRequest& req) {
  if (auto v = validate_garp(req); !v) return v.error();
  const auto t0 = Clock::now();
  // Protocol 0: this socket only sends; it never queues received frames.
  auto sock = socket_in_netns(req.netns, AF_PACKET, SOCK_RAW, 0);
  if (!sock) {
    const std::string& d = sock.error().detail;
    if (d.find(std::strerror(EPERM)) != std::string::npos || d.find(std::strerror(EACCES)) != std::string::npos)
      return proto::Error{Errc::kSystem, "not permitted to send raw frames (" + d +
                                             "): needs CAP_NET_RAW, and CAP_SYS_ADMIN for another namespace (run as root)"};
    return sock.error();
  }
  Fd fd{*sock};

  // The index and flags come from the socket's own namespace (ioctl on it),
  // not from if_nametoindex, which would look in ours.
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, req.iface.data(), req.iface.size());  // validated: <= 15 bytes
  if (::ioctl(fd.fd, SIOCGIFINDEX, &ifr) != 0) {
    if (errno == ENODEV) return proto::Error{Errc::kInvalid, "no such interface " + where(req)};
    return proto::Error{Errc::kSystem, "interface " + where(req) + ": " + std::strerror(errno)};
  }
  const int ifindex = ifr.ifr_ifindex;
  if (::ioctl(fd.fd, SIOCGIFFLAGS, &ifr) != 0)
    return proto::Error{Errc::kSystem, "interface " + where(req) + ": " + std::strerror(errno)};
  if (!(ifr.ifr_flags & IFF_UP))
    return proto::Error{Errc::kInvalid, "interface " + where(req) + " is down (ip link set " + req.iface + " up)"};

  const auto frame = arp::encode_frame(arp::gratuitous_arp(req.mac, req.ip, req.form));
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = ifindex;
  to.sll_halen = ETH_ALEN;
  std::memcpy(to.sll_addr, arp::kBroadcastMac.data(), ETH_ALEN);

  GarpReport report;
  report.ifindex = ifindex;
  const auto start = Clock::now();
  for (const auto offset : req.schedule) {
    std::this_thread::sleep_until(start + offset);
    ssize_t n;
    do {
      n = ::sendto(fd.fd, frame.data(), frame.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(frame.size())) {
      const int err = n < 0 ? errno : EMSGSIZE;
      std::string msg = "sending gratuitous ARP on " + where(req) + " failed after " +
                        std::to_string(report.sent_at_ms.size()) + " of " + std::to_string(req.schedule.size()) +
                        " frames: " + std::strerror(err);
      if (err == EPERM) msg += " (needs CAP_NET_RAW)";
      if (err == ENETDOWN || err == ENXIO) msg += " (the interface went down or away)";
      return proto::Error{Errc::kSystem, msg};
    }
    if (report.sent_at_ms.empty())
      report.first_sent_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
    report.sent_at_ms.push_back(ms_since(t0));
  }
  report.total_ms = ms_since(t0);
  return report;
}

}  // namespace tideway::agent

// Gratuitous ARP at the migration destination: the moment the VM is paused
// for its last iteration, the destination host announces the VM's (MAC,
// IPv4) so that every bridge of the pool (both sites, through the VXLAN)
// and every neighbour cache learns the VM's new location and open TCP
// connections carry on (DESIGN.md 3, step 4; docs/lab.md, "Virtual cloud
// pools").
//
// Where to send: the frame must ENTER the site bridge through the VM's
// port, as if the VM had sent it. With a veth pair that is the VM's own end
// (e.g. eth0 inside the VM's namespace: pass `netns`); a frame sent on the
// bridge-side end would travel toward the VM instead. Sending on the pool
// bridge itself reaches the other sites but teaches the local bridge
// nothing. (QEMU's announce-self does the same from inside the NIC model.)
//
// Blocking: sleeps through the schedule (default 0, 20, 100 ms, so about
// 100 ms). Needs CAP_NET_RAW (and CAP_SYS_ADMIN for another namespace).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "proto/arp.h"
#include "proto/result.h"

namespace tideway::agent {

// Frames are sent at these offsets from the first: several, because one
// frame can be lost while the new port is still coming up, and bridges
// downstream may still be flooding.
std::vector<std::chrono::milliseconds> default_garp_schedule();
// The first `count` offsets of 0, 20, 100, 250, 500, 1000, 2000, 3000, ...
// (1 <= count <= kMaxGarpFrames).
std::vector<std::chrono::milliseconds> garp_schedule(int count);
inline constexpr int kMaxGarpFrames = 60;  // the last at 55 s
inline constexpr std::chrono::milliseconds kMaxGarpSpan{60'000};

struct GarpRequest {
  std::string iface;  // the VM's interface (see above)
  std::string netns;  // "" = ours; a name under /run/netns or an absolute path
  proto::arp::Mac mac{};
  proto::arp::Ipv4 ip{};
  proto::arp::Op form = proto::arp::Op::kRequest;  // RFC 5227 announcement
  std::vector<std::chrono::milliseconds> schedule = default_garp_schedule();
};

struct GarpReport {
  int ifindex = 0;
  std::vector<double> sent_at_ms;  // per frame, from the call's start
  double total_ms = 0;
  int64_t first_sent_unix_ms = 0;  // wall clock of the first frame (to line up with logs)
};

// Checks the request (unicast non-zero MAC, usable IPv4, interface name,
// schedule non-decreasing, at most kMaxGarpFrames and kMaxGarpSpan).
proto::Result<void> validate_garp(const GarpRequest& req);

// Sends the burst. Errors say what to do: no such interface (in which
// namespace), interface down, not permitted (CAP_NET_RAW), a send that
// failed after N frames went out.
proto::Result<GarpReport> send_garp(const GarpRequest& req);

}  // namespace tideway::agent

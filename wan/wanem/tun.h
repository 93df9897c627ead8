// A TUN device opened inside a network namespace.
//
// The device is created in (or, if it already exists there, e.g. made
// persistent by `ip tuntap add`, attached to) the namespace NETNS: the
// calling thread enters the namespace with setns(2), opens /dev/net/tun,
// sets the link up, and returns to its original namespace. The fd keeps
// working from any namespace. Call before starting other threads.
#pragma once

#include <string>

namespace tideway::wanem {

class Tun {
 public:
  // `netns` is a name under /run/netns (as `ip netns add` makes) or a path
  // (/proc/PID/ns/net); empty = the current namespace. `vnet_hdr` asks for
  // a virtio_net_hdr in front of every packet (needed for offloads).
  // Throws std::runtime_error with a message that says what to do.
  static Tun open(const std::string& netns, const std::string& name, bool vnet_hdr);

  Tun(Tun&& other) noexcept;
  Tun& operator=(Tun&& other) noexcept;
  Tun(const Tun&) = delete;
  Tun& operator=(const Tun&) = delete;
  ~Tun();

  int fd() const { return fd_; }
  bool vnet_hdr() const { return vnet_hdr_; }
  const std::string& label() const { return label_; }  // "NETNS/NAME"

  // With vnet_hdr: checksum offload on, and TSO on or off. TSO on lets the
  // kernel hand us GSO super-packets (forwarded whole; the far TUN accepts
  // them); off makes the kernel segment before the packet reaches us, so
  // loss and jitter apply per wire packet. No-op without vnet_hdr.
  void set_offload(bool tso);

 private:
  Tun(int fd, bool vnet_hdr, std::string label) : fd_(fd), vnet_hdr_(vnet_hdr), label_(std::move(label)) {}
  int fd_ = -1;
  bool vnet_hdr_ = false;
  std::string label_;
};

}  // namespace tideway::wanem

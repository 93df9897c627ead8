// What the emulator needs to know about one packet read from a TUN device:
// its size on the wire. With IFF_VNET_HDR a TUN read may return a GSO
// "super-packet" (one IP/TCP header, up to 64 KiB of payload) that the
// receiving side's kernel would otherwise have cut into MSS-sized segments;
// the rate limiter must charge for every segment's headers too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tideway::wanem {

// Mirrors struct virtio_net_hdr (linux/virtio_net.h), little-endian on x86;
// kept here so this file is pure and testable without kernel headers.
struct VnetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VnetHdr) == 10);

inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpV4 = 1;
inline constexpr uint8_t kGsoUdp = 3;
inline constexpr uint8_t kGsoTcpV6 = 4;
inline constexpr uint8_t kGsoUdpL4 = 5;
inline constexpr uint8_t kGsoEcn = 0x80;

struct WireSize {
  uint64_t bytes = 0;     // IP bytes on the wire, all segments
  uint32_t segments = 1;  // packets on the wire
};

// `ip` is the IP packet following the vnet header. A malformed GSO header
// (too short, unknown protocol) is charged as a single packet of its size.
WireSize wire_size(const VnetHdr& hdr, std::span<const uint8_t> ip);

// Same for a packet without a vnet header (offloads off).
inline WireSize wire_size_plain(std::span<const uint8_t> ip) { return {ip.size(), 1}; }

}  // namespace tideway::wanem

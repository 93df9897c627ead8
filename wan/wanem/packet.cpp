#include "wan/wanem/packet.h"

namespace tideway::wanem {

namespace {
// Length of the IP + transport headers that every segment repeats, or 0 if
// the packet is not something we can parse.
size_t repeated_header_len(uint8_t gso_type, std::span<const uint8_t> ip) {
  if (ip.empty()) return 0;
  size_t l3 = 0;
  const uint8_t version = ip[0] >> 4;
  if (version == 4) {
    l3 = static_cast<size_t>(ip[0] & 0x0f) * 4;
    if (l3 < 20) return 0;
  } else if (version == 6) {
    l3 = 40;  // extension headers are not expected in the lab
  } else {
    return 0;
  }
  const uint8_t base = gso_type & static_cast<uint8_t>(~kGsoEcn);
  if (base == kGsoTcpV4 || base == kGsoTcpV6) {
    if (ip.size() < l3 + 20) return 0;
    const size_t l4 = static_cast<size_t>(ip[l3 + 12] >> 4) * 4;
    if (l4 < 20) return 0;
    return l3 + l4;
  }
  if (base == kGsoUdpL4) return l3 + 8;
  return 0;  // kGsoUdp (UFO) fragments, not segments: charge as one packet
}
}  // namespace

WireSize wire_size(const VnetHdr& hdr, std::span<const uint8_t> ip) {
  const uint8_t base = hdr.gso_type & static_cast<uint8_t>(~kGsoEcn);
  if (base == kGsoNone || hdr.gso_size == 0) return {ip.size(), 1};
  const size_t hlen = repeated_header_len(hdr.gso_type, ip);
  if (hlen == 0 || ip.size() <= hlen) return {ip.size(), 1};
  const size_t payload = ip.size() - hlen;
  const size_t segs = (payload + hdr.gso_size - 1) / hdr.gso_size;
  return {ip.size() + (segs - 1) * hlen, static_cast<uint32_t>(segs)};
}

}  // namespace tideway::wanem

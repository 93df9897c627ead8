#include "proto/arp.h"

#include <algorithm>
#include <cassert>
#include <cstdio>

namespace tideway::proto::arp {
namespace {

// Field offsets (RFC 826 for IPv4 over Ethernet, after the 14-byte header).
constexpr size_t kOffEthType = 12;
constexpr size_t kOffHwType = 14;
constexpr size_t kOffProtoType = 16;
constexpr size_t kOffHwLen = 18;
constexpr size_t kOffProtoLen = 19;
constexpr size_t kOffOp = 20;
constexpr size_t kOffSenderMac = 22;
constexpr size_t kOffSenderIp = 28;
constexpr size_t kOffTargetMac = 32;
constexpr size_t kOffTargetIp = 38;
static_assert(kOffTargetIp + 4 == kArpFrameSize);

uint16_t be16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

template <size_t N>
std::array<uint8_t, N> take(std::span<const uint8_t> b, size_t off) {
  std::array<uint8_t, N> a{};
  std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(off), N, a.begin());
  return a;
}

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

template <size_t N>
void put(std::vector<uint8_t>& out, const std::array<uint8_t, N>& a) {
  out.insert(out.end(), a.begin(), a.end());
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string quoted(std::string_view s) {
  // Bounded: an error message must not echo megabytes of junk.
  constexpr size_t kMax = 40;
  std::string q = "'" + std::string(s.substr(0, kMax));
  return q + (s.size() > kMax ? "...'" : "'");
}

}  // namespace

bool is_multicast(const Mac& mac) { return (mac[0] & 0x01) != 0; }

std::vector<uint8_t> encode_frame(const ArpFrame& f) {
  assert(f.wire_size >= kArpFrameSize && f.wire_size <= kMinEthFrameSize);
  std::vector<uint8_t> out;
  out.reserve(f.wire_size);
  put(out, f.eth_dst);
  put(out, f.eth_src);
  put16(out, kEtherTypeArp);
  put16(out, kHwTypeEthernet);
  put16(out, kEtherTypeIpv4);
  out.push_back(6);
  out.push_back(4);
  put16(out, static_cast<uint16_t>(f.op));
  put(out, f.sender_mac);
  put(out, f.sender_ip);
  put(out, f.target_mac);
  put(out, f.target_ip);
  assert(out.size() == kArpFrameSize);
  // Appended, never resize(): see docs/fuzzing.md on annotated vectors.
  out.insert(out.end(), f.wire_size - kArpFrameSize, uint8_t{0});
  return out;
}

Result<ArpFrame> decode_frame(std::span<const uint8_t> b) {
  if (b.size() < kEthHeaderSize)
    return Error{Errc::kTruncated, "Ethernet frame of " + std::to_string(b.size()) + " bytes (header is 14)"};
  const uint16_t ethertype = be16(b, kOffEthType);
  if (ethertype == kEtherTypeVlan)
    return Error{Errc::kUnknownType, "802.1Q-tagged frame (only untagged ARP is accepted)"};
  if (ethertype != kEtherTypeArp) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "Ethernet type 0x%04x is not ARP (0x0806)", ethertype);
    return Error{Errc::kUnknownType, buf};
  }
  if (b.size() < kArpFrameSize)
    return Error{Errc::kTruncated, "ARP frame of " + std::to_string(b.size()) + " bytes (needs 42)"};
  if (b.size() > kMinEthFrameSize)
    return Error{Errc::kTrailingBytes,
                 "ARP frame of " + std::to_string(b.size()) + " bytes (at most 60 with padding)"};
  if (be16(b, kOffHwType) != kHwTypeEthernet || be16(b, kOffProtoType) != kEtherTypeIpv4)
    return Error{Errc::kUnknownType, "ARP for hardware type " + std::to_string(be16(b, kOffHwType)) +
                                         " / protocol " + std::to_string(be16(b, kOffProtoType)) +
                                         " (only Ethernet 1 / IPv4 2048)"};
  if (b[kOffHwLen] != 6 || b[kOffProtoLen] != 4)
    return Error{Errc::kMalformed, "ARP address lengths " + std::to_string(b[kOffHwLen]) + "/" +
                                       std::to_string(b[kOffProtoLen]) + " (Ethernet/IPv4 needs 6/4)"};
  const uint16_t op = be16(b, kOffOp);
  if (op != static_cast<uint16_t>(Op::kRequest) && op != static_cast<uint16_t>(Op::kReply))
    return Error{Errc::kMalformed, "ARP opcode " + std::to_string(op) + " (1 request or 2 reply)"};
  if (!std::all_of(b.begin() + kArpFrameSize, b.end(), [](uint8_t v) { return v == 0; }))
    return Error{Errc::kMalformed, "non-zero bytes in the padding after the ARP body"};

  ArpFrame f;
  f.eth_dst = take<6>(b, 0);
  f.eth_src = take<6>(b, 6);
  f.op = static_cast<Op>(op);
  f.sender_mac = take<6>(b, kOffSenderMac);
  f.sender_ip = take<4>(b, kOffSenderIp);
  f.target_mac = take<6>(b, kOffTargetMac);
  f.target_ip = take<4>(b, kOffTargetIp);
  f.wire_size = b.size();
  // A station never sends from a group address (IEEE 802); a bridge would
  // not learn it and a neighbour cache must not store it.
  if (is_multicast(f.eth_src))
    return Error{Errc::kMalformed, "multicast Ethernet source " + format_mac(f.eth_src)};
  if (is_multicast(f.sender_mac))
    return Error{Errc::kMalformed, "multicast ARP sender " + format_mac(f.sender_mac)};
  return f;
}

ArpFrame gratuitous_arp(const Mac& mac, const Ipv4& ip, Op form) {
  ArpFrame f;
  f.eth_dst = kBroadcastMac;
  f.eth_src = mac;
  f.op = form;
  f.sender_mac = mac;
  f.sender_ip = ip;
  f.target_mac = form == Op::kReply ? mac : kZeroMac;
  f.target_ip = ip;
  f.wire_size = kArpFrameSize;
  return f;
}

bool is_gratuitous(const ArpFrame& f) {
  return f.eth_dst == kBroadcastMac && f.sender_ip == f.target_ip && f.eth_src == f.sender_mac;
}

Result<Mac> parse_mac(std::string_view text) {
  Mac mac{};
  bool ok = text.size() == 17;
  for (size_t i = 0; ok && i < 6; ++i) {
    const int hi = hex_digit(text[3 * i]), lo = hex_digit(text[3 * i + 1]);
    ok = hi >= 0 && lo >= 0;
    if (i < 5) ok = ok && (text[3 * i + 2] == ':' || text[3 * i + 2] == '-') && text[3 * i + 2] == text[2];
    mac[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  if (!ok) return Error{Errc::kInvalid, "MAC address " + quoted(text) + ": expected six hex pairs like 52:54:00:12:34:56"};
  return mac;
}

std::string format_mac(const Mac& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

Result<Ipv4> parse_ipv4(std::string_view text) {
  Ipv4 ip{};
  size_t pos = 0;
  for (size_t i = 0; i < 4; ++i) {
    size_t start = pos;
    unsigned v = 0;
    while (pos < text.size() && pos - start < 4 && text[pos] >= '0' && text[pos] <= '9') v = v * 10 + (text[pos++] - '0');
    const size_t digits = pos - start;
    bool ok = digits >= 1 && digits <= 3 && v <= 255 && !(digits > 1 && text[start] == '0');
    if (ok && i < 3) ok = pos < text.size() && text[pos++] == '.';
    if (!ok) return Error{Errc::kInvalid, "IPv4 address " + quoted(text) + ": expected a dotted quad like 192.168.50.10"};
    ip[i] = static_cast<uint8_t>(v);
  }
  if (pos != text.size())
    return Error{Errc::kInvalid, "IPv4 address " + quoted(text) + ": expected a dotted quad like 192.168.50.10"};
  return ip;
}

std::string format_ipv4(const Ipv4& ip) {
  return std::to_string(ip[0]) + "." + std::to_string(ip[1]) + "." + std::to_string(ip[2]) + "." +
         std::to_string(ip[3]);
}

}  // namespace tideway::proto::arp

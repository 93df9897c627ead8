// Ethernet II frames carrying ARP for IPv4 (RFC 826), and the gratuitous
// ARP a migration destination sends so that every bridge and neighbour
// cache on the layer-2 segment learns where the VM's MAC now lives. Pure
// code, no I/O (agent/garp.* puts the frames on a wire).
//
// The decoder is strict: Ethernet type 0x0806 (an 802.1Q tag is rejected),
// hardware type 1 (Ethernet), protocol type 0x0800, address lengths 6 and 4,
// opcode request or reply, no multicast source/sender MAC. Anything after
// the 42 bytes of header + ARP body may only be zero padding up to the
// 60-byte Ethernet minimum. Whatever it accepts, encode_frame gives back byte
// for byte (the fuzz target checks this).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace tideway::proto::arp {

using Mac = std::array<uint8_t, 6>;
using Ipv4 = std::array<uint8_t, 4>;  // network byte order, as on the wire

inline constexpr Mac kBroadcastMac{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline constexpr Mac kZeroMac{};

inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;
inline constexpr uint16_t kHwTypeEthernet = 1;

inline constexpr size_t kEthHeaderSize = 14;
inline constexpr size_t kArpBodySize = 28;
inline constexpr size_t kArpFrameSize = kEthHeaderSize + kArpBodySize;  // 42
// Ethernet's minimum frame without the FCS: senders pad ARP up to this.
inline constexpr size_t kMinEthFrameSize = 60;

enum class Op : uint16_t { kRequest = 1, kReply = 2 };

struct ArpFrame {
  Mac eth_dst{};
  Mac eth_src{};
  Op op = Op::kRequest;
  Mac sender_mac{};
  Ipv4 sender_ip{};
  Mac target_mac{};
  Ipv4 target_ip{};
  // Bytes on the wire: 42, or up to 60 with zero padding.
  size_t wire_size = kArpFrameSize;

  bool operator==(const ArpFrame&) const = default;
};

bool is_multicast(const Mac& mac);  // includes broadcast

// The frame's bytes (wire_size of them). Precondition: 42 <= wire_size <= 60.
std::vector<uint8_t> encode_frame(const ArpFrame& f);

// Strict decode (see the top of this file). Errors: kTruncated (shorter
// than 42 bytes), kUnknownType (not ARP, or IPv4-over-Ethernet ARP),
// kMalformed (bad lengths, opcode, multicast sender, non-zero padding),
// kTrailingBytes (longer than 60 bytes).
Result<ArpFrame> decode_frame(std::span<const uint8_t> bytes);

// A gratuitous ARP announcing that `ip` is at `mac`, broadcast, 42 bytes
// like Linux's own (a NIC pads to 60 on the wire; veth and VXLAN do not
// need it). Both forms carry sender IP = target IP = ip and sender MAC = mac.
// Request (RFC 5227's ARP announcement): target MAC zero. Reply (RFC 5944
// 4.6): target MAC = mac. Linux updates existing neighbour entries from
// either; bridges learn `mac` from the Ethernet source either way.
ArpFrame gratuitous_arp(const Mac& mac, const Ipv4& ip, Op form);

// True if `f` announces its own sender (sender IP == target IP, broadcast).
bool is_gratuitous(const ArpFrame& f);

// "52:54:00:12:34:56" (also '-' separated, any case). Strict: six pairs of
// hex digits.
Result<Mac> parse_mac(std::string_view text);
std::string format_mac(const Mac& mac);
// Dotted quad, four decimal octets 0-255, no leading zeros ("010" would be
// octal to inet_aton), nothing else.
Result<Ipv4> parse_ipv4(std::string_view text);
std::string format_ipv4(const Ipv4& ip);

}  // namespace tideway::proto::arp

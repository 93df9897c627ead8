// Wire size of GSO super-packets: the rate limiter must charge every
// segment's headers, as the real wire would carry them.
#include "wan/wanem/packet.h"

#include <gtest/gtest.h>

#include <vector>

namespace tideway::wanem {
namespace {

// An IPv4/TCP packet: 20 B IP header, TCP header of tcp_len, payload.
std::vector<uint8_t> tcp4(size_t tcp_len, size_t payload) {
  std::vector<uint8_t> p(20 + tcp_len + payload, 0);
  p[0] = 0x45;
  p[9] = 6;
  p[20 + 12] = static_cast<uint8_t>((tcp_len / 4) << 4);
  return p;
}

TEST(WireSize, PlainPacketIsItsOwnSize) {
  const auto p = tcp4(32, 1448);
  EXPECT_EQ(wire_size_plain(p).bytes, 1500u);
  const VnetHdr none{0, kGsoNone, 0, 0, 0, 0};
  const WireSize w = wire_size(none, p);
  EXPECT_EQ(w.bytes, 1500u);
  EXPECT_EQ(w.segments, 1u);
}

TEST(WireSize, TsoSuperPacketChargesEverySegmentsHeaders) {
  // 45 segments of 1448 B payload with 52 B of IP+TCP headers each =
  // 45 full-size 1500 B packets on the wire.
  const auto p = tcp4(32, 45 * 1448);
  const VnetHdr gso{1, kGsoTcpV4, 52, 1448, 20, 16};
  const WireSize w = wire_size(gso, p);
  EXPECT_EQ(w.segments, 45u);
  EXPECT_EQ(w.bytes, 45u * 1500);
}

TEST(WireSize, LastSegmentMayBeShort) {
  const auto p = tcp4(20, 3 * 1000 + 10);
  const VnetHdr gso{1, kGsoTcpV4 | kGsoEcn, 40, 1000, 20, 16};
  const WireSize w = wire_size(gso, p);
  EXPECT_EQ(w.segments, 4u);
  EXPECT_EQ(w.bytes, p.size() + 3 * 40);
}

TEST(WireSize, MalformedGsoPacketIsChargedAsOnePacket) {
  const VnetHdr gso{1, kGsoTcpV4, 52, 1448, 20, 16};
  std::vector<uint8_t> junk(30, 0xff);  // version 15
  EXPECT_EQ(wire_size(gso, junk).bytes, 30u);
  EXPECT_EQ(wire_size(gso, junk).segments, 1u);
  EXPECT_EQ(wire_size(gso, std::span<const uint8_t>{}).bytes, 0u);
  auto short_tcp = tcp4(20, 0);
  short_tcp.resize(30);  // TCP header cut off
  EXPECT_EQ(wire_size(gso, short_tcp).segments, 1u);
}

}  // namespace
}  // namespace tideway::wanem

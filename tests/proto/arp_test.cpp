// Ethernet + ARP frames: bytes Linux itself put on a veth (captured with an
// AF_PACKET socket), the gratuitous ARP builder against them, strict
// rejection of every bad field, and the MAC/IPv4 text parsers.
#include "proto/arp.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tests/test_seed.h"

namespace tideway::proto::arp {
namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// Linux 6.x, veth with MAC 52:54:00:12:34:56 and 192.168.50.10/24:
// `ping 192.168.50.99` (an ARP request) and arp_notify on link up (its own
// gratuitous ARP: a request with sender IP = target IP, target MAC zero).
const std::vector<uint8_t> kLinuxRequest = from_hex(
    "ffffffffffff525400123456080600010800060400015254001234"
    "56c0a8320a000000000000c0a83263");
const std::vector<uint8_t> kLinuxGarp = from_hex(
    "ffffffffffff525400123456080600010800060400015254001234"
    "56c0a8320a000000000000c0a8320a");
constexpr Mac kVmMac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
constexpr Ipv4 kVmIp{192, 168, 50, 10};

TEST(Arp, DecodesLinuxRequest) {
  auto f = decode_frame(kLinuxRequest);
  ASSERT_TRUE(f.ok()) << f.error().detail;
  EXPECT_EQ(f->eth_dst, kBroadcastMac);
  EXPECT_EQ(f->eth_src, kVmMac);
  EXPECT_EQ(f->op, Op::kRequest);
  EXPECT_EQ(f->sender_mac, kVmMac);
  EXPECT_EQ(f->sender_ip, kVmIp);
  EXPECT_EQ(f->target_mac, kZeroMac);
  EXPECT_EQ(format_ipv4(f->target_ip), "192.168.50.99");
  EXPECT_EQ(f->wire_size, kArpFrameSize);
  EXPECT_FALSE(is_gratuitous(*f));
  EXPECT_EQ(encode_frame(*f), kLinuxRequest);
}

TEST(Arp, GratuitousRequestIsWhatLinuxSends) {
  const ArpFrame g = gratuitous_arp(kVmMac, kVmIp, Op::kRequest);
  EXPECT_EQ(encode_frame(g), kLinuxGarp);
  EXPECT_TRUE(is_gratuitous(g));
  auto back = decode_frame(kLinuxGarp);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, g);
}

TEST(Arp, GratuitousReplyCarriesTheMacAsTarget) {
  const auto bytes = encode_frame(gratuitous_arp(kVmMac, kVmIp, Op::kReply));
  // RFC 5944 4.6: opcode 2, target hardware address = the announced MAC.
  std::vector<uint8_t> want = kLinuxGarp;
  want[21] = 2;
  std::copy(kVmMac.begin(), kVmMac.end(), want.begin() + 32);
  EXPECT_EQ(bytes, want);
}

TEST(Arp, PaddedFramesRoundTrip) {
  std::vector<uint8_t> padded = kLinuxGarp;
  padded.insert(padded.end(), kMinEthFrameSize - padded.size(), 0);
  auto f = decode_frame(padded);
  ASSERT_TRUE(f.ok()) << f.error().detail;
  EXPECT_EQ(f->wire_size, kMinEthFrameSize);
  EXPECT_EQ(encode_frame(*f), padded);
}

Errc decode_error(const std::vector<uint8_t>& b) {
  auto f = decode_frame(b);
  EXPECT_FALSE(f.ok());
  if (f.ok()) return Errc::kSystem;  // never what a test expects
  EXPECT_FALSE(f.error().detail.empty());
  return f.error().code;
}

TEST(Arp, RejectsEveryBadField) {
  auto with = [](size_t off, uint8_t v) {
    auto b = kLinuxGarp;
    b[off] = v;
    return b;
  };
  EXPECT_EQ(decode_error({}), Errc::kTruncated);
  EXPECT_EQ(decode_error(std::vector<uint8_t>(kLinuxGarp.begin(), kLinuxGarp.begin() + 13)), Errc::kTruncated);
  EXPECT_EQ(decode_error(std::vector<uint8_t>(kLinuxGarp.begin(), kLinuxGarp.end() - 1)), Errc::kTruncated);
  EXPECT_EQ(decode_error(with(13, 0x00)), Errc::kUnknownType);  // 0x0800: IPv4, not ARP
  auto tagged = with(12, 0x81);
  tagged[13] = 0x00;
  EXPECT_EQ(decode_error(tagged), Errc::kUnknownType);
  EXPECT_EQ(decode_error(with(15, 6)), Errc::kUnknownType);     // hardware type 6 (IEEE 802)
  EXPECT_EQ(decode_error(with(16, 0x86)), Errc::kUnknownType);  // protocol 0x86dd
  EXPECT_EQ(decode_error(with(18, 8)), Errc::kMalformed);       // hardware length
  EXPECT_EQ(decode_error(with(19, 16)), Errc::kMalformed);      // protocol length
  EXPECT_EQ(decode_error(with(21, 3)), Errc::kMalformed);       // RARP request
  EXPECT_EQ(decode_error(with(20, 1)), Errc::kMalformed);       // opcode 257
  EXPECT_EQ(decode_error(with(6, 0x01)), Errc::kMalformed);     // multicast Ethernet source
  EXPECT_EQ(decode_error(with(22, 0x53)), Errc::kMalformed);    // multicast sender
  auto long_frame = kLinuxGarp;
  long_frame.insert(long_frame.end(), kMinEthFrameSize + 1 - long_frame.size(), 0);
  EXPECT_EQ(decode_error(long_frame), Errc::kTrailingBytes);
  auto dirty_pad = kLinuxGarp;
  dirty_pad.insert(dirty_pad.end(), {0, 0, 7, 0});
  EXPECT_EQ(decode_error(dirty_pad), Errc::kMalformed);
}

// Random bytes never crash the decoder, and whatever decodes re-encodes to
// the same bytes (the format is canonical).
TEST(Arp, RandomMutationsDecodeCanonicallyOrFail) {
  const uint64_t seed = tideway::testing::test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    auto b = kLinuxGarp;
    if (rng() % 2) b.insert(b.end(), rng() % 20, 0);
    for (int k = static_cast<int>(rng() % 3); k >= 0; --k) b[rng() % b.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    if (rng() % 8 == 0) b.resize(rng() % (b.size() + 1));
    auto f = decode_frame(b);
    if (!f.ok()) continue;
    ++accepted;
    ASSERT_EQ(encode_frame(*f), b);
  }
  EXPECT_GT(accepted, 100);  // mutations of addresses stay valid frames
}

TEST(ArpText, Mac) {
  auto m = parse_mac("52:54:00:12:34:56");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, kVmMac);
  EXPECT_EQ(format_mac(*m), "52:54:00:12:34:56");
  ASSERT_TRUE(parse_mac("52-54-00-AB-cd-EF").ok());
  EXPECT_EQ(format_mac(*parse_mac("52-54-00-AB-cd-EF")), "52:54:00:ab:cd:ef");
  for (const char* bad : {"", "52:54:00:12:34", "52:54:00:12:34:56:", "52:54:00:12:34:5g", "52:54-00:12:34:56",
                          "5254.0012.3456", "52:54:00:12:34:567", " 52:54:00:12:34:56"}) {
    auto r = parse_mac(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalid);
    EXPECT_NE(r.error().detail.find("MAC"), std::string::npos);
  }
}

TEST(ArpText, Ipv4) {
  auto ip = parse_ipv4("192.168.50.10");
  ASSERT_TRUE(ip.ok());
  EXPECT_EQ(*ip, kVmIp);
  EXPECT_EQ(format_ipv4(*parse_ipv4("0.0.0.0")), "0.0.0.0");
  EXPECT_EQ(format_ipv4(*parse_ipv4("255.255.255.255")), "255.255.255.255");
  for (const char* bad : {"", "1.2.3", "1.2.3.4.", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.-4", "1..3.4",
                          "a.b.c.d", "1.2.3.4 ", "1234.1.1.1", "1.2.3.0400"}) {
    auto r = parse_ipv4(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalid);
  }
}

}  // namespace
}  // namespace tideway::proto::arp

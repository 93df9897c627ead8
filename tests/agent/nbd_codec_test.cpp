// proto/nbd: byte layouts checked against the protocol's fixed values
// (magics, offsets, big-endian), and strict rejection of bad input.
#include "proto/nbd.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tideway::proto::nbd {
namespace {

template <typename C>
std::vector<uint8_t> bytes(const C& c) {
  return std::vector<uint8_t>(c.begin(), c.end());
}
std::vector<uint8_t> hex(const std::string& h) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoul(h.substr(i, 2), nullptr, 16)));
  return out;
}

TEST(NbdGreeting, LayoutIsNbdmagicIhaveoptFlags) {
  const auto g = bytes(encode_greeting(kFlagFixedNewstyle | kFlagNoZeroes));
  EXPECT_EQ(g, hex("4e42444d41474943" "49484156454f5054" "0003"));
  EXPECT_EQ(std::string(g.begin(), g.begin() + 8), "NBDMAGIC");
  EXPECT_EQ(std::string(g.begin() + 8, g.begin() + 16), "IHAVEOPT");
  auto d = decode_greeting(g);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, 3);
  auto bad = g;
  bad[0] ^= 1;
  EXPECT_EQ(decode_greeting(bad).error().code, Errc::kBadMagic);
  EXPECT_EQ(decode_greeting({g.data(), 17}).error().code, Errc::kTruncated);
}

TEST(NbdClientFlags, KnownBitsOnlyAndNoZeroesOnlyWhenOffered) {
  const uint16_t server = kFlagFixedNewstyle | kFlagNoZeroes;
  EXPECT_EQ(bytes(encode_client_flags(3)), hex("00000003"));
  EXPECT_EQ(*decode_client_flags(hex("00000000"), server), 0u);
  EXPECT_EQ(*decode_client_flags(hex("00000001"), server), 1u);
  EXPECT_EQ(*decode_client_flags(hex("00000003"), server), 3u);
  EXPECT_EQ(decode_client_flags(hex("00000004"), server).error().code, Errc::kUnknownFlags);
  EXPECT_EQ(decode_client_flags(hex("80000001"), server).error().code, Errc::kUnknownFlags);
  EXPECT_EQ(decode_client_flags(hex("00000002"), kFlagFixedNewstyle).error().code, Errc::kUnknownFlags);
  EXPECT_EQ(decode_client_flags(hex("000001"), server).error().code, Errc::kTruncated);
  EXPECT_EQ(decode_client_flags(hex("0000000100"), server).error().code, Errc::kTrailingBytes);
}

TEST(NbdOption, HeaderLayoutAndLimits) {
  const auto h = bytes(encode_option_header({7, 0x102}));
  EXPECT_EQ(h, hex("49484156454f5054" "00000007" "00000102"));
  auto d = decode_option_header(h);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->option, 7u);
  EXPECT_EQ(d->length, 0x102u);
  EXPECT_TRUE(decode_option_header(bytes(encode_option_header({1, kMaxOptionLength}))).ok());
  EXPECT_EQ(decode_option_header(bytes(encode_option_header({1, kMaxOptionLength + 1}))).error().code,
            Errc::kTooLarge);
  auto bad = h;
  bad[7] = 0;
  EXPECT_EQ(decode_option_header(bad).error().code, Errc::kBadMagic);
}

TEST(NbdOption, GoRoundTripAndStrictness) {
  const GoRequest go{"disk", {3, 0}};
  const auto b = encode_go(go);
  EXPECT_EQ(b, hex("00000004" "6469736b" "0002" "0003" "0000"));
  auto d = decode_go(b);
  ASSERT_TRUE(d.ok()) << d.error().detail;
  EXPECT_EQ(*d, go);
  EXPECT_TRUE(decode_go(encode_go({"", {}})).ok());

  // Name runs past the data; count disagrees with the bytes left; repeats.
  EXPECT_EQ(decode_go(hex("00000007" "6469736b" "0000")).error().code, Errc::kTruncated);
  EXPECT_EQ(decode_go(hex("00000004" "6469736b" "0001")).error().code, Errc::kTruncated);
  EXPECT_EQ(decode_go(hex("00000004" "6469736b" "0000" "0003")).error().code, Errc::kTrailingBytes);
  EXPECT_EQ(decode_go(hex("00000004" "6469736b" "0002" "0003" "0003")).error().code, Errc::kMalformed);
  EXPECT_EQ(decode_go(hex("00000004" "64690073" "0000")).error().code, Errc::kMalformed);  // NUL
  EXPECT_EQ(decode_go(hex("00001001")).error().code, Errc::kTooLarge);
  EXPECT_EQ(decode_go(hex("000000")).error().code, Errc::kTruncated);
  EXPECT_EQ(decode_go(encode_go({"x", std::vector<uint16_t>(kMaxInfoRequests + 1, 0)})).error().code,
            Errc::kTooLarge);
}

TEST(NbdOption, ExportName) {
  EXPECT_EQ(*decode_export_name(hex("6469736b")), "disk");
  EXPECT_EQ(*decode_export_name({}), "");
  EXPECT_FALSE(decode_export_name(hex("640073")).ok());
  EXPECT_FALSE(decode_export_name(std::vector<uint8_t>(kMaxStringLen + 1, 'a')).ok());
}

TEST(NbdOption, RepliesAndInfoItems) {
  const auto ack = encode_option_reply(7, Rep::kAck);
  EXPECT_EQ(ack, hex("0003e889045565a9" "00000007" "00000001" "00000000"));
  auto h = decode_option_reply_header(ack);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->type, 1u);

  const auto info = encode_info_export(0x123456789a, kTxHasFlags | kTxSendFlush);
  EXPECT_EQ(info, hex("0000" "000000123456789a" "0005"));
  EXPECT_EQ(info.size(), 12u);
  const auto bs = encode_info_block_size(1, 4096, 32u << 20);
  EXPECT_EQ(bs, hex("0003" "00000001" "00001000" "02000000"));
  EXPECT_EQ(bs.size(), 14u);
  const auto rep = encode_option_reply(6, Rep::kInfo, info);
  EXPECT_EQ(rep.size(), kOptionReplyHeaderSize + 12);
  EXPECT_EQ(rep[19], 12);
  EXPECT_EQ(encode_rep_server("ab"), hex("00000002" "6162"));
  const auto unsup = encode_option_reply(8, Rep::kErrUnsup);
  EXPECT_EQ(std::vector<uint8_t>(unsup.begin() + 12, unsup.begin() + 16), hex("80000001"));
}

TEST(NbdOption, ExportNameReplyZeroesUnlessNegotiatedAway) {
  const auto with = encode_export_name_reply(1 << 20, 0x0101, false);
  ASSERT_EQ(with.size(), 8u + 2 + 124);
  EXPECT_EQ(std::vector<uint8_t>(with.begin(), with.begin() + 10), hex("0000000000100000" "0101"));
  for (size_t i = 10; i < with.size(); ++i) EXPECT_EQ(with[i], 0);
  EXPECT_EQ(encode_export_name_reply(1 << 20, 0x0101, true).size(), 10u);
}

TEST(NbdRequest, LayoutAndRoundTrip) {
  const Request r{kCmdFlagFua, static_cast<uint16_t>(Cmd::kWrite), 0x0102030405060708, 0x1000, 0x200};
  const auto b = bytes(encode_request(r));
  EXPECT_EQ(b, hex("25609513" "0001" "0001" "0102030405060708" "0000000000001000" "00000200"));
  auto d = decode_request(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, r);
}

TEST(NbdRequest, FrameErrorsOnlyForMagicAndHugeWrites) {
  Request w{0, static_cast<uint16_t>(Cmd::kWrite), 1, 0, kMaxRequestLength};
  EXPECT_TRUE(decode_request(encode_request(w)).ok());
  w.length = kMaxRequestLength + 1;
  EXPECT_EQ(decode_request(encode_request(w)).error().code, Errc::kTooLarge);
  // Not a payload: a huge TRIM or READ is the server's business (EINVAL or
  // fine), not a framing error; neither are unknown commands or flags.
  EXPECT_TRUE(decode_request(encode_request({0, static_cast<uint16_t>(Cmd::kTrim), 1, 0, 0xffffffff})).ok());
  EXPECT_TRUE(decode_request(encode_request({0, static_cast<uint16_t>(Cmd::kRead), 1, 0, 0xffffffff})).ok());
  EXPECT_TRUE(decode_request(encode_request({0xffff, 99, 1, 0, 0})).ok());
  auto b = bytes(encode_request({}));
  b[3] = 0x14;
  EXPECT_EQ(decode_request(b).error().code, Errc::kBadMagic);
  EXPECT_EQ(decode_request({b.data(), 27}).error().code, Errc::kTruncated);
}

TEST(NbdReply, SimpleReplyLayout) {
  const auto b = bytes(encode_simple_reply({22, 0xaabbccdd11223344}));
  EXPECT_EQ(b, hex("67446698" "00000016" "aabbccdd11223344"));
  auto d = decode_simple_reply(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->error, 22u);
  EXPECT_EQ(d->cookie, 0xaabbccdd11223344u);
}

TEST(NbdErrors, ErrnoMapping) {
  EXPECT_EQ(errno_to_nbd(0), Err::kOk);
  EXPECT_EQ(errno_to_nbd(EINVAL), Err::kInval);
  EXPECT_EQ(errno_to_nbd(ENOSPC), Err::kNoSpc);
  EXPECT_EQ(errno_to_nbd(EDQUOT), Err::kNoSpc);
  EXPECT_EQ(errno_to_nbd(EROFS), Err::kPerm);
  EXPECT_EQ(errno_to_nbd(EIO), Err::kIo);
  EXPECT_EQ(errno_to_nbd(EBADF), Err::kIo);  // anything unlisted
  EXPECT_EQ(static_cast<uint32_t>(Err::kShutdown), 108u);
}

}  // namespace
}  // namespace tideway::proto::nbd

// The fixed frame header: layout on the wire, and rejection of every bad
// value of every field by decode_header.
#include "proto/frame.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "proto/crc32c.h"

namespace tideway::proto {
namespace {

uint32_t rd32(const std::vector<uint8_t>& b, size_t off) {
  return uint32_t{b[off]} | uint32_t{b[off + 1]} << 8 | uint32_t{b[off + 2]} << 16 |
         uint32_t{b[off + 3]} << 24;
}
void wr16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  for (size_t i = 0; i < 2; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void wr32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

FrameHeader data_header() {
  FrameHeader h;
  h.type = MessageType::kReplWrite;
  h.stream = 0x0A0B0C0D;
  h.seq = 0x0102030405060708ull;
  h.flags = kFlagResent;
  return h;
}

const std::vector<uint8_t> kPayload = {0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x42};

TEST(FrameHeader, WireLayoutIsLittleEndianAt32Bytes) {
  const auto f = encode_frame(data_header(), kPayload);
  ASSERT_EQ(f.size(), kHeaderSize + kPayload.size());
  EXPECT_EQ(f[0], 'T');
  EXPECT_EQ(f[1], 'D');
  EXPECT_EQ(f[2], 'W');
  EXPECT_EQ(f[3], 'Y');
  EXPECT_EQ(f[4], kMaxVersion);
  EXPECT_EQ(f[5], 0x10);  // REPL_WRITE
  EXPECT_EQ(f[6], 0x01);  // flags, little-endian
  EXPECT_EQ(f[7], 0x00);
  EXPECT_EQ(rd32(f, 8), 0x0A0B0C0Du);
  EXPECT_EQ(f[8], 0x0D);
  EXPECT_EQ(rd32(f, 12), kPayload.size());
  EXPECT_EQ(f[16], 0x08);
  EXPECT_EQ(f[23], 0x01);
  EXPECT_EQ(rd32(f, 24), 0u);
  // crc covers bytes 0..27 then the payload.
  std::vector<uint8_t> covered(f.begin(), f.begin() + 28);
  covered.insert(covered.end(), kPayload.begin(), kPayload.end());
  EXPECT_EQ(rd32(f, 28), crc32c(covered));
  EXPECT_TRUE(std::equal(kPayload.begin(), kPayload.end(), f.begin() + 32));
}

TEST(FrameHeader, EncodeIgnoresCallerLengthAndCrc) {
  FrameHeader h = data_header();
  h.length = 999;
  h.crc = 0x12345678;
  EXPECT_EQ(encode_frame(h, kPayload), encode_frame(data_header(), kPayload));
}

TEST(FrameHeader, AppendFrameBatches) {
  std::vector<uint8_t> out = {1, 2, 3};
  append_frame(out, data_header(), kPayload);
  append_frame(out, data_header(), {});
  const auto a = encode_frame(data_header(), kPayload);
  const auto b = encode_frame(data_header(), {});
  std::vector<uint8_t> want = {1, 2, 3};
  want.insert(want.end(), a.begin(), a.end());
  want.insert(want.end(), b.begin(), b.end());
  EXPECT_EQ(out, want);
}

TEST(FrameHeader, DecodeRoundTrip) {
  const auto f = encode_frame(data_header(), kPayload);
  auto h = decode_header(f);
  ASSERT_TRUE(h.ok()) << h.error().detail;
  EXPECT_EQ(h->version, kMaxVersion);
  EXPECT_EQ(h->type, MessageType::kReplWrite);
  EXPECT_EQ(h->flags, kFlagResent);
  EXPECT_EQ(h->stream, 0x0A0B0C0Du);
  EXPECT_EQ(h->length, kPayload.size());
  EXPECT_EQ(h->seq, 0x0102030405060708ull);
  EXPECT_EQ(h->crc, rd32(f, 28));
  EXPECT_TRUE(frame_crc_ok(f, std::span(f).subspan(kHeaderSize), h->crc));
  EXPECT_FALSE(frame_crc_ok(f, std::span(f).subspan(kHeaderSize, 5), h->crc));
  EXPECT_FALSE(frame_crc_ok(f, std::span(f).subspan(kHeaderSize), h->crc ^ 1));
}

TEST(FrameHeader, DecodeReadsOnlyTheFirst32Bytes) {
  auto f = encode_frame(data_header(), kPayload);
  auto h = decode_header(std::span(f).first(kHeaderSize));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->length, kPayload.size());
}

TEST(FrameHeader, TruncatedAtEveryLength) {
  const auto f = encode_frame(data_header(), kPayload);
  for (size_t n = 0; n < kHeaderSize; ++n) {
    auto h = decode_header(std::span(f).first(n));
    ASSERT_FALSE(h.ok()) << n;
    EXPECT_EQ(h.error().code, Errc::kTruncated) << n;
  }
}

TEST(FrameHeader, FrameCrcOkRejectsShortHeader) {
  const auto f = encode_frame(data_header(), {});
  for (size_t n = 0; n < 28; ++n) EXPECT_FALSE(frame_crc_ok(std::span(f).first(n), {}, 0)) << n;
}

// Patches one field of a valid header and expects decode_header to fail with
// the given code.
void expect_rejected(void (*patch)(std::vector<uint8_t>&), Errc code, const char* what) {
  auto f = encode_frame(data_header(), kPayload);
  patch(f);
  auto h = decode_header(f);
  ASSERT_FALSE(h.ok()) << what;
  EXPECT_EQ(h.error().code, code) << what << ": " << h.error().detail;
  EXPECT_FALSE(h.error().detail.empty());
}

TEST(FrameHeader, BadMagicInEveryByte) {
  for (size_t i = 0; i < 4; ++i) {
    for (uint8_t x : {0x01, 0x20, 0x80, 0xFF}) {
      auto f = encode_frame(data_header(), kPayload);
      f[i] ^= x;
      auto h = decode_header(f);
      ASSERT_FALSE(h.ok());
      EXPECT_EQ(h.error().code, Errc::kBadMagic) << "byte " << i;
    }
  }
  expect_rejected([](auto& f) { wr32(f, 0, 0x54445759); }, Errc::kBadMagic, "byte-swapped magic");
}

TEST(FrameHeader, BadVersion) {
  for (int v : {0, kMaxVersion + 1, 2, 0x7F, 0xFF}) {
    auto f = encode_frame(data_header(), kPayload);
    f[4] = static_cast<uint8_t>(v);
    auto h = decode_header(f);
    ASSERT_FALSE(h.ok()) << v;
    EXPECT_EQ(h.error().code, Errc::kBadVersion) << v;
  }
}

TEST(FrameHeader, EveryUnknownTypeRejectedEveryKnownAccepted) {
  int known = 0;
  for (int t = 0; t < 256; ++t) {
    auto f = encode_frame(data_header(), kPayload);
    f[5] = static_cast<uint8_t>(t);
    auto h = decode_header(f);
    if (is_known_type(static_cast<uint8_t>(t))) {
      ++known;
      // Control types additionally need stream 0 / seq 0 / no flags.
      if (is_control_type(static_cast<MessageType>(t))) {
        ASSERT_FALSE(h.ok());
        EXPECT_EQ(h.error().code, Errc::kMalformed);
      } else {
        EXPECT_TRUE(h.ok()) << t;
      }
      EXPECT_STRNE(type_name(static_cast<MessageType>(t)), "?");
    } else {
      ASSERT_FALSE(h.ok()) << t;
      EXPECT_EQ(h.error().code, Errc::kUnknownType) << t;
    }
  }
  EXPECT_EQ(known, 14);
}

TEST(FrameHeader, EveryUnknownFlagBitRejected) {
  for (int bit = 0; bit < 16; ++bit) {
    auto f = encode_frame(data_header(), kPayload);
    wr16(f, 6, static_cast<uint16_t>(1u << bit));
    auto h = decode_header(f);
    if ((1u << bit) & kKnownFlags) {
      EXPECT_TRUE(h.ok()) << bit;
    } else {
      ASSERT_FALSE(h.ok()) << bit;
      EXPECT_EQ(h.error().code, Errc::kUnknownFlags) << bit;
    }
  }
  expect_rejected([](auto& f) { wr16(f, 6, 0xFFFF); }, Errc::kUnknownFlags, "all flags");
}

TEST(FrameHeader, LengthBound) {
  for (uint32_t len : {kMaxPayload + 1, kMaxPayload + 4096, 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    auto f = encode_frame(data_header(), kPayload);
    wr32(f, 12, len);
    auto h = decode_header(f);
    ASSERT_FALSE(h.ok()) << len;
    EXPECT_EQ(h.error().code, Errc::kTooLarge) << len;
  }
  for (uint32_t len : {0u, 1u, kMaxPayload}) {
    auto f = encode_frame(data_header(), kPayload);
    wr32(f, 12, len);
    auto h = decode_header(f);
    ASSERT_TRUE(h.ok()) << len;
    EXPECT_EQ(h->length, len);
  }
}

TEST(FrameHeader, ReservedMustBeZeroInEveryByte) {
  for (size_t i = 24; i < 28; ++i) {
    auto f = encode_frame(data_header(), kPayload);
    f[i] = 0x01;
    auto h = decode_header(f);
    ASSERT_FALSE(h.ok()) << i;
    EXPECT_EQ(h.error().code, Errc::kMalformed) << i;
  }
}

TEST(FrameHeader, StreamSeqAndCrcTakeAnyValue) {
  for (uint32_t stream : {1u, 0x80000000u, 0xFFFFFFFFu}) {
    for (uint64_t seq : {uint64_t{1}, UINT64_MAX}) {
      FrameHeader h = data_header();
      h.stream = stream;
      h.seq = seq;
      auto d = decode_header(encode_frame(h, kPayload));
      ASSERT_TRUE(d.ok());
      EXPECT_EQ(d->stream, stream);
      EXPECT_EQ(d->seq, seq);
    }
  }
  // decode_header leaves the crc to the caller.
  auto f = encode_frame(data_header(), kPayload);
  wr32(f, 28, 0);
  EXPECT_TRUE(decode_header(f).ok());
}

TEST(FrameHeader, ControlTypesOnlyOnStreamZeroUnsequencedUnflagged) {
  const MessageType control[] = {MessageType::kHello, MessageType::kWelcome, MessageType::kError,
                                 MessageType::kHeartbeat, MessageType::kStreamAck};
  for (MessageType t : control) {
    SCOPED_TRACE(type_name(t));
    EXPECT_TRUE(is_control_type(t));
    FrameHeader h;
    h.type = t;
    EXPECT_TRUE(decode_header(encode_frame(h, {})).ok());
    FrameHeader bad = h;
    bad.stream = 1;
    EXPECT_EQ(decode_header(encode_frame(bad, {})).error().code, Errc::kMalformed);
    bad = h;
    bad.seq = 1;
    EXPECT_EQ(decode_header(encode_frame(bad, {})).error().code, Errc::kMalformed);
    bad = h;
    bad.seq = 1;
    bad.flags = kFlagResent;
    EXPECT_EQ(decode_header(encode_frame(bad, {})).error().code, Errc::kMalformed);
  }
  for (MessageType t : {MessageType::kReplWrite, MessageType::kMigPages, MessageType::kProbe})
    EXPECT_FALSE(is_control_type(t));
  // Probes may go on any stream, sequenced or not.
  FrameHeader probe;
  probe.type = MessageType::kProbe;
  EXPECT_TRUE(decode_header(encode_frame(probe, {})).ok());
}

TEST(FrameHeader, ResentNeedsASequenceNumber) {
  FrameHeader h = data_header();
  h.seq = 0;
  auto d = decode_header(encode_frame(h, kPayload));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, Errc::kMalformed);
  h.flags = 0;
  EXPECT_TRUE(decode_header(encode_frame(h, kPayload)).ok());
}

TEST(FrameHeader, ErrcNamesAreDistinct) {
  std::set<std::string> names;
  for (int e = 1; e <= static_cast<int>(Errc::kIncompatible); ++e)
    names.insert(errc_name(static_cast<Errc>(e)));
  EXPECT_EQ(names.size(), static_cast<size_t>(Errc::kIncompatible));
  EXPECT_EQ(names.count("unknown error"), 0u);
}

TEST(FrameHeader, SetFlagsResealsTheChecksum) {
  FrameHeader h;
  h.type = MessageType::kProbe;
  h.stream = 3;
  h.seq = 9;
  const std::vector<uint8_t> payload = {1, 2, 3, 4, 5};
  auto f = encode_frame(h, payload);
  const auto before = decode_header(f).value();
  set_frame_flags(f, kFlagResent | kFlagMore);
  const auto after = decode_header(f).value();
  EXPECT_EQ(after.flags, kFlagResent | kFlagMore);
  EXPECT_NE(after.crc, before.crc);
  EXPECT_TRUE(frame_crc_ok(f, {f.data() + kHeaderSize, payload.size()}, after.crc));
  EXPECT_EQ(after.seq, 9u);
  EXPECT_EQ(std::vector<uint8_t>(f.begin() + kHeaderSize, f.end()), payload);
}

}  // namespace
}  // namespace tideway::proto

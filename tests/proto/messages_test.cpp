// Message payloads: round trip of every sample through a real frame and the
// FrameParser, canonical re-encoding, truncation at every offset, trailing
// bytes, and the malformed values of every validated field.
#include "proto/messages.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "proto/bytes.h"
#include "tests/proto/compare.h"
#include "tests/proto/samples.h"

namespace tideway::proto {
namespace {

using testing::expect_message_eq;
using testing::Sample;
using testing::sample_messages;

// Samples by name, for the per-message tests below.
Sample sample(const std::string& name) {
  for (auto& s : sample_messages())
    if (s.name == name) return s;
  ADD_FAILURE() << "no sample " << name;
  return {};
}

std::vector<uint8_t> payload_of(const std::string& name) { return encode_payload(sample(name).msg); }

void put16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  for (size_t i = 0; i < 2; ++i) b.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}
void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) b.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}
void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  for (size_t i = 0; i < 8; ++i) b.at(off + i) = static_cast<uint8_t>(v >> (8 * i));
}

// Decoding must fail with `code`.
void expect_error(MessageType t, const std::vector<uint8_t>& payload, Errc code) {
  auto m = decode_payload(t, payload);
  ASSERT_FALSE(m.ok()) << type_name(t) << " decoded but should fail with " << errc_name(code);
  EXPECT_EQ(m.error().code, code) << errc_name(m.error().code) << ": " << m.error().detail;
  EXPECT_FALSE(m.error().detail.empty());
}

void expect_ok(MessageType t, const std::vector<uint8_t>& payload) {
  auto m = decode_payload(t, payload);
  ASSERT_TRUE(m.ok()) << type_name(t) << ": " << m.error().detail;
  // Whatever decodes re-encodes to the same bytes.
  EXPECT_EQ(encode_payload(*m), payload);
}

// --- every sample -----------------------------------------------------------

class EverySample : public ::testing::TestWithParam<Sample> {};

TEST_P(EverySample, RoundTripThroughFrameParser) {
  const Sample& s = GetParam();
  const auto frame = encode_message(s.msg, s.stream, s.seq);
  FrameParser p;
  p.feed(frame);
  auto next = p.next();
  ASSERT_TRUE(next.ok()) << next.error().detail;
  ASSERT_TRUE(next->has_value());
  const Frame& f = **next;
  EXPECT_EQ(f.header.type, message_type(s.msg));
  EXPECT_EQ(f.header.stream, s.stream);
  EXPECT_EQ(f.header.seq, s.seq);
  EXPECT_EQ(f.header.flags, 0);
  EXPECT_EQ(f.header.version, kMaxVersion);
  EXPECT_EQ(f.header.length, frame.size() - kHeaderSize);
  auto m = decode_payload(f.header.type, f.payload);
  ASSERT_TRUE(m.ok()) << m.error().detail;
  expect_message_eq(s.msg, *m);
  // Views point into the parser's buffer, not into a copy.
  if (auto* w = std::get_if<ReplWrite>(&*m); w && !w->data.empty()) {
    EXPECT_GE(w->data.data(), f.payload.data());
    EXPECT_LE(w->data.data() + w->data.size(), f.payload.data() + f.payload.size());
  }
  auto after = p.next();
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->has_value());
  EXPECT_EQ(p.buffered(), 0u);
}

TEST_P(EverySample, ResentFlagNeedsASequencedFrame) {
  const Sample& s = GetParam();
  FrameParser p;
  p.feed(encode_message(s.msg, s.stream, s.seq, kFlagResent));
  auto next = p.next();
  if (s.seq == 0) {
    // Unsequenced frames (all control frames) are never re-sent.
    ASSERT_FALSE(next.ok());
    EXPECT_EQ(next.error().code, Errc::kMalformed);
    return;
  }
  ASSERT_TRUE(next.ok()) << next.error().detail;
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ((*next)->header.flags, kFlagResent);
}

TEST_P(EverySample, ReencodingIsCanonical) {
  const auto payload = encode_payload(GetParam().msg);
  auto m = decode_payload(message_type(GetParam().msg), payload);
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_EQ(encode_payload(*m), payload);
}

TEST_P(EverySample, TruncationAtEveryOffsetRejected) {
  const Sample& s = GetParam();
  const MessageType t = message_type(s.msg);
  const auto payload = encode_payload(s.msg);
  for (size_t n = 0; n < payload.size(); ++n) {
    auto m = decode_payload(t, std::span(payload).first(n));
    if (t == MessageType::kProbe && n >= 16) {
      // A probe's padding is "the rest": a shorter probe is still a probe.
      ASSERT_TRUE(m.ok()) << n;
      EXPECT_EQ(std::get<Probe>(*m).padding.size(), n - 16);
      continue;
    }
    ASSERT_FALSE(m.ok()) << s.name << " truncated to " << n << " of " << payload.size()
                         << " bytes decoded";
    EXPECT_EQ(m.error().code, Errc::kTruncated) << s.name << " at " << n << ": " << m.error().detail;
  }
}

TEST_P(EverySample, TrailingBytesRejected) {
  const Sample& s = GetParam();
  const MessageType t = message_type(s.msg);
  for (size_t extra : {1, 2, 13, 4096}) {
    auto payload = encode_payload(s.msg);
    payload.resize(payload.size() + extra, 0);
    auto m = decode_payload(t, payload);
    if (t == MessageType::kProbe) {
      ASSERT_TRUE(m.ok());
      continue;
    }
    ASSERT_FALSE(m.ok()) << s.name << " with " << extra << " trailing bytes";
    EXPECT_EQ(m.error().code, Errc::kTrailingBytes) << m.error().detail;
  }
}

TEST_P(EverySample, ExtremeStreamAndSeq) {
  const Sample& s = GetParam();
  FrameParser p;
  p.feed(encode_message(s.msg, 0xFFFFFFFFu, UINT64_MAX));
  auto next = p.next();
  if (is_control_type(message_type(s.msg))) {
    // Control frames belong to stream 0 and are unsequenced.
    ASSERT_FALSE(next.ok());
    EXPECT_EQ(next.error().code, Errc::kMalformed);
    return;
  }
  ASSERT_TRUE(next.ok()) << next.error().detail;
  ASSERT_TRUE(next->has_value());
  EXPECT_EQ((*next)->header.stream, 0xFFFFFFFFu);
  EXPECT_EQ((*next)->header.seq, UINT64_MAX);
}

std::string sample_name(const ::testing::TestParamInfo<Sample>& p) { return p.param.name; }
INSTANTIATE_TEST_SUITE_P(Proto, EverySample, ::testing::ValuesIn(sample_messages()), sample_name);

TEST(Samples, CoverEveryMessageType) {
  std::set<MessageType> seen;
  for (const auto& s : sample_messages()) seen.insert(message_type(s.msg));
  EXPECT_EQ(seen.size(), std::variant_size_v<Message>);
}

// --- decode_payload in general ----------------------------------------------

TEST(DecodePayload, RejectsOversizedPayload) {
  std::vector<uint8_t> big(kMaxPayload + 1, 0);
  expect_error(MessageType::kProbe, big, Errc::kTooLarge);
  big.resize(kMaxPayload);
  EXPECT_TRUE(decode_payload(MessageType::kProbe, big).ok());
}

TEST(DecodePayload, RejectsUnknownType) {
  expect_error(static_cast<MessageType>(0x99), {}, Errc::kUnknownType);
  expect_error(static_cast<MessageType>(0x00), std::vector<uint8_t>(16, 0), Errc::kUnknownType);
}

TEST(DecodePayload, EmptyPayloadOfEveryFixedTypeIsTruncated) {
  for (int t = 0; t < 256; ++t) {
    if (!is_known_type(static_cast<uint8_t>(t))) continue;
    expect_error(static_cast<MessageType>(t), {}, Errc::kTruncated);
  }
}

// --- HELLO ------------------------------------------------------------------
// min u16 @0, max u16 @2, features u64 @4, session[16] @12, site len u16 @28,
// site @30, then u32 count and count x {u32 stream, u64 seq}.

TEST(Hello, MinAboveMaxRejected) {
  auto p = payload_of("hello_new");
  put16(p, 0, 4);
  put16(p, 2, 3);
  expect_error(MessageType::kHello, p, Errc::kMalformed);
  put16(p, 0, 3);
  expect_ok(MessageType::kHello, p);
}

TEST(Hello, SiteLengthBounds) {
  Hello h;
  h.site = std::string(kMaxNameLen, 's');
  expect_ok(MessageType::kHello, encode_payload(h));
  // 256 bytes of site, written by hand since the encoder asserts the bound.
  std::vector<uint8_t> p;
  ByteWriter w(p);
  w.u16(1);
  w.u16(1);
  w.u64(0);
  w.bytes(SessionId{}.data(), 16);
  w.str16(std::string(kMaxNameLen + 1, 's'));
  w.u32(0);
  expect_error(MessageType::kHello, p, Errc::kTooLarge);
  // A length that runs past the end.
  auto q = encode_payload(h);
  put16(q, 28, 0xFFFF);
  expect_error(MessageType::kHello, q, Errc::kTooLarge);
  put16(q, 28, kMaxNameLen);
  q.resize(30 + 100);
  expect_error(MessageType::kHello, q, Errc::kTruncated);
}

TEST(Hello, PositionCountBounds) {
  Hello h;
  h.session = testing::session_id(1);
  for (uint32_t i = 1; i <= kMaxStreams; ++i) h.received.push_back({i, i * 10});
  auto p = encode_payload(h);
  expect_ok(MessageType::kHello, p);
  const size_t count_off = 30;
  put32(p, count_off, kMaxStreams + 1);
  expect_error(MessageType::kHello, p, Errc::kTooLarge);
  put32(p, count_off, 0xFFFFFFFFu);
  expect_error(MessageType::kHello, p, Errc::kTooLarge);
  put32(p, count_off, kMaxStreams - 1);  // one entry left over
  expect_error(MessageType::kHello, p, Errc::kTrailingBytes);
}

TEST(Hello, DuplicateOrControlStreamPositionRejected) {
  Hello h;
  h.session = testing::session_id(1);
  h.received = {{1, 5}, {2, 6}, {1, 7}};
  expect_error(MessageType::kHello, encode_payload(h), Errc::kMalformed);
  h.received = {{0, 5}};
  expect_error(MessageType::kHello, encode_payload(h), Errc::kMalformed);
}

TEST(Hello, NewSessionCannotCarryPositions) {
  Hello h;  // zero session
  h.received = {{1, 5}};
  expect_error(MessageType::kHello, encode_payload(h), Errc::kMalformed);
  h.session[15] = 1;
  expect_ok(MessageType::kHello, encode_payload(h));
}

// --- WELCOME ----------------------------------------------------------------
// version u16 @0, features u64 @2, session[16] @10, resumed u8 @26,
// site len u16 @27, site @29, then positions.

TEST(Welcome, ResumedFlagMustBeZeroOrOne) {
  auto p = payload_of("welcome_new");
  for (int v : {2, 3, 0x80, 0xFF}) {
    p.at(26) = static_cast<uint8_t>(v);
    expect_error(MessageType::kWelcome, p, Errc::kMalformed);
  }
  p.at(26) = 1;
  expect_ok(MessageType::kWelcome, p);
}

TEST(Welcome, InconsistentResumeRejected) {
  Welcome w;
  w.resumed = true;  // zero session cannot be resumed
  expect_error(MessageType::kWelcome, encode_payload(w), Errc::kMalformed);
  w.session = testing::session_id(2);
  w.resumed = false;
  w.received = {{1, 1}};  // a new session has received nothing
  expect_error(MessageType::kWelcome, encode_payload(w), Errc::kMalformed);
  w.resumed = true;
  expect_ok(MessageType::kWelcome, encode_payload(w));
  w.received = {{1, 1}, {1, 2}};
  expect_error(MessageType::kWelcome, encode_payload(w), Errc::kMalformed);
}

TEST(Welcome, SiteAndPositionBounds) {
  auto p = payload_of("welcome_new");
  put16(p, 27, kMaxNameLen + 1);
  expect_error(MessageType::kWelcome, p, Errc::kTooLarge);
  p = payload_of("welcome_resumed");
  put32(p, 29, kMaxStreams + 1);  // empty site, so the count is at 29
  expect_error(MessageType::kWelcome, p, Errc::kTooLarge);
}

// --- ERROR ------------------------------------------------------------------

TEST(ErrorMessage, UnknownCodesRejected) {
  auto p = payload_of("error_1");
  for (uint32_t c : {0u, 6u, 7u, 0x100u, 0xFFFFFFFFu}) {
    put32(p, 0, c);
    expect_error(MessageType::kError, p, Errc::kMalformed);
  }
  for (uint32_t c = 1; c <= 5; ++c) {
    put32(p, 0, c);
    expect_ok(MessageType::kError, p);
  }
}

TEST(ErrorMessage, ReasonBounds) {
  std::vector<uint8_t> p;
  ByteWriter w(p);
  w.u32(1);
  w.str16(std::string(kMaxReasonLen + 1, 'r'));
  expect_error(MessageType::kError, p, Errc::kTooLarge);
  put16(p, 4, kMaxReasonLen);
  expect_error(MessageType::kError, p, Errc::kTrailingBytes);
  p.pop_back();
  expect_ok(MessageType::kError, p);
}

TEST(ErrorMessage, EncoderTruncatesLongReason) {
  ErrorMsg e{ErrorCode::kShuttingDown, std::string(kMaxReasonLen + 500, 'z')};
  auto m = decode_payload(MessageType::kError, encode_payload(e));
  ASSERT_TRUE(m.ok()) << m.error().detail;
  EXPECT_EQ(std::get<ErrorMsg>(*m).reason, std::string(kMaxReasonLen, 'z'));
  EXPECT_EQ(std::get<ErrorMsg>(*m).code, ErrorCode::kShuttingDown);
}

// --- STREAM_ACK -------------------------------------------------------------

TEST(StreamAckMessage, Bounds) {
  StreamAck a;
  for (uint32_t i = 1; i <= kMaxStreams; ++i) a.acked.push_back({i, i});
  auto p = encode_payload(a);
  expect_ok(MessageType::kStreamAck, p);
  put32(p, 0, kMaxStreams + 1);
  expect_error(MessageType::kStreamAck, p, Errc::kTooLarge);
  a.acked.back().stream = 1;
  expect_error(MessageType::kStreamAck, encode_payload(a), Errc::kMalformed);
  a.acked = {{0, 3}};
  expect_error(MessageType::kStreamAck, encode_payload(a), Errc::kMalformed);
}

// --- REPL_WRITE -------------------------------------------------------------
// writer @0, volume @4, seq u64 @8, vlen u8 @16, vlen x u32, then op u8,
// flags u32, offset u64, length u32, data.

struct WriteOffsets {
  size_t op, flags, offset, length, data;
};
WriteOffsets write_offsets(size_t vlen) {
  const size_t b = 17 + 4 * vlen;
  return {b, b + 1, b + 5, b + 13, b + 17};
}

TEST(ReplWriteMessage, LayoutMatchesOffsets) {
  const auto s = sample("repl_write");
  const auto& w = std::get<ReplWrite>(s.msg);
  const auto p = encode_payload(s.msg);
  const auto o = write_offsets(w.vector.size());
  EXPECT_EQ(p.at(16), w.vector.size());
  EXPECT_EQ(p.at(o.op), 1);
  EXPECT_EQ(p.at(o.flags), kWriteFua);
  EXPECT_EQ(p.size(), o.data + w.length);
}

TEST(ReplWriteMessage, ZeroSeqRejected) {
  auto p = payload_of("repl_write");
  put64(p, 8, 0);
  expect_error(MessageType::kReplWrite, p, Errc::kMalformed);
  put64(p, 8, 1);
  expect_ok(MessageType::kReplWrite, p);
}

TEST(ReplWriteMessage, UnknownOpRejected) {
  auto p = payload_of("repl_discard");
  const auto o = write_offsets(0);
  for (int op : {0, 4, 5, 0x81, 0xFF}) {
    p.at(o.op) = static_cast<uint8_t>(op);
    expect_error(MessageType::kReplWrite, p, Errc::kMalformed);
  }
  p.at(o.op) = static_cast<uint8_t>(WriteOp::kWriteZeroes);
  expect_ok(MessageType::kReplWrite, p);
}

TEST(ReplWriteMessage, UnknownFlagBitsRejected) {
  auto p = payload_of("repl_write");
  const auto o = write_offsets(3);
  for (int bit = 1; bit < 32; ++bit) {
    put32(p, o.flags, 1u << bit);
    expect_error(MessageType::kReplWrite, p, Errc::kMalformed);
  }
  put32(p, o.flags, 0);
  expect_ok(MessageType::kReplWrite, p);
}

TEST(ReplWriteMessage, LengthBounds) {
  auto p = payload_of("repl_discard");
  const auto o = write_offsets(0);
  put32(p, o.length, 0);
  expect_error(MessageType::kReplWrite, p, Errc::kTooLarge);
  put32(p, o.length, kMaxWriteLen + 1);
  expect_error(MessageType::kReplWrite, p, Errc::kTooLarge);
  put32(p, o.length, 0xFFFFFFFFu);
  expect_error(MessageType::kReplWrite, p, Errc::kTooLarge);
  put64(p, o.offset, 0);
  put32(p, o.length, kMaxWriteLen);
  expect_ok(MessageType::kReplWrite, p);
  // A write's length claims more data than the payload holds.
  auto w = payload_of("repl_write");
  const auto ow = write_offsets(3);
  put32(w, ow.length, 4096 + 513);
  expect_error(MessageType::kReplWrite, w, Errc::kTruncated);
  put32(w, ow.length, 4096 + 511);
  expect_error(MessageType::kReplWrite, w, Errc::kTrailingBytes);
}

TEST(ReplWriteMessage, OffsetOverflowRejected) {
  auto p = payload_of("repl_discard");  // length 4096
  const auto o = write_offsets(0);
  put64(p, o.offset, UINT64_MAX - 4096 + 1);
  expect_error(MessageType::kReplWrite, p, Errc::kMalformed);
  put64(p, o.offset, UINT64_MAX);
  expect_error(MessageType::kReplWrite, p, Errc::kMalformed);
  put64(p, o.offset, UINT64_MAX - 4096);
  expect_ok(MessageType::kReplWrite, p);
}

TEST(ReplWriteMessage, CountVectorBound) {
  auto p = payload_of("repl_write_zeroes");  // 16 entries
  expect_ok(MessageType::kReplWrite, p);
  p.at(16) = kMaxVectorLen + 1;
  p.insert(p.begin() + 17, {0, 0, 0, 0});
  expect_error(MessageType::kReplWrite, p, Errc::kTooLarge);
  p.at(16) = 0xFF;
  expect_error(MessageType::kReplWrite, p, Errc::kTooLarge);
}

TEST(ReplWriteMessage, DiscardCarriesNoData) {
  auto p = payload_of("repl_discard");
  p.push_back(0xAA);
  expect_error(MessageType::kReplWrite, p, Errc::kTrailingBytes);
  // The same bytes as a write are missing their data.
  auto q = payload_of("repl_discard");
  q.at(write_offsets(0).op) = static_cast<uint8_t>(WriteOp::kWrite);
  expect_error(MessageType::kReplWrite, q, Errc::kTruncated);
}

// --- MIG_CONTROL ------------------------------------------------------------
// migration @0, op u8 @4, iteration @5, sent @9, dirtied @17, remaining @25,
// detail len u32 @33, detail @37.

TEST(MigControlMessage, UnknownOpRejected) {
  auto p = payload_of("mig_control_1");
  for (int op : {0, kMaxMigOp + 1, 0x80, 0xFF}) {
    p.at(4) = static_cast<uint8_t>(op);
    expect_error(MessageType::kMigControl, p, Errc::kMalformed);
  }
  for (int op = 1; op <= kMaxMigOp; ++op) {
    p.at(4) = static_cast<uint8_t>(op);
    expect_ok(MessageType::kMigControl, p);
  }
}

TEST(MigControlMessage, DetailLengthBounds) {
  auto p = payload_of("mig_control_7");  // 777 bytes of detail
  put32(p, 33, kMaxPayload + 1);
  expect_error(MessageType::kMigControl, p, Errc::kTooLarge);
  put32(p, 33, 0xFFFFFFFFu);
  expect_error(MessageType::kMigControl, p, Errc::kTooLarge);
  put32(p, 33, 778);
  expect_error(MessageType::kMigControl, p, Errc::kTruncated);
  put32(p, 33, 776);
  expect_error(MessageType::kMigControl, p, Errc::kTrailingBytes);
}

// --- MIG_PAGES and DISK_BLOCKS records --------------------------------------
// header: u32, u32 (block size for DISK_BLOCKS), count u32 @8; records from
// @12: address u64, encoding u8, length u32, bytes.

std::vector<uint8_t> one_record(MessageType t, uint32_t block_size, uint64_t address, uint8_t enc,
                                uint32_t len, size_t actual_len) {
  std::vector<uint8_t> p;
  ByteWriter w(p);
  w.u32(9);
  w.u32(t == MessageType::kDiskBlocks ? block_size : 1);
  w.u32(1);
  w.u64(address);
  w.u8(enc);
  w.u32(len);
  p.resize(p.size() + actual_len, 0x5A);
  return p;
}

TEST(Records, RecordCountBound) {
  for (MessageType t : {MessageType::kDiskBlocks}) {
    auto p = one_record(t, 4096, 0, 1, 0, 0);
    expect_ok(t, p);
    put32(p, 8, kMaxRecordsPerBatch + 1);
    expect_error(t, p, Errc::kTooLarge);
    put32(p, 8, 0xFFFFFFFFu);
    expect_error(t, p, Errc::kTooLarge);
    put32(p, 8, 2);  // claims a second record that is not there
    expect_error(t, p, Errc::kTruncated);
    put32(p, 8, 0);
    expect_error(t, p, Errc::kTrailingBytes);
  }
}

TEST(Records, MaximumBatchOfZeroRecordsAccepted) {
  DiskBlocks m;
  for (uint32_t i = 0; i < kMaxRecordsPerBatch; ++i)
    m.records.push_back({uint64_t{i} * kPageSize, RecordEncoding::kZero, {}});
  expect_ok(MessageType::kDiskBlocks, encode_payload(m));
}

// --- MIG_PAGES ----------------------------------------------------------------
// migration u32 @0, stream offset u64 @4, opaque len u32 @12, opaque @16,
// cut count u32, cuts u32 each, batch length u32, the codec batch.

// Written by hand: encode_payload asserts the invariants these tests break.
std::vector<uint8_t> mig_pages(uint64_t offset, size_t opaque_len, const std::vector<uint32_t>& cuts,
                               size_t batch_len) {
  std::vector<uint8_t> p;
  ByteWriter w(p);
  w.u32(3);
  w.u64(offset);
  w.u32(static_cast<uint32_t>(opaque_len));
  p.resize(p.size() + opaque_len, 0x11);
  w.u32(static_cast<uint32_t>(cuts.size()));
  for (uint32_t c : cuts) w.u32(c);
  w.u32(static_cast<uint32_t>(batch_len));
  p.resize(p.size() + batch_len, 0x22);
  return p;
}

TEST(MigPagesMessage, HandWrittenLayoutMatchesTheEncoder) {
  std::vector<uint8_t> opaque(100, 0x11), batch(30, 0x22);
  MigPages m;
  m.migration = 3;
  m.stream_offset = 77;
  m.opaque = opaque;
  m.page_cuts = {0, 50};
  m.batch = batch;
  EXPECT_EQ(encode_payload(m), mig_pages(77, 100, {0, 50}, 30));
}

TEST(MigPagesMessage, CutsMustBeAscendingAndInsideTheOpaqueBytes) {
  expect_ok(MessageType::kMigPages, mig_pages(0, 100, {0, 0, 50, 100}, 30));
  expect_error(MessageType::kMigPages, mig_pages(0, 100, {0, 101}, 30), Errc::kMalformed);
  expect_error(MessageType::kMigPages, mig_pages(0, 100, {60, 50}, 30), Errc::kMalformed);
}

TEST(MigPagesMessage, PagesAndBatchComeTogether) {
  expect_ok(MessageType::kMigPages, mig_pages(7, 100, {}, 0));  // pass-through only
  expect_error(MessageType::kMigPages, mig_pages(7, 100, {}, 30), Errc::kMalformed);
  expect_error(MessageType::kMigPages, mig_pages(7, 100, {10}, 0), Errc::kMalformed);
}

TEST(MigPagesMessage, LengthsAreBounded) {
  auto p = mig_pages(0, 100, {10}, 30);
  put32(p, 12, kMaxPayload + 1);
  expect_error(MessageType::kMigPages, p, Errc::kTooLarge);
  put32(p, 12, 200);  // more opaque bytes than the payload holds
  expect_error(MessageType::kMigPages, p, Errc::kTruncated);
  p = mig_pages(0, 100, {10}, 30);
  put32(p, 116, kMaxRecordsPerBatch + 1);
  expect_error(MessageType::kMigPages, p, Errc::kTooLarge);
  std::vector<uint32_t> many(kMaxRecordsPerBatch, 5);
  expect_ok(MessageType::kMigPages, mig_pages(0, 10, many, 1));
}

TEST(MigPagesMessage, StreamOffsetMustNotOverflow) {
  expect_error(MessageType::kMigPages, mig_pages(UINT64_MAX - 50, 100, {}, 0), Errc::kMalformed);
  expect_ok(MessageType::kMigPages, mig_pages(UINT64_MAX - 100, 100, {}, 0));
  expect_error(MessageType::kMigPages, mig_pages(UINT64_MAX - 4096, 100, {1}, 1), Errc::kMalformed);
}

TEST(Records, UnknownEncodingRejected) {
  for (MessageType t : {MessageType::kDiskBlocks}) {
    for (int enc : {5, 6, 0x80, 0xFF})
      expect_error(t, one_record(t, 4096, 0, static_cast<uint8_t>(enc), 10, 10), Errc::kMalformed);
    for (int enc = 2; enc <= 4; ++enc)
      expect_ok(t, one_record(t, 4096, 0, static_cast<uint8_t>(enc), 10, 10));
  }
}

TEST(Records, RawRecordMustBeExactlyOneBlock) {
  for (MessageType t : {MessageType::kDiskBlocks}) {
    for (uint32_t len : {0u, 1u, 4095u, 4097u, 8192u})
      expect_error(t, one_record(t, 4096, 0, 0, len, len), Errc::kMalformed);
    expect_ok(t, one_record(t, 4096, 0, 0, 4096, 4096));
  }
  // DISK_BLOCKS measures against its own block size.
  expect_error(MessageType::kDiskBlocks, one_record(MessageType::kDiskBlocks, 512, 0, 0, 4096, 4096),
               Errc::kMalformed);
  expect_ok(MessageType::kDiskBlocks, one_record(MessageType::kDiskBlocks, 512, 0, 0, 512, 512));
}

TEST(Records, ZeroRecordCarriesNoBytes) {
  for (MessageType t : {MessageType::kDiskBlocks}) {
    expect_error(t, one_record(t, 4096, 0, 1, 1, 1), Errc::kMalformed);
    expect_error(t, one_record(t, 4096, 0, 1, 4096, 4096), Errc::kMalformed);
  }
}

TEST(Records, CodecRecordBoundedByTwoBlocks) {
  for (MessageType t : {MessageType::kDiskBlocks}) {
    expect_ok(t, one_record(t, 4096, 0, 4, 8192, 8192));
    expect_error(t, one_record(t, 4096, 0, 4, 8193, 8193), Errc::kTooLarge);
    expect_error(t, one_record(t, 4096, 0, 2, 0xFFFFFFFFu, 16), Errc::kTooLarge);
    expect_error(t, one_record(t, 4096, 0, 3, 100, 99), Errc::kTruncated);
  }
}

TEST(Records, AddressPlusBlockMustNotOverflow) {
  for (MessageType t : {MessageType::kDiskBlocks}) {
    expect_ok(t, one_record(t, 4096, UINT64_MAX - 4096, 1, 0, 0));
    expect_error(t, one_record(t, 4096, UINT64_MAX - 4095, 1, 0, 0), Errc::kMalformed);
    expect_error(t, one_record(t, 4096, UINT64_MAX, 0, 4096, 4096), Errc::kMalformed);
  }
}

TEST(DiskBlocksMessage, BlockSizeMustBeAPowerOfTwoFrom512To64K) {
  for (uint32_t bs = 512; bs <= 65536; bs *= 2)
    expect_ok(MessageType::kDiskBlocks, one_record(MessageType::kDiskBlocks, bs, 0, 0, bs, bs));
  for (uint32_t bs : {0u, 1u, 256u, 511u, 513u, 1000u, 4095u, 4097u, 131072u, 0x80000000u, 0xFFFFFFFFu})
    expect_error(MessageType::kDiskBlocks, one_record(MessageType::kDiskBlocks, bs, 0, 1, 0, 0),
                 Errc::kMalformed);
}

// --- PROBE ------------------------------------------------------------------

TEST(ProbeMessage, PaddingIsTheRest) {
  std::vector<uint8_t> p(16 + 3000, 0x11);
  auto m = decode_payload(MessageType::kProbe, p);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(std::get<Probe>(*m).padding.size(), 3000u);
  EXPECT_EQ(std::get<Probe>(*m).sent_ns, 0x1111111111111111ull);
  expect_ok(MessageType::kProbe, p);
}

// REPL_ATTACH: writer u32, volume u32, size u64, name (u16 length + bytes).
TEST(ReplAttachMessage, SizeZeroRejected) {
  auto p = payload_of("repl_attach");
  put64(p, 8, 0);
  expect_error(MessageType::kReplAttach, p, Errc::kMalformed);
  put64(p, 8, 4096);
  expect_ok(MessageType::kReplAttach, p);
}

TEST(ReplAttachMessage, UnsafeNamesRejected) {
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "a/b", "../x", "with space", std::string("nul\0", 4)}) {
    std::vector<uint8_t> p;
    ByteWriter w(p);
    w.u32(1);
    w.u32(0);
    w.u64(4096);
    w.str16(bad);
    expect_error(MessageType::kReplAttach, p, Errc::kMalformed);
  }
  EXPECT_TRUE(valid_volume_name("pg-data_1.v0"));
  EXPECT_FALSE(valid_volume_name(std::string(kMaxNameLen + 1, 'a')));
}

// REPL_ATTACHED: writer u32, volume u32, status u8, durable_seq u64, reason.
TEST(ReplAttachedMessage, UnknownStatusAndReasonOnSuccessRejected) {
  auto p = payload_of("repl_attached_refused");
  for (int st : {3, 0xff}) {  // past kReattach
    p.at(8) = static_cast<uint8_t>(st);
    expect_error(MessageType::kReplAttached, p, Errc::kMalformed);
  }
  p.at(8) = 0;  // ok, but a reason is present
  expect_error(MessageType::kReplAttached, p, Errc::kMalformed);
  p.at(8) = 1;
  expect_ok(MessageType::kReplAttached, p);
  p.at(8) = 2;  // kReattach carries its reason
  expect_ok(MessageType::kReplAttached, p);
}

}  // namespace
}  // namespace tideway::proto

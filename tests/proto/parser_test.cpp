// FrameParser over a byte stream: any chunking yields the same frames, frames
// back to back, corruption anywhere is detected, and a failed parser stays
// failed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "proto/frame.h"
#include "proto/messages.h"
#include "tests/proto/compare.h"
#include "tests/proto/samples.h"

namespace tideway::proto {
namespace {

using testing::expect_message_eq;
using testing::sample_messages;

struct Got {
  FrameHeader header;
  std::vector<uint8_t> payload;  // copied: views die at the next feed()
};

// Takes every complete frame out of the parser. Stops at the first error,
// which is returned through `err`.
std::vector<Got> drain(FrameParser& p, std::optional<Error>* err = nullptr) {
  std::vector<Got> out;
  for (;;) {
    auto r = p.next();
    if (!r.ok()) {
      if (err) *err = r.error();
      else ADD_FAILURE() << "parser error: " << r.error().detail;
      return out;
    }
    if (!r->has_value()) return out;
    out.push_back({(*r)->header, {(*r)->payload.begin(), (*r)->payload.end()}});
  }
}

std::vector<uint8_t> all_samples_stream() {
  std::vector<uint8_t> s;
  for (const auto& smp : sample_messages()) {
    auto f = encode_message(smp.msg, smp.stream, smp.seq);
    s.insert(s.end(), f.begin(), f.end());
  }
  return s;
}

void expect_all_samples(const std::vector<Got>& got) {
  const auto samples = sample_messages();
  ASSERT_EQ(got.size(), samples.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(samples[i].name);
    EXPECT_EQ(got[i].header.type, message_type(samples[i].msg));
    EXPECT_EQ(got[i].header.stream, samples[i].stream);
    EXPECT_EQ(got[i].header.seq, samples[i].seq);
    auto m = decode_payload(got[i].header.type, got[i].payload);
    ASSERT_TRUE(m.ok()) << m.error().detail;
    expect_message_eq(samples[i].msg, *m);
  }
}

uint64_t test_seed() {
  if (const char* env = std::getenv("TIDEWAY_TEST_SEED")) return std::strtoull(env, nullptr, 0);
  return std::random_device{}();
}

TEST(FrameParser, AllFramesInOneFeed) {
  FrameParser p;
  p.feed(all_samples_stream());
  expect_all_samples(drain(p));
  EXPECT_EQ(p.buffered(), 0u);
  EXPECT_FALSE(p.failed());
}

TEST(FrameParser, ByteByByte) {
  const auto stream = all_samples_stream();
  FrameParser p;
  std::vector<Got> got;
  for (size_t i = 0; i < stream.size(); ++i) {
    p.feed(std::span(stream).subspan(i, 1));
    auto part = drain(p);
    for (auto& g : part) got.push_back(std::move(g));
  }
  expect_all_samples(got);
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(FrameParser, FrameCompletesOnItsLastByteOnly) {
  Heartbeat hb{1, 2};
  const auto f = encode_message(hb);
  FrameParser p;
  for (size_t i = 0; i + 1 < f.size(); ++i) {
    p.feed(std::span(f).subspan(i, 1));
    auto r = p.next();
    ASSERT_TRUE(r.ok());
    ASSERT_FALSE(r->has_value()) << "frame out after " << i + 1 << " of " << f.size() << " bytes";
    EXPECT_EQ(p.buffered(), i + 1);
  }
  p.feed(std::span(f).last(1));
  auto r = p.next();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ(p.buffered(), 0u);
}

TEST(FrameParser, RandomChunkSizes) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with TIDEWAY_TEST_SEED=" +
               std::to_string(seed) + ")");
  std::mt19937_64 rng(seed);
  const auto one = all_samples_stream();
  std::vector<uint8_t> stream;
  for (int i = 0; i < 3; ++i) stream.insert(stream.end(), one.begin(), one.end());
  for (int round = 0; round < 20; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Mostly small chunks, sometimes large ones that span several frames.
    const size_t max_chunk = (round % 4 == 0) ? 200000 : (round % 2 ? 64 : 5000);
    FrameParser p;
    std::vector<Got> got;
    size_t pos = 0;
    while (pos < stream.size()) {
      size_t n = std::uniform_int_distribution<size_t>(0, max_chunk)(rng);
      n = std::min(n, stream.size() - pos);
      p.feed(std::span(stream).subspan(pos, n));
      pos += n;
      for (auto& g : drain(p)) got.push_back(std::move(g));
      ASSERT_FALSE(p.failed());
      ASSERT_LE(p.buffered(), kHeaderSize + kMaxPayload + max_chunk);
    }
    ASSERT_EQ(got.size(), 3 * sample_messages().size());
    for (int copy = 0; copy < 3; ++copy)
      expect_all_samples({got.begin() + copy * static_cast<long>(sample_messages().size()),
                          got.begin() + (copy + 1) * static_cast<long>(sample_messages().size())});
  }
}

TEST(FrameParser, EmptyFeedAndEmptyPayload) {
  FrameParser p;
  p.feed({});
  auto r = p.next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  FrameHeader h;
  h.type = MessageType::kProbe;
  p.feed(encode_frame(h, {}));
  r = p.next();
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->header.length, 0u);
  EXPECT_TRUE((*r)->payload.empty());
}

TEST(FrameParser, MaximumPayloadAccepted) {
  Probe big{1, 2, testing::pattern(kMaxPayload - 16, 42)};
  const auto f = encode_message(big, 9, 1);
  ASSERT_EQ(f.size(), kHeaderSize + kMaxPayload);
  FrameParser p;
  p.feed(std::span(f).first(f.size() - 1));
  auto r = p.next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  p.feed(std::span(f).last(1));
  r = p.next();
  ASSERT_TRUE(r.ok()) << r.error().detail;
  ASSERT_TRUE(r->has_value());
  auto m = decode_payload((*r)->header.type, (*r)->payload);
  ASSERT_TRUE(m.ok());
  expect_message_eq(big, *m);
}

TEST(FrameParser, OversizedLengthRejectedFromTheHeaderAlone) {
  auto f = encode_message(Probe{1, 2, {}}, 9, 1);
  const uint32_t len = kMaxPayload + 1;
  for (size_t i = 0; i < 4; ++i) f[12 + i] = static_cast<uint8_t>(len >> (8 * i));
  FrameParser p;
  p.feed(f);  // only the header: the parser must not wait for 1 MiB
  auto r = p.next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kTooLarge);
  EXPECT_TRUE(p.failed());
}

TEST(FrameParser, GarbageIsRejectedAsSoonAsAHeaderIsBuffered) {
  FrameParser p;
  std::vector<uint8_t> junk(kHeaderSize - 1, 'x');
  p.feed(junk);
  auto r = p.next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  p.feed(std::vector<uint8_t>{'x'});
  r = p.next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kBadMagic);
}

// Flips bits of one byte of one frame in a stream of three and expects the
// corrupted frame never to come out: the parser either fails at once, or
// (when the length field grew) waits and then fails once the claimed bytes
// arrive. The frame before it comes out intact.
void check_corruption(const std::vector<uint8_t>& frame, size_t index, uint8_t mask) {
  const auto before = encode_message(Heartbeat{5, 6});
  const auto after = encode_message(ReplFlush{1, 2, 3}, 1, 1);
  std::vector<uint8_t> bad = frame;
  bad[index] ^= mask;
  FrameParser p;
  p.feed(before);
  p.feed(bad);
  p.feed(after);
  std::optional<Error> err;
  auto got = drain(p, &err);
  ASSERT_GE(got.size(), 1u);
  EXPECT_EQ(got[0].header.type, MessageType::kHeartbeat);
  ASSERT_EQ(got.size(), 1u) << "corrupted frame accepted: byte " << index << " mask " << int(mask);
  if (!err) {
    // Length grew: feed what it claims, then the crc must catch it.
    ASSERT_GE(index, 12u);
    ASSERT_LT(index, 16u);
    p.feed(std::vector<uint8_t>(kMaxPayload + kHeaderSize, 0));
    got = drain(p, &err);
    EXPECT_TRUE(got.empty());
    ASSERT_TRUE(err.has_value()) << "byte " << index;
  }
  EXPECT_TRUE(p.failed());
  if (index >= 28) {
    EXPECT_EQ(err->code, Errc::kBadChecksum) << "byte " << index << ": " << err->detail;
  }
}

TEST(FrameParser, CorruptedByteAnywhereIsDetected) {
  const std::vector<std::vector<uint8_t>> frames = {
      encode_message(Heartbeat{0x1234, 0x5678}),
      encode_message(ReplWrite{1, 2, 3, {4, 5}, WriteOp::kWrite, 0, 512, 3, testing::pattern(3, 1)},
                     1, 77),
      encode_message(Probe{1, 2, testing::pattern(600, 3)}, 2, 9, kFlagResent),
  };
  for (const auto& f : frames) {
    for (size_t i = 0; i < f.size(); ++i)
      for (uint8_t mask : {0x01, 0x80, 0xFF, 0x5A}) check_corruption(f, i, mask);
  }
}

TEST(FrameParser, StaysFailedAfterAnError) {
  auto bad = encode_message(Heartbeat{1, 2});
  bad.back() ^= 1;  // payload byte: crc mismatch
  FrameParser p;
  p.feed(bad);
  auto r = p.next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kBadChecksum);
  EXPECT_TRUE(p.failed());
  // Perfectly good frames after the error are refused: the stream is out of
  // sync and the connection must close.
  for (int i = 0; i < 3; ++i) {
    p.feed(encode_message(Heartbeat{3, 4}));
    r = p.next();
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(p.failed());
  }
}

TEST(FrameParser, HeaderErrorFailsTheParserToo) {
  FrameParser p;
  auto f = encode_message(Heartbeat{1, 2});
  f[4] = 9;  // version
  p.feed(f);
  auto r = p.next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::kBadVersion);
  p.feed(encode_message(Heartbeat{3, 4}));
  EXPECT_FALSE(p.next().ok());
}

TEST(FrameParser, BufferedCountsUnconsumedBytes) {
  const auto a = encode_message(Heartbeat{1, 2});
  const auto b = encode_message(ReplAck{1, 2, 3}, 4, 5);
  FrameParser p;
  p.feed(a);
  p.feed(std::span(b).first(10));
  EXPECT_EQ(p.buffered(), a.size() + 10);
  auto r = p.next();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(p.buffered(), 10u);
  r = p.next();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  p.feed(std::span(b).subspan(10));
  EXPECT_EQ(p.buffered(), b.size());
  r = p.next();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->header.stream, 4u);
  EXPECT_EQ(p.buffered(), 0u);
}

}  // namespace
}  // namespace tideway::proto

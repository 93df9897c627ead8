// The memory stream through the codec: a stream cut into opaque bytes and
// pages at random is rebuilt byte-exact from its MIG_PAGES pieces, and a
// piece that is out of place or damaged appends nothing.
#include "wan/codec/page_stream.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/codec/codec_test_util.h"

namespace tideway::wan::codec::testing {
namespace {

struct Stream {
  std::vector<uint8_t> bytes;    // the whole stream
  std::vector<uint8_t> pieces;   // concatenated payloads, each prefixed by its u32 length
};

// Feeds a random stream (opaque runs of 0..9000 bytes between pages that
// are zero, re-sent with small edits, or random) through the encoder.
Stream make_stream(uint64_t seed, size_t n_pages, PageStreamEncoder& enc) {
  std::mt19937_64 rng(seed);
  Stream s;
  std::vector<Page> versions(64, zero_page());
  auto emit = [&] {
    std::vector<uint8_t> payload;
    ASSERT_TRUE(enc.take(payload).ok());
    const uint32_t n = static_cast<uint32_t>(payload.size());
    s.pieces.insert(s.pieces.end(), reinterpret_cast<const uint8_t*>(&n), reinterpret_cast<const uint8_t*>(&n) + 4);
    s.pieces.insert(s.pieces.end(), payload.begin(), payload.end());
  };
  for (size_t i = 0; i < n_pages; ++i) {
    std::vector<uint8_t> opaque(rng() % 9000 * (rng() % 4 == 0));
    for (auto& b : opaque) b = static_cast<uint8_t>(rng());
    s.bytes.insert(s.bytes.end(), opaque.begin(), opaque.end());
    std::span<const uint8_t> rest = opaque;
    while (!rest.empty()) {
      rest = rest.subspan(enc.add_opaque(rest));
      if (!rest.empty()) emit();
    }
    const size_t slot = rng() % versions.size();
    Page& p = versions[slot];
    switch (rng() % 3) {
      case 0: p = zero_page(); break;
      case 1: for (int k = 0; k < 24; ++k) p[rng() % kPageSize] = static_cast<uint8_t>(rng()); break;
      default: p = random_page(rng);
    }
    if (enc.full()) emit();
    enc.add_page(slot * kPageSize, p);
    s.bytes.insert(s.bytes.end(), p.begin(), p.end());
  }
  if (!enc.empty()) emit();
  return s;
}

std::vector<std::vector<uint8_t>> split_pieces(const std::vector<uint8_t>& pieces) {
  std::vector<std::vector<uint8_t>> out;
  for (size_t at = 0; at < pieces.size();) {
    uint32_t n = 0;
    std::memcpy(&n, pieces.data() + at, 4);
    out.emplace_back(pieces.begin() + static_cast<ptrdiff_t>(at + 4), pieces.begin() + static_cast<ptrdiff_t>(at + 4 + n));
    at += 4 + n;
  }
  return out;
}

proto::MigPages parse(const std::vector<uint8_t>& payload) {
  auto m = proto::decode_payload(proto::MessageType::kMigPages, payload);
  EXPECT_TRUE(m.ok()) << (m.ok() ? "" : m.error().detail);
  return std::get<proto::MigPages>(*m);
}

TEST(PageStream, RandomStreamIsRebuiltByteExact) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  CodecConfig cfg;
  auto enc = PageStreamEncoder::create(cfg, 7);
  ASSERT_TRUE(enc.ok());
  Stream s = make_stream(seed, 3000, **enc);
  auto dec = PageStreamDecoder::create(cfg, 7);
  ASSERT_TRUE(dec.ok());
  std::vector<uint8_t> rebuilt;
  for (const auto& payload : split_pieces(s.pieces)) ASSERT_TRUE((*dec)->decode(parse(payload), rebuilt).ok());
  ASSERT_EQ(rebuilt.size(), s.bytes.size());
  EXPECT_TRUE(rebuilt == s.bytes);
  EXPECT_EQ((*dec)->stream_offset(), s.bytes.size());
  EXPECT_EQ((*enc)->stream_offset(), s.bytes.size());
  EXPECT_EQ((*dec)->pages(), 3000u);
  EXPECT_LT((*enc)->stats().wire_bytes, (*enc)->stats().page_bytes);  // zero pages and deltas paid
}

TEST(PageStream, PiecesOutOfPlaceOrDamagedAppendNothing) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  CodecConfig cfg;
  auto enc = PageStreamEncoder::create(cfg, 7);
  ASSERT_TRUE(enc.ok());
  Stream s = make_stream(seed, 800, **enc);
  auto payloads = split_pieces(s.pieces);
  ASSERT_GE(payloads.size(), 3u);
  auto dec = PageStreamDecoder::create(cfg, 7);
  ASSERT_TRUE(dec.ok());
  std::vector<uint8_t> out;
  ASSERT_TRUE((*dec)->decode(parse(payloads[0]), out).ok());
  const size_t before = out.size();
  // Skipped piece: wrong stream offset.
  EXPECT_FALSE((*dec)->decode(parse(payloads[2]), out).ok());
  // Another migration's piece.
  auto other = parse(payloads[1]);
  other.migration = 8;
  EXPECT_FALSE((*dec)->decode(other, out).ok());
  // A damaged batch: the codec's checksum or structure catches it.
  auto damaged_payload = payloads[1];
  damaged_payload[damaged_payload.size() - 5] ^= 0x40;
  auto damaged = parse(damaged_payload);
  ASSERT_GE(damaged.page_cuts.size(), 2u);  // pieces of this stream always hold pages
  EXPECT_FALSE((*dec)->decode(damaged, out).ok());
  // A piece claiming one page fewer than its batch holds.
  auto short_cuts = parse(payloads[1]);
  short_cuts.page_cuts.pop_back();
  EXPECT_FALSE((*dec)->decode(short_cuts, out).ok());
  EXPECT_EQ(out.size(), before);
}

TEST(PageStream, LimitsKeepAFullPieceInsideOneFrame) {
  CodecConfig cfg;
  EXPECT_FALSE(PageStreamEncoder::create(cfg, 1, {257, 4096}).ok());       // above max_records
  EXPECT_FALSE(PageStreamEncoder::create(cfg, 1, {250, 256 << 10}).ok());  // would not fit a frame
  EXPECT_FALSE(PageStreamEncoder::create(cfg, 1, {0, 4096}).ok());
  auto enc = PageStreamEncoder::create(cfg, 1, {4, 100});
  ASSERT_TRUE(enc.ok());
  std::vector<uint8_t> big(250, 1);
  EXPECT_EQ((*enc)->add_opaque(big), 100u);
  EXPECT_TRUE((*enc)->full());
  std::vector<uint8_t> payload;
  ASSERT_TRUE((*enc)->take(payload).ok());
  EXPECT_TRUE((*enc)->empty());
  EXPECT_EQ((*enc)->stream_offset(), 100u);
}

}  // namespace
}  // namespace tideway::wan::codec::testing

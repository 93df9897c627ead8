// The path the agent takes, without QEMU: split a stream, send the pages
// through the WAN codec (Encoder -> batch bytes -> Decoder) while the
// opaque bytes go around it, and rebuild: the result must be the identical
// stream. tests/guest/qemu_relay_test.sh does the same with real QEMU.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "proto/qemu_stream.h"
#include "tests/qemu_stream/stream_writer.h"
#include "tests/test_seed.h"
#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace tideway::testing::qemu {
namespace {

namespace codec = wan::codec;
namespace q = proto::qemu;

// Output pieces in stream order; pages are filled in after the codec.
struct Rebuild : q::StreamSink {
  std::vector<uint8_t> out;
  std::vector<size_t> slots;
  std::vector<uint64_t> keys;
  std::vector<uint8_t> pages;
  void opaque(std::span<const uint8_t> b) override { out.insert(out.end(), b.begin(), b.end()); }
  void page(uint64_t key, std::span<const uint8_t> d) override {
    slots.push_back(out.size());
    keys.push_back(key);
    out.insert(out.end(), q::kPageSize, 0);
    pages.insert(pages.end(), d.begin(), d.end());
  }
};

TEST(QemuStreamCodec, PagesThroughTheCodecRebuildTheStream) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  auto enc = codec::Encoder::create(codec::CodecConfig{});
  auto dec = codec::Decoder::create(codec::CodecConfig{});
  ASSERT_TRUE(enc.ok() && dec.ok());
  // Two migrations' worth of streams through the same codec pair, so later
  // pages meet a warm cache and delta store.
  for (int round = 0; round < 2; ++round) {
    const auto in = q35_stream(rng(), 6, 50);
    q::StreamSplitter s;
    Rebuild r;
    size_t at = 0;
    while (at < in.size()) {
      const size_t n = std::min<size_t>(1 + rng() % 70000, in.size() - at);
      ASSERT_TRUE(s.feed(std::span(in).subspan(at, n), r).ok());
      at += n;
    }
    ASSERT_TRUE(s.finish().ok());
    ASSERT_FALSE(r.keys.empty());
    std::vector<uint8_t> batch;
    for (size_t first = 0; first < r.keys.size(); first += 256) {
      std::vector<codec::PageRef> refs;
      for (size_t k = first; k < std::min(r.keys.size(), first + 256); ++k)
        refs.push_back({r.keys[k], std::span(r.pages).subspan(k * q::kPageSize, q::kPageSize)});
      ASSERT_TRUE((*enc)->encode(refs, batch).ok());
      auto decoded = (*dec)->decode(batch);
      ASSERT_TRUE(decoded.ok()) << decoded.error().detail;
      ASSERT_EQ(decoded->size(), refs.size());
      for (size_t k = 0; k < refs.size(); ++k) {
        ASSERT_EQ((*decoded)[k].address, r.keys[first + k]);
        std::memcpy(r.out.data() + r.slots[first + k], (*decoded)[k].page.data(), q::kPageSize);
      }
    }
    EXPECT_TRUE(r.out == in) << "round " << round << ": the rebuilt stream differs";
  }
  EXPECT_EQ((*enc)->state_digest(), (*dec)->state_digest());
}

}  // namespace
}  // namespace tideway::testing::qemu

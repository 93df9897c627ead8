// The QEMU stream splitter on well-formed streams: the structure captured
// from QEMU 7.2 (q35), byte-exact reassembly for every chunking, pass-through
// of device state, what it accepts besides, and finish().
#include <gtest/gtest.h>

#include <random>

#include "proto/qemu_stream.h"
#include "tests/qemu_stream/collect_sink.h"
#include "tests/qemu_stream/stream_writer.h"
#include "tests/test_seed.h"

namespace tideway::testing::qemu {
namespace {

using proto::qemu::Phase;
using proto::qemu::RamSection;
using proto::qemu::StreamSplitter;
namespace q = proto::qemu;

// Checks a complete split of `in` against what q35_stream() promised.
void expect_split(const std::vector<uint8_t>& in, const Expected& ex, const StreamSplitter& s,
                  const CollectSink& sink) {
  ASSERT_EQ(sink.out.size(), in.size());
  EXPECT_TRUE(sink.out == in) << "reassembled stream differs";
  EXPECT_FALSE(sink.empty_span);
  ASSERT_EQ(sink.keys, ex.keys);
  for (size_t k = 0; k < ex.pages.size(); ++k) ASSERT_EQ(sink.page_bytes(k), ex.pages[k]) << "page " << k;
  const auto st = s.stats();
  EXPECT_EQ(st.pages, ex.pages.size());
  EXPECT_EQ(st.zero_pages, ex.zero_pages);
  EXPECT_EQ(st.ram_sections, ex.ram_sections);
  EXPECT_TRUE(st.ram_complete);
  EXPECT_EQ(st.opaque_bytes + st.pages * q::kPageSize, in.size());
  EXPECT_EQ(s.phase(), Phase::kPassthrough);
  EXPECT_EQ(s.offset(), in.size());
  EXPECT_EQ(s.buffered(), 0u);
  EXPECT_TRUE(s.finish().ok());
}

TEST(QemuStream, CapturedQ35Structure) {
  Expected ex;
  const auto in = q35_stream(1, 12, 40, &ex);
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed(in, sink).ok());
  expect_split(in, ex, s, sink);
  EXPECT_EQ(s.machine_type(), "pc-q35-7.2");
  ASSERT_EQ(s.ram_blocks().size(), 6u);
  const auto blocks = q35_blocks();
  for (size_t b = 0; b < blocks.size(); ++b) {
    EXPECT_EQ(s.ram_blocks()[b].idstr, blocks[b].first);
    EXPECT_EQ(s.ram_blocks()[b].used_length, blocks[b].second);
  }
  // One piece: the opaque runs between pages are handed out as single
  // spans, never byte by byte.
  EXPECT_LE(sink.opaque_calls, ex.pages.size() + 1);
}

TEST(QemuStream, EveryPageKeyNamesItsBlockAndOffset) {
  Expected ex;
  const auto in = q35_stream(7, 4, 60, &ex);
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed(in, sink).ok());
  ASSERT_FALSE(sink.keys.empty());
  bool rom_seen = false;
  for (uint64_t key : sink.keys) {
    const uint32_t b = q::key_block(key);
    ASSERT_LT(b, s.ram_blocks().size());
    EXPECT_LT(q::key_offset(key), s.ram_blocks()[b].used_length);
    EXPECT_EQ(q::key_offset(key) % q::kPageSize, 0u);
    rom_seen |= b != 0;
  }
  EXPECT_TRUE(rom_seen);
  EXPECT_EQ(sink.keys.back(), q::page_key(0, 536862720 - 4096));
}

TEST(QemuStream, ByteByByte) {
  Expected ex;
  const auto in = q35_stream(2, 5, 20, &ex);
  StreamSplitter s;
  CollectSink sink;
  size_t max_buffered = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    ASSERT_TRUE(s.feed(std::span(in).subspan(i, 1), sink).ok()) << "byte " << i;
    // Everything fed is handed out or held, and the hold is bounded.
    ASSERT_EQ(sink.out.size() + s.buffered(), i + 1);
    max_buffered = std::max(max_buffered, s.buffered());
  }
  expect_split(in, ex, s, sink);
  EXPECT_LT(max_buffered, q::kPageSize);
  EXPECT_GE(max_buffered, q::kPageSize - 1);  // a page is handed out whole
}

TEST(QemuStream, RandomChunkings) {
  const uint64_t seed = test_seed();
  TIDEWAY_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (int round = 0; round < 40; ++round) {
    Expected ex;
    const auto in = q35_stream(rng(), 1 + static_cast<int>(rng() % 8), 30, &ex);
    std::vector<size_t> cuts;
    const size_t n = 1 + rng() % 200;
    // Mix tiny and large pieces so cuts fall inside every kind of item.
    for (size_t k = 0; k < n; ++k) cuts.push_back(rng() % 2 ? rng() % in.size() : rng() % 64);
    std::sort(cuts.begin(), cuts.end());
    StreamSplitter s;
    CollectSink sink;
    ASSERT_TRUE(feed_cut(s, in, cuts, sink).ok()) << "round " << round;
    expect_split(in, ex, s, sink);
  }
}

TEST(QemuStream, CutsAtEveryOffsetAroundRecords) {
  // Two pieces, cut at every offset of a small stream: each item boundary
  // and each byte inside headers, block list, footers and pages.
  Expected ex;
  const auto in = q35_stream(3, 2, 3, &ex);
  CollectSink probe;
  {
    StreamSplitter s;
    ASSERT_TRUE(s.feed(in, probe).ok());
  }
  const auto deep_in_page = [&](size_t cut) {  // page bytes are all alike: sample them
    for (size_t at : probe.page_at)
      if (cut > at + 2 && cut + 2 < at + q::kPageSize) return cut % 509 != 0;
    return false;
  };
  for (size_t cut = 0; cut <= in.size(); ++cut) {
    if (deep_in_page(cut)) continue;
    StreamSplitter s;
    CollectSink sink;
    ASSERT_TRUE(feed_cut(s, in, {cut}, sink).ok()) << "cut " << cut;
    ASSERT_TRUE(sink.out == in) << "cut " << cut;
    ASSERT_EQ(sink.keys, ex.keys) << "cut " << cut;
  }
}

TEST(QemuStream, DeviceStatePassesThroughUnparsed) {
  Expected ex;
  auto in = q35_stream(4, 2, 10, &ex);
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed(std::span(in).first(ex.device_state_at), sink).ok());
  EXPECT_EQ(s.phase(), Phase::kRam);
  EXPECT_FALSE(s.finish().ok()) << "a stream that ends before the device state did not complete";
  const auto before = s.stats();
  // After the first FULL byte, bytes that would be refused as RAM records or
  // sections (here: a bogus XBZRLE record and a bad magic) pass untouched.
  StreamWriter junk;
  junk.u8(q::kSecFull).be64(0x1000 | q::kRamXbzrle).header(0xdeadbeef, 9).u8(0xff);
  ASSERT_TRUE(s.feed(junk.bytes, sink).ok());
  EXPECT_EQ(s.phase(), Phase::kPassthrough);
  EXPECT_EQ(s.stats().pages, before.pages);
  EXPECT_EQ(s.stats().opaque_bytes, before.opaque_bytes + junk.size());
  EXPECT_TRUE(s.finish().ok());
}

TEST(QemuStream, NonRamIterableDeviceStartsPassThrough) {
  // Block migration would add a "block" START section: its payload cannot
  // be read, so the rest (RAM sections included) passes through whole and
  // the stats say RAM did not complete through page().
  StreamWriter w;
  w.header().configuration();
  w.start(2, "ram", 0, 4).mem_size(q35_blocks()).eos().footer(2);
  const size_t pass_at = w.size();
  w.start(1, "block", 0, 1).be64(0x2).footer(1);
  w.part(2).page("pc.ram", 0, std::vector<uint8_t>(4096, 7)).eos().footer(2);
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed(w.bytes, sink).ok());
  EXPECT_EQ(s.phase(), Phase::kPassthrough);
  EXPECT_EQ(s.stats().pages, 0u);
  EXPECT_FALSE(s.stats().ram_complete);
  EXPECT_EQ(s.stats().opaque_bytes, w.size());
  EXPECT_TRUE(sink.out == w.bytes);
  EXPECT_GT(pass_at, 0u);
}

TEST(QemuStream, AcceptsKnownSubsectionsAndPing) {
  StreamWriter w;
  w.header().configuration("pc-q35-7.2");
  w.subsection(q::kSubTargetPageBits, 1, {0, 0, 0, 12});
  w.subsection(q::kSubUuid, 1, std::vector<uint8_t>(16, 0xab));
  w.command(q::kCmdPing, {0, 0, 0, 1});
  w.start(5, "ram", 0, 4).mem_size({{"pc.ram", 8192}}).eos().footer(5);
  w.command(q::kCmdPing, {0, 0, 0, 2});
  w.part(5).page("pc.ram", 4096, std::vector<uint8_t>(4096, 1)).zero("pc.ram", 0).eos().footer(5);
  w.end(5).eos().footer(5);
  w.u8(q::kSecEof);
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(feed_bytewise(s, w.bytes, sink).ok());
  EXPECT_TRUE(sink.out == w.bytes);
  EXPECT_EQ(s.stats().commands, 2u);
  EXPECT_EQ(s.stats().pages, 1u);
  EXPECT_EQ(s.stats().zero_pages, 1u);
  EXPECT_TRUE(s.stats().ram_complete);
  EXPECT_EQ(sink.keys, std::vector<uint64_t>{q::page_key(0, 4096)});
  EXPECT_TRUE(s.finish().ok());  // EOF: device state and VMDESCRIPTION pass through
}

TEST(QemuStream, ReportsTheSectionBeingParsed) {
  // The agent learns from ram_section() == kEnd that the source has stopped
  // the VM (the final stop-and-copy).
  struct Sink : CollectSink {
    const StreamSplitter* s = nullptr;
    std::vector<RamSection> at_page;
    void page(uint64_t key, std::span<const uint8_t> d) override {
      at_page.push_back(s->ram_section());
      CollectSink::page(key, d);
    }
  } sink;
  StreamWriter w;
  w.header().configuration();
  w.start(2, "ram", 0, 4).mem_size({{"pc.ram", 1 << 20}}).eos().footer(2);
  w.part(2).page("pc.ram", 0, std::vector<uint8_t>(4096, 1)).eos().footer(2);
  w.end(2).page("pc.ram", 4096, std::vector<uint8_t>(4096, 2)).eos().footer(2);
  StreamSplitter s;
  sink.s = &s;
  EXPECT_EQ(s.ram_section(), RamSection::kNone);
  ASSERT_TRUE(s.feed(w.bytes, sink).ok());
  EXPECT_EQ(sink.at_page, (std::vector<RamSection>{RamSection::kPart, RamSection::kEnd}));
  EXPECT_EQ(s.ram_section(), RamSection::kNone);
  EXPECT_EQ(s.phase(), Phase::kRam);
}

TEST(QemuStream, FinishNamesWhereTheStreamWasCut) {
  Expected ex;
  const auto in = q35_stream(5, 1, 5, &ex);
  ASSERT_FALSE(ex.pages.empty());
  const std::vector<std::pair<size_t, const char*>> cuts = {
      {0, "file header"}, {3, "file header"}, {8, "CONFIGURATION"}, {ex.device_state_at, "between sections"},
      {ex.device_state_at - 3, "RAM section"}};
  for (const auto& [cut, where] : cuts) {
    StreamSplitter s;
    CollectSink sink;
    ASSERT_TRUE(s.feed(std::span(in).first(cut), sink).ok());
    auto r = s.finish();
    ASSERT_FALSE(r.ok()) << "cut " << cut;
    EXPECT_EQ(r.error().code, proto::Errc::kTruncated);
    EXPECT_NE(r.error().detail.find(where), std::string::npos) << r.error().detail;
    EXPECT_NE(r.error().detail.find("offset " + std::to_string(cut)), std::string::npos) << r.error().detail;
  }
  // Inside a page payload.
  StreamSplitter s;
  CollectSink sink;
  size_t in_page = 0;
  {
    StreamSplitter probe;
    CollectSink p;
    ASSERT_TRUE(probe.feed(in, p).ok());
    in_page = p.page_at[0] + 100;
  }
  ASSERT_TRUE(s.feed(std::span(in).first(in_page), sink).ok());
  EXPECT_EQ(s.buffered(), 100u);
  auto r = s.finish();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("inside a RAM page"), std::string::npos) << r.error().detail;
}

TEST(QemuStream, EmptyFeedsChangeNothing) {
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed({}, sink).ok());
  EXPECT_EQ(s.phase(), Phase::kHeader);
  EXPECT_EQ(s.offset(), 0u);
  EXPECT_TRUE(sink.out.empty());
}

}  // namespace
}  // namespace tideway::testing::qemu

// Every class of stream the splitter refuses: the error code, a reason that
// names the problem and the stream offset of the bad record, output that
// stops exactly where the bad record starts (whole feed and byte by byte),
// and a splitter that stays failed with its state as it was.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "proto/qemu_stream.h"
#include "tests/qemu_stream/collect_sink.h"
#include "tests/qemu_stream/stream_writer.h"

namespace tideway::testing::qemu {
namespace {

using proto::Errc;
using proto::qemu::Phase;
using proto::qemu::StreamSplitter;
namespace q = proto::qemu;

// Valid prefixes the bad records follow.
StreamWriter after_header() { return std::move(StreamWriter().header()); }
StreamWriter after_config() { return std::move(StreamWriter().header().configuration()); }
StreamWriter after_ram_start() {
  StreamWriter w = after_config();
  w.start(2, "ram", 0, 4).mem_size(q35_blocks()).eos().footer(2);
  return w;
}
StreamWriter in_part() {
  StreamWriter w = after_ram_start();
  w.part(2);
  return w;
}
StreamWriter after_ram_end() {
  StreamWriter w = in_part();
  w.page("pc.ram", 0, std::vector<uint8_t>(4096, 3)).eos().footer(2).end(2).eos().footer(2);
  return w;
}
StreamWriter in_block_list(uint64_t total) {
  StreamWriter w = after_config();
  w.start(2, "ram", 0, 4).be64(total | q::kRamMemSize);
  return w;
}

struct Case {
  const char* name;
  std::function<StreamWriter()> prefix;
  std::function<void(StreamWriter&)> bad;  // appends the bad record (and maybe more)
  Errc code;
  std::string reason;  // must appear in the error detail
};

std::vector<uint8_t> page_of(uint8_t v) { return std::vector<uint8_t>(4096, v); }

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // File header and configuration.
      {"bad magic", [] { return StreamWriter(); }, [](auto& w) { w.header(0x5145564e); }, Errc::kBadMagic, "magic 0x5145564e"},
      {"bad version", [] { return StreamWriter(); }, [](auto& w) { w.header(q::kFileMagic, 4); }, Errc::kBadVersion,
       "version 4"},
      {"no configuration", after_header, [](auto& w) { w.start(2, "ram", 0, 4); }, Errc::kMalformed,
       "expected the CONFIGURATION section"},
      {"machine type too long", after_header, [](auto& w) { w.u8(q::kSecConfiguration).be32(100000); },
       Errc::kTooLarge, "machine type of 100000 bytes"},
      {"machine type empty", after_header, [](auto& w) { w.u8(q::kSecConfiguration).be32(0); }, Errc::kTooLarge,
       "machine type of 0 bytes"},
      {"unknown subsection", after_config, [](auto& w) { w.subsection("configuration/foo", 1, {}); },
       Errc::kUnknownType, "'configuration/foo'"},
      {"capabilities subsection", after_config,
       [](auto& w) { w.subsection(q::kSubCapabilities, 1, {0, 0, 0, 1}).str8("x-ignore-shared"); },
       Errc::kIncompatible, "x-ignore-shared"},
      {"target page bits 16", after_config, [](auto& w) { w.subsection(q::kSubTargetPageBits, 1, {0, 0, 0, 16}); },
       Errc::kIncompatible, "target page bits 16"},
      {"subsection version", after_config,
       [](auto& w) { w.subsection(q::kSubUuid, 2, std::vector<uint8_t>(16)); }, Errc::kBadVersion, "version 2"},
      {"subsection out of order",
       [] {
         StreamWriter w = after_config();
         w.subsection(q::kSubUuid, 1, std::vector<uint8_t>(16));
         return w;
       },
       [](auto& w) { w.subsection(q::kSubTargetPageBits, 1, {0, 0, 0, 12}); }, Errc::kMalformed,
       "repeated or out of order"},
      {"subsection after a section", after_ram_start,
       [](auto& w) { w.subsection(q::kSubUuid, 1, std::vector<uint8_t>(16)); }, Errc::kMalformed,
       "SUBSECTION outside the CONFIGURATION"},
      // Sections out of place.
      {"unknown section type", after_config, [](auto& w) { w.u8(0x09); }, Errc::kUnknownType,
       "unknown section type 0x9"},
      {"VMDESCRIPTION before EOF", after_ram_start, [](auto& w) { w.u8(q::kSecVmDescription).be32(2).str("{}"); },
       Errc::kMalformed, "VMDESCRIPTION section out of place"},
      {"FOOTER without a section", after_ram_start, [](auto& w) { w.footer(2); }, Errc::kMalformed,
       "FOOTER section out of place"},
      {"second CONFIGURATION", after_ram_start, [](auto& w) { w.configuration(); }, Errc::kMalformed,
       "CONFIGURATION section out of place"},
      {"PART before RAM START", after_config, [](auto& w) { w.part(2); }, Errc::kMalformed,
       "PART section before the RAM START"},
      {"END before RAM START", after_config, [](auto& w) { w.end(2); }, Errc::kMalformed,
       "END section before the RAM START"},
      {"PART of another section", after_ram_start, [](auto& w) { w.part(3); }, Errc::kMalformed,
       "section id 3, but RAM is 2"},
      {"PART after RAM END", after_ram_end, [](auto& w) { w.part(2); }, Errc::kMalformed,
       "PART section after the RAM END"},
      {"second RAM START", after_ram_start, [](auto& w) { w.start(2, "ram", 0, 4); }, Errc::kMalformed,
       "second RAM START"},
      {"RAM section version", after_config, [](auto& w) { w.start(2, "ram", 0, 3); }, Errc::kBadVersion,
       "RAM section version 3"},
      {"RAM instance", after_config, [](auto& w) { w.start(2, "ram", 1, 4); }, Errc::kMalformed, "instance 1"},
      {"EOF before RAM END", in_part, [](auto& w) { w.eos().footer(2).u8(q::kSecEof); }, Errc::kMalformed,
       "EOF before the RAM END"},
      // The RAM START section and its block list.
      {"START without MEM_SIZE",
       [] {
         StreamWriter w = after_config();
         w.start(2, "ram", 0, 4);
         return w;
       },
       [](auto& w) { w.eos(); }, Errc::kMalformed, "must begin with MEM_SIZE"},
      {"MEM_SIZE zero",
       [] {
         StreamWriter w = after_config();
         w.start(2, "ram", 0, 4);
         return w;
       },
       [](auto& w) { w.be64(q::kRamMemSize); }, Errc::kMalformed, "MEM_SIZE of 0 bytes"},
      {"block idstr empty", [] { return in_block_list(8192); }, [](auto& w) { w.str8("").be64(8192); },
       Errc::kMalformed, "empty idstr"},
      {"block listed twice",
       [] {
         StreamWriter w = in_block_list(8192);
         w.str8("pc.ram").be64(4096);
         return w;
       },
       [](auto& w) { w.str8("pc.ram").be64(4096); }, Errc::kMalformed, "'pc.ram' listed twice"},
      {"block length unaligned", [] { return in_block_list(8192); }, [](auto& w) { w.str8("pc.ram").be64(100); },
       Errc::kTooLarge, "used_length 0x64"},
      {"block length zero", [] { return in_block_list(8192); }, [](auto& w) { w.str8("pc.ram").be64(0); },
       Errc::kTooLarge, "used_length 0x0"},
      {"block beyond MEM_SIZE", [] { return in_block_list(4096); }, [](auto& w) { w.str8("pc.ram").be64(8192); },
       Errc::kMalformed, "exceeds what MEM_SIZE leaves"},
      {"block beyond 2^48", [] { return in_block_list(uint64_t{1} << 50); },
       [](auto& w) { w.str8("big").be64((uint64_t{1} << 48) + 4096); }, Errc::kTooLarge, "at most 2^48"},
      {"too many blocks",
       [] {
         StreamWriter w = in_block_list(4096 * (q::kMaxRamBlocks + 1));
         for (size_t k = 0; k < q::kMaxRamBlocks; ++k) w.str8("b" + std::to_string(k)).be64(4096);
         return w;
       },
       [](auto& w) { w.str8("one-more").be64(4096); }, Errc::kTooLarge, "more than 1024 RAMBlocks"},
      {"MEM_SIZE in a PART", in_part, [](auto& w) { w.be64(4096 | q::kRamMemSize); }, Errc::kMalformed,
       "MEM_SIZE record after the start"},
      // RAM records.
      {"XBZRLE", in_part, [](auto& w) { w.be64(0x1000 | q::kRamXbzrle).str8("pc.ram").u8(1).be16(0); },
       Errc::kIncompatible, "XBZRLE"},
      {"HOOK", in_part, [](auto& w) { w.be64(q::kRamHook); }, Errc::kIncompatible, "HOOK"},
      {"COMPRESS_PAGE", in_part, [](auto& w) { w.be64(0x1000 | q::kRamCompressPage).str8("pc.ram"); },
       Errc::kIncompatible, "COMPRESS_PAGE"},
      {"MULTIFD_FLUSH", in_part, [](auto& w) { w.be64(q::kRamMultifdFlush); }, Errc::kIncompatible,
       "MULTIFD_FLUSH"},
      {"unknown flag 0x1", in_part, [](auto& w) { w.be64(0x1000 | q::kRamPage | 0x1).str8("pc.ram"); },
       Errc::kUnknownFlags, "unknown RAM flags 0x1"},
      {"unknown flag 0x400 (unaligned offset)", in_part,
       [](auto& w) { w.be64(0x1400 | q::kRamPage).str8("pc.ram"); }, Errc::kUnknownFlags, "not page-aligned"},
      {"unknown flag 0x800", in_part, [](auto& w) { w.be64(0x800 | q::kRamZero).str8("pc.ram").u8(0); },
       Errc::kUnknownFlags, "0x800"},
      {"ZERO and PAGE", in_part, [](auto& w) { w.be64(0x1000 | q::kRamZero | q::kRamPage).str8("pc.ram"); },
       Errc::kMalformed, "flag combination 0xa"},
      {"CONTINUE alone", in_part, [](auto& w) { w.be64(0x1000 | q::kRamContinue); }, Errc::kMalformed,
       "flag combination 0x20"},
      {"EOS with CONTINUE", in_part, [](auto& w) { w.be64(q::kRamEos | q::kRamContinue); }, Errc::kMalformed,
       "EOS record 0x30"},
      {"EOS with an offset", in_part, [](auto& w) { w.be64(0x2000 | q::kRamEos); }, Errc::kMalformed,
       "EOS record 0x2010"},
      {"unknown RAMBlock", in_part, [](auto& w) { w.page("pc.ramx", 0, page_of(1)); }, Errc::kMalformed,
       "unknown RAMBlock 'pc.ramx'"},
      {"unknown RAMBlock, unprintable name", in_part,
       [](auto& w) { w.be64(q::kRamZero).str8(std::string("a\x01'", 3)).u8(0); }, Errc::kMalformed,
       "unknown RAMBlock 'a\\x01\\x27'"},
      {"CONTINUE with no previous block", in_part,
       [](auto& w) { w.be64(q::kRamPage | q::kRamContinue).raw(page_of(1)); }, Errc::kMalformed,
       "CONTINUE with no previous RAMBlock"},
      {"offset at used_length", in_part, [](auto& w) { w.page("pc.rom", 131072, page_of(1)); }, Errc::kMalformed,
       "page offset 0x20000 beyond RAMBlock 'pc.rom' (used_length 0x20000)"},
      {"offset far beyond", in_part, [](auto& w) { w.zero("pc.ram", uint64_t{1} << 40); }, Errc::kMalformed,
       "beyond RAMBlock 'pc.ram'"},
      {"ZERO fill byte", in_part, [](auto& w) { w.zero("pc.ram", 4096, 1); }, Errc::kMalformed, "fill byte 0x1"},
      // Footers.
      {"no FOOTER after EOS",
       [] {
         StreamWriter w = in_part();
         w.eos();
         return w;
       },
       [](auto& w) { w.u8(q::kSecPart).be32(2); }, Errc::kMalformed, "expected the section FOOTER"},
      {"FOOTER of another section",
       [] {
         StreamWriter w = in_part();
         w.eos();
         return w;
       },
       [](auto& w) { w.footer(3); }, Errc::kMalformed, "FOOTER of section id 3 closes RAM section 2"},
      // Commands.
      {"OPEN_RETURN_PATH", after_config, [](auto& w) { w.command(q::kCmdOpenReturnPath, {}); }, Errc::kIncompatible,
       "OPEN_RETURN_PATH (1)"},
      {"POSTCOPY_ADVISE", in_part,
       [](auto& w) { w.eos().footer(2).command(q::kCmdPostcopyAdvise, std::vector<uint8_t>(16)); },
       Errc::kIncompatible, "POSTCOPY_ADVISE"},
      {"PACKAGED", after_ram_start, [](auto& w) { w.command(q::kCmdPackaged, {0, 0, 0, 0}); }, Errc::kIncompatible,
       "PACKAGED"},
      {"unknown COMMAND", after_config, [](auto& w) { w.command(99, {}); }, Errc::kUnknownType, "COMMAND 99"},
      {"COMMAND 0", after_config, [](auto& w) { w.command(0, {}); }, Errc::kUnknownType, "COMMAND 0"},
      {"PING length", after_config, [](auto& w) { w.command(q::kCmdPing, {0, 0, 1}); }, Errc::kMalformed,
       "PING with 3 data bytes"},
  };
  return all;
}

// Where the bad record starts: for cases whose bad bytes begin with valid
// records (EOS, footer), past them.
size_t bad_at(const Case& c, size_t prefix) {
  const std::string n = c.name;
  if (n == "EOF before RAM END" || n == "POSTCOPY_ADVISE") return prefix + 8 + 5;
  return prefix;
}

TEST(QemuStreamRejects, EveryClassWithReasonAndOffset) {
  for (const auto& c : cases()) {
    SCOPED_TRACE(c.name);
    StreamWriter w = c.prefix();
    const size_t prefix = w.size();
    c.bad(w);
    // Valid-looking bytes after the bad record must not come out either.
    StreamWriter more = after_ram_end();
    w.raw(more.bytes);
    const size_t at = bad_at(c, prefix);

    for (const bool bytewise : {false, true}) {
      StreamSplitter s;
      CollectSink sink;
      auto r = bytewise ? feed_bytewise(s, w.bytes, sink) : s.feed(w.bytes, sink);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.error().code, c.code) << r.error().detail;
      EXPECT_NE(r.error().detail.find(c.reason), std::string::npos) << r.error().detail;
      EXPECT_NE(r.error().detail.find("offset " + std::to_string(at) + ":"), std::string::npos) << r.error().detail;
      // Output: exactly the input before the bad record.
      ASSERT_EQ(sink.out.size(), at);
      EXPECT_TRUE(std::equal(sink.out.begin(), sink.out.end(), w.bytes.begin()));
      EXPECT_EQ(s.offset(), at);
      EXPECT_EQ(s.buffered(), 0u);
      EXPECT_EQ(s.phase(), Phase::kFailed);
      // Stays failed, with the same reason, handing out nothing more.
      auto again = s.feed(after_config().bytes, sink);
      ASSERT_FALSE(again.ok());
      EXPECT_EQ(again.error().detail, r.error().detail);
      EXPECT_EQ(s.finish().error().detail, r.error().detail);
      EXPECT_EQ(sink.out.size(), at);
    }
  }
}

TEST(QemuStreamRejects, StateAfterAnErrorIsUnchanged) {
  StreamWriter w = in_part();
  w.page("pc.ram", 4096, page_of(9)).zero("pc.ram", 8192);
  const size_t good = w.size();
  w.page("pc.ram", uint64_t{1} << 40, page_of(1));  // beyond the block
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed(std::span(w.bytes).first(good), sink).ok());
  const auto blocks = s.ram_blocks();
  const auto before = s.stats();
  ASSERT_FALSE(s.feed(std::span(w.bytes).subspan(good), sink).ok());
  EXPECT_EQ(s.ram_blocks().size(), blocks.size());
  EXPECT_EQ(s.ram_blocks()[0].idstr, "pc.ram");
  EXPECT_EQ(s.stats().pages, before.pages);
  EXPECT_EQ(s.stats().zero_pages, before.zero_pages);
  EXPECT_EQ(s.stats().opaque_bytes, before.opaque_bytes);
  EXPECT_EQ(s.stats().ram_sections, before.ram_sections);
  EXPECT_EQ(sink.keys, std::vector<uint64_t>{q::page_key(0, 4096)});
  EXPECT_EQ(sink.out.size(), good);
}

TEST(QemuStreamRejects, ErrorInsideAHeldRecordHandsOutNothingOfIt) {
  // The bad record straddles two feeds: its first bytes were held, and
  // they must not come out when the rest shows it is bad.
  StreamWriter w = in_part();
  const size_t at = w.size();
  w.page("no-such-block", 0, page_of(1));
  StreamSplitter s;
  CollectSink sink;
  ASSERT_TRUE(s.feed(std::span(w.bytes).first(at + 10), sink).ok());
  EXPECT_EQ(s.buffered(), 10u);
  EXPECT_EQ(sink.out.size(), at);
  auto r = s.feed(std::span(w.bytes).subspan(at + 10), sink);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().detail.find("offset " + std::to_string(at) + ":"), std::string::npos) << r.error().detail;
  EXPECT_EQ(sink.out.size(), at);
  EXPECT_EQ(s.offset(), at);
  EXPECT_EQ(s.buffered(), 0u);
}

}  // namespace
}  // namespace tideway::testing::qemu

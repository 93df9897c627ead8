// fuzz_qemu_stream: the QEMU migration stream splitter (proto/qemu_stream.h)
// on arbitrary bytes. The first input byte seeds the chunking; the rest is
// the stream, fed once whole and once in data-derived pieces (1 byte to a
// few pages, so cuts fall inside headers, block lists and payloads).
// Oracles:
//  * the reassembled output (every opaque() and page() span in call order)
//    equals the accepted input prefix: on success the input minus what is
//    held (buffered()), on error the input up to the bad record (offset());
//  * both feedings agree: the same result, reason, output and page keys;
//  * every page is kPageSize bytes with a key inside its RAMBlock; no empty
//    opaque span; the hold stays bounded; the stats add up;
//  * after an error the splitter stays failed with the same reason and
//    hands out nothing more.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "proto/qemu_stream.h"

namespace q = tideway::proto::qemu;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_qemu_stream oracle violated: %s\n", what);
  std::abort();
}
#define QS_CHECK(cond) \
  do {                 \
    if (!(cond)) fail(#cond); \
  } while (0)

struct Sink : q::StreamSink {
  const q::StreamSplitter* s = nullptr;
  std::vector<uint8_t> out;
  std::vector<uint64_t> keys;
  void opaque(std::span<const uint8_t> b) override {
    QS_CHECK(!b.empty());
    out.insert(out.end(), b.begin(), b.end());
  }
  void page(uint64_t key, std::span<const uint8_t> d) override {
    QS_CHECK(d.size() == q::kPageSize);
    const uint32_t b = q::key_block(key);
    QS_CHECK(b < s->ram_blocks().size());
    QS_CHECK(q::key_offset(key) < s->ram_blocks()[b].used_length);
    QS_CHECK(q::key_offset(key) % q::kPageSize == 0);
    QS_CHECK(s->ram_section() != q::RamSection::kNone);
    keys.push_back(key);
    out.insert(out.end(), d.begin(), d.end());
  }
};

struct Run {
  bool ok = true;
  std::string reason;
  Sink sink;
  q::StreamSplitter::Stats stats;
  uint64_t offset = 0;
};

void check_after(const q::StreamSplitter& s, const Sink& sink, std::span<const uint8_t> in, bool ok) {
  QS_CHECK(sink.out.size() <= in.size());
  QS_CHECK(std::equal(sink.out.begin(), sink.out.end(), in.begin()));
  const auto st = s.stats();
  QS_CHECK(st.opaque_bytes + st.pages * q::kPageSize == sink.out.size());
  QS_CHECK(st.pages == sink.keys.size());
  QS_CHECK(s.buffered() <= std::max(q::StreamSplitter::kMaxItem, q::kPageSize - 1));
  if (ok) {
    QS_CHECK(s.offset() == in.size());
    QS_CHECK(sink.out.size() + s.buffered() == in.size());
    QS_CHECK(s.phase() != q::Phase::kFailed);
    QS_CHECK(s.phase() != q::Phase::kPassthrough || s.buffered() == 0);
  } else {
    QS_CHECK(s.phase() == q::Phase::kFailed);
    QS_CHECK(s.buffered() == 0);
    QS_CHECK(s.offset() == sink.out.size());
  }
}

Run whole(std::span<const uint8_t> in) {
  Run r;
  q::StreamSplitter s;
  r.sink.s = &s;
  auto res = s.feed(in, r.sink);
  r.ok = res.ok();
  if (!r.ok) {
    r.reason = res.error().detail;
    QS_CHECK(!r.reason.empty());
    QS_CHECK(r.reason.find("offset " + std::to_string(s.offset()) + ":") != std::string::npos);
    // Stays failed with the same reason, and hands out nothing more.
    const size_t before = r.sink.out.size();
    auto again = s.feed(in, r.sink);
    QS_CHECK(!again.ok() && again.error().detail == r.reason);
    QS_CHECK(!s.finish().ok() && s.finish().error().detail == r.reason);
    QS_CHECK(r.sink.out.size() == before);
  } else {
    const auto fin = s.finish();
    QS_CHECK(fin.ok() == (s.phase() == q::Phase::kPassthrough));
    if (!fin.ok()) QS_CHECK(fin.error().code == tideway::proto::Errc::kTruncated);
  }
  check_after(s, r.sink, in, r.ok);
  r.stats = s.stats();
  r.offset = s.offset();
  return r;
}

Run pieces(std::span<const uint8_t> in, uint8_t seed) {
  Run r;
  q::StreamSplitter s;
  r.sink.s = &s;
  uint32_t x = 0x9e3779b9u ^ seed;
  size_t at = 0;
  while (at < in.size()) {
    x = x * 1664525u + 1013904223u;
    const uint32_t pick = x >> 24;
    // Mostly small pieces, sometimes more than a page.
    const size_t len = pick < 128 ? 1 + pick % 16 : pick < 224 ? 1 + (x >> 8) % 300 : 1 + (x >> 8) % 9000;
    const size_t n = std::min(len, in.size() - at);
    auto res = s.feed(in.subspan(at, n), r.sink);
    at += n;
    if (!res.ok()) {
      r.ok = false;
      r.reason = res.error().detail;
      break;
    }
    QS_CHECK(r.sink.out.size() + s.buffered() == at);
  }
  check_after(s, r.sink, in, r.ok);
  r.stats = s.stats();
  r.offset = s.offset();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> in(data + 1, size - 1);
  const Run a = whole(in);
  const Run b = pieces(in, data[0]);
  QS_CHECK(a.ok == b.ok);
  QS_CHECK(a.reason == b.reason);
  // What is complete is handed out whatever the chunking.
  QS_CHECK(a.sink.out == b.sink.out);
  QS_CHECK(a.sink.keys == b.sink.keys);
  QS_CHECK(a.offset == b.offset);
  QS_CHECK(a.stats.pages == b.stats.pages && a.stats.zero_pages == b.stats.zero_pages);
  QS_CHECK(a.stats.opaque_bytes == b.stats.opaque_bytes && a.stats.ram_sections == b.stats.ram_sections);
  QS_CHECK(a.stats.commands == b.stats.commands && a.stats.ram_complete == b.stats.ram_complete);
  return 0;
}

// fuzz_frame: arbitrary bytes as a received byte stream. Each input goes
// through a FrameParser in one feed and through a second parser in chunks
// whose sizes derive from the data; both must agree frame for frame and on
// the final error. Every frame must re-encode to its exact bytes, and every
// payload that decodes must re-encode to itself (fuzz_check.h). A third pass
// recomputes the crcs so that mutated payloads reach the decoders.
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "proto/frame.h"
#include "tests/fuzz/fuzz_check.h"

using namespace tideway::proto;

namespace {

struct Seen {
  FrameHeader header;
  std::vector<uint8_t> payload;
};

// Drains `p`; returns the frames and, if the parser failed, the error code.
void drain(FrameParser& p, std::vector<Seen>& out, std::optional<Errc>& err) {
  while (!err) {
    auto r = p.next();
    if (!r.ok()) {
      err = r.error().code;
      FUZZ_CHECK(p.failed(), MessageType::kProbe);
      FUZZ_CHECK(!p.next().ok(), MessageType::kProbe);  // stays failed
      return;
    }
    if (!r->has_value()) return;
    const Frame& f = **r;
    FUZZ_CHECK(f.payload.size() == f.header.length, f.header.type);
    FUZZ_CHECK(f.header.length <= kMaxPayload, f.header.type);
    out.push_back({f.header, {f.payload.begin(), f.payload.end()}});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);

  // One feed.
  FrameParser whole;
  whole.feed(in);
  std::vector<Seen> frames;
  std::optional<Errc> err;
  drain(whole, frames, err);

  // Frames tile the input from its start, each re-encoding to its bytes.
  size_t off = 0;
  for (const Seen& s : frames) {
    const auto raw = encode_frame(s.header, s.payload);
    FUZZ_CHECK(off + raw.size() <= size, s.header.type);
    FUZZ_CHECK(std::equal(raw.begin(), raw.end(), data + off), s.header.type);
    off += raw.size();
    fuzz::check_payload(s.header.type, s.payload);
  }
  if (!err) FUZZ_CHECK(whole.buffered() == size - off, MessageType::kProbe);

  // Chunked feeding yields the same frames and the same error.
  FrameParser chunked;
  std::vector<Seen> frames2;
  std::optional<Errc> err2;
  size_t pos = 0;
  uint32_t x = 0x2545F491u ^ static_cast<uint32_t>(size);
  while (pos < size && !err2) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    const size_t n = std::min<size_t>(size - pos, (x % 4 == 0) ? x % 4096 : x % 37);
    chunked.feed(in.subspan(pos, n));
    pos += n;
    drain(chunked, frames2, err2);
  }
  FUZZ_CHECK(frames2.size() == frames.size(), MessageType::kProbe);
  for (size_t i = 0; i < frames.size(); ++i) {
    FUZZ_CHECK(frames2[i].payload == frames[i].payload, frames[i].header.type);
    FUZZ_CHECK(frames2[i].header.seq == frames[i].header.seq, frames[i].header.type);
    FUZZ_CHECK(frames2[i].header.stream == frames[i].header.stream, frames[i].header.type);
  }
  FUZZ_CHECK(err2 == err, MessageType::kProbe);

  // A copy with every crc recomputed, so mutated payloads get past the
  // checksum and reach the message decoders through the whole receive path.
  std::vector<uint8_t> fixed(data, data + size);
  for (size_t at = 0; at + kHeaderSize <= fixed.size();) {
    auto h = decode_header(std::span(fixed).subspan(at));
    if (!h.ok() || at + kHeaderSize + h->length > fixed.size()) break;
    const auto payload = std::span(fixed).subspan(at + kHeaderSize, h->length);
    const auto raw = encode_frame(*h, payload);
    std::copy(raw.begin(), raw.begin() + kHeaderSize, fixed.begin() + static_cast<std::ptrdiff_t>(at));
    at += raw.size();
  }
  FrameParser p3;
  p3.feed(fixed);
  std::vector<Seen> frames3;
  std::optional<Errc> err3;
  drain(p3, frames3, err3);
  FUZZ_CHECK(frames3.size() >= frames.size(), MessageType::kProbe);
  FUZZ_CHECK(err3 != Errc::kBadChecksum, MessageType::kProbe);
  for (const Seen& s : frames3) fuzz::check_payload(s.header.type, s.payload);
  return 0;
}

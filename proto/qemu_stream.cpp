// The splitter's driver: takes bytes in any chunking, cuts them into items
// (record headers, held in a small buffer when they straddle two calls) and
// page payloads, and hands them out in stream order. What each item means
// is checked in qemu_records.cpp.
#include "proto/qemu_stream.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace tideway::proto::qemu {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::kHeader: return "header";
    case Phase::kRam: return "ram";
    case Phase::kPassthrough: return "passthrough";
    case Phase::kFailed: return "failed";
  }
  return "?";
}

const char* section_type_name(uint8_t type) {
  switch (type) {
    case kSecEof: return "EOF";
    case kSecStart: return "START";
    case kSecPart: return "PART";
    case kSecEnd: return "END";
    case kSecFull: return "FULL";
    case kSecSubsection: return "SUBSECTION";
    case kSecVmDescription: return "VMDESCRIPTION";
    case kSecConfiguration: return "CONFIGURATION";
    case kSecCommand: return "COMMAND";
    case kSecFooter: return "FOOTER";
    default: return "unknown";
  }
}

const char* command_name(uint16_t cmd) {
  switch (cmd) {
    case kCmdOpenReturnPath: return "OPEN_RETURN_PATH";
    case kCmdPing: return "PING";
    case kCmdPostcopyAdvise: return "POSTCOPY_ADVISE";
    case kCmdPostcopyListen: return "POSTCOPY_LISTEN";
    case kCmdPostcopyRun: return "POSTCOPY_RUN";
    case kCmdPostcopyRamDiscard: return "POSTCOPY_RAM_DISCARD";
    case kCmdPostcopyResume: return "POSTCOPY_RESUME";
    case kCmdPackaged: return "PACKAGED";
    case kCmdRecvBitmap: return "RECV_BITMAP";
    case kCmdEnableColo: return "ENABLE_COLO";
    default: return "?";
  }
}

Phase StreamSplitter::phase() const {
  if (expect_ == Expect::kFailed) return Phase::kFailed;
  if (expect_ == Expect::kPassthrough) return Phase::kPassthrough;
  return ram_started_ ? Phase::kRam : Phase::kHeader;
}

Result<void> StreamSplitter::fail(Errc code, uint64_t at, const std::string& what) {
  error_ = Error{code, "QEMU migration stream, offset " + std::to_string(at) + ": " + what};
  expect_ = Expect::kFailed;
  // Nothing of the bad record was handed out: the accepted stream ends
  // where it starts.
  offset_ = at;
  held_ = 0;
  page_have_ = 0;
  return error_;
}

void StreamSplitter::emit_opaque(std::span<const uint8_t> bytes, StreamSink& sink) {
  if (bytes.empty()) return;
  stats_.opaque_bytes += bytes.size();
  sink.opaque(bytes);
}

Result<void> StreamSplitter::feed(std::span<const uint8_t> in, StreamSink& sink) {
  if (expect_ == Expect::kFailed) return error_;
  const uint64_t base = offset_;
  size_t i = 0;     // next byte of `in` to look at
  size_t pend = 0;  // in[pend, i) is accepted opaque input not handed out yet
  const auto flush = [&] {
    if (i > pend) emit_opaque(in.subspan(pend, i - pend), sink);
    pend = i;
  };

  while (i < in.size()) {
    if (expect_ == Expect::kPassthrough) {
      i = in.size();
      break;
    }
    if (expect_ == Expect::kPagePayload) {
      flush();  // the record header goes out before its payload
      if (page_have_ == 0 && in.size() - i >= kPageSize) {
        sink.page(page_key_, in.subspan(i, kPageSize));  // zero copy
        i += kPageSize;
      } else {
        const size_t n = std::min(kPageSize - page_have_, in.size() - i);
        std::memcpy(page_buf_.data() + page_have_, in.data() + i, n);
        page_have_ += n;
        i += n;
        pend = i;
        if (page_have_ < kPageSize) break;
        sink.page(page_key_, page_buf_);
        page_have_ = 0;
      }
      pend = i;
      ++stats_.pages;
      expect_ = Expect::kRamRecord;
      continue;
    }

    if (held_ == 0) {
      // Common case: the whole item is in this chunk; check it in place.
      const auto rest = in.subspan(i);
      const size_t need = item_size(rest);
      assert(need > 0 && need <= kMaxItem);
      if (need <= rest.size()) {
        const uint64_t at = base + i;
        if (auto r = apply(rest.first(need), at); !r.ok()) {
          flush();  // everything before the bad item was accepted
          return r;
        }
        i += need;  // stays in the pending range
        continue;
      }
      flush();
      held_at_ = base + i;
    }
    // The item straddles chunks: gather it in held_buf_.
    size_t need = item_size(std::span<const uint8_t>(held_buf_.data(), held_));
    while (held_ < need && i < in.size()) {
      const size_t n = std::min(need - held_, in.size() - i);
      std::memcpy(held_buf_.data() + held_, in.data() + i, n);
      held_ += n;
      i += n;
      need = item_size(std::span<const uint8_t>(held_buf_.data(), held_));
      assert(need > 0 && need <= kMaxItem);
    }
    pend = i;  // the held bytes are handed out from held_buf_, not from `in`
    if (held_ < need) break;
    assert(held_ == need);
    const std::span<const uint8_t> item(held_buf_.data(), held_);
    if (auto r = apply(item, held_at_); !r.ok()) return r;
    emit_opaque(item, sink);
    held_ = 0;
  }
  flush();
  offset_ = base + in.size();
  return {};
}

Result<void> StreamSplitter::finish() const {
  if (expect_ == Expect::kFailed) return error_;
  if (expect_ == Expect::kPassthrough) return {};
  std::string where;
  switch (expect_) {
    case Expect::kFileHeader: where = "in the file header"; break;
    case Expect::kConfiguration: where = "before the CONFIGURATION section"; break;
    case Expect::kPagePayload: where = "inside a RAM page"; break;
    case Expect::kSection: where = "between sections, before the device state"; break;
    default: where = "inside a RAM section"; break;
  }
  if (held_ != 0) where += " (a record header is incomplete)";
  return Error{Errc::kTruncated, "QEMU migration stream ended at offset " + std::to_string(offset_) + " " + where +
                                     ": the migration did not complete"};
}

}  // namespace tideway::proto::qemu

#include "proto/frame.h"

#include <cassert>
#include <cstring>
#include <string>

#include "proto/bytes.h"
#include "proto/crc32c.h"

namespace tideway::proto {

const char* errc_name(Errc e) {
  switch (e) {
    case Errc::kTruncated: return "truncated";
    case Errc::kBadMagic: return "bad magic";
    case Errc::kBadVersion: return "bad version";
    case Errc::kUnknownType: return "unknown message type";
    case Errc::kUnknownFlags: return "unknown flags";
    case Errc::kTooLarge: return "too large";
    case Errc::kBadChecksum: return "bad checksum";
    case Errc::kMalformed: return "malformed";
    case Errc::kTrailingBytes: return "trailing bytes";
    case Errc::kIncompatible: return "incompatible";
    case Errc::kSystem: return "system";
    case Errc::kInvalid: return "invalid";
  }
  return "unknown error";
}

bool is_known_type(uint8_t t) {
  switch (static_cast<MessageType>(t)) {
    case MessageType::kHello:
    case MessageType::kWelcome:
    case MessageType::kError:
    case MessageType::kHeartbeat:
    case MessageType::kStreamAck:
    case MessageType::kReplWrite:
    case MessageType::kReplFlush:
    case MessageType::kReplAck:
    case MessageType::kReplAttach:
    case MessageType::kReplAttached:
    case MessageType::kMigControl:
    case MessageType::kMigPages:
    case MessageType::kDiskBlocks:
    case MessageType::kProbe:
      return true;
  }
  return false;
}

bool is_control_type(MessageType t) {
  switch (t) {
    case MessageType::kHello:
    case MessageType::kWelcome:
    case MessageType::kError:
    case MessageType::kHeartbeat:
    case MessageType::kStreamAck:
      return true;
    default:
      return false;
  }
}

const char* type_name(MessageType t) {
  switch (t) {
    case MessageType::kHello: return "HELLO";
    case MessageType::kWelcome: return "WELCOME";
    case MessageType::kError: return "ERROR";
    case MessageType::kHeartbeat: return "HEARTBEAT";
    case MessageType::kStreamAck: return "STREAM_ACK";
    case MessageType::kReplWrite: return "REPL_WRITE";
    case MessageType::kReplFlush: return "REPL_FLUSH";
    case MessageType::kReplAck: return "REPL_ACK";
    case MessageType::kReplAttach: return "REPL_ATTACH";
    case MessageType::kReplAttached: return "REPL_ATTACHED";
    case MessageType::kMigControl: return "MIG_CONTROL";
    case MessageType::kMigPages: return "MIG_PAGES";
    case MessageType::kDiskBlocks: return "DISK_BLOCKS";
    case MessageType::kProbe: return "PROBE";
  }
  return "?";
}

namespace {
constexpr size_t kCrcOffset = 28;

// The frame checksum: header bytes before the crc field, then the payload.
uint32_t frame_crc(const uint8_t* header, std::span<const uint8_t> payload) {
  const uint32_t crc = crc32c_update(kCrc32cInit, {header, kCrcOffset});
  return crc32c_finish(crc32c_update(crc, payload));
}

void put_u32_le(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
}  // namespace

void append_frame(std::vector<uint8_t>& out, FrameHeader h, std::span<const uint8_t> payload) {
  const size_t start = out.size();
  out.reserve(start + kHeaderSize + payload.size());
  ByteWriter w(out);
  w.u32(kMagic);
  w.u8(h.version);
  w.u8(static_cast<uint8_t>(h.type));
  w.u16(h.flags);
  w.u32(h.stream);
  w.u32(static_cast<uint32_t>(payload.size()));
  w.u64(h.seq);
  w.u32(0);  // reserved
  w.u32(frame_crc(out.data() + start, payload));
  w.bytes(payload);
}

std::vector<uint8_t> encode_frame(FrameHeader h, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  append_frame(out, h, payload);
  return out;
}

Result<FrameHeader> decode_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize) return {Errc::kTruncated, "frame header needs 32 bytes"};
  ByteReader r(bytes.first(kHeaderSize));
  uint32_t magic = 0, reserved = 0;
  uint8_t type = 0;
  FrameHeader h;
  // The header is exactly 32 bytes, so these reads cannot fail.
  r.u32(magic);
  r.u8(h.version);
  r.u8(type);
  r.u16(h.flags);
  r.u32(h.stream);
  r.u32(h.length);
  r.u64(h.seq);
  r.u32(reserved);
  r.u32(h.crc);
  if (magic != kMagic) return {Errc::kBadMagic, "not a Tideway frame (magic " + std::to_string(magic) + ")"};
  if (h.version < kMinVersion || h.version > kMaxVersion)
    return {Errc::kBadVersion, "frame version " + std::to_string(h.version) + " not supported"};
  if (!is_known_type(type)) return {Errc::kUnknownType, "message type " + std::to_string(type)};
  h.type = static_cast<MessageType>(type);
  if (h.flags & ~kKnownFlags) return {Errc::kUnknownFlags, "flags " + std::to_string(h.flags)};
  if (h.length > kMaxPayload)
    return {Errc::kTooLarge, "payload length " + std::to_string(h.length) + " exceeds " +
                                 std::to_string(kMaxPayload)};
  if (reserved != 0) return {Errc::kMalformed, "reserved header field is not zero"};
  // Channel control lives on stream 0 and is never sequenced or re-sent.
  if (is_control_type(h.type) && (h.stream != kControlStream || h.seq != 0 || h.flags != 0))
    return {Errc::kMalformed, std::string(type_name(h.type)) +
                                  " must be on stream 0 with seq 0 and no flags"};
  // The receiver drops duplicates by seq, so a re-sent frame must carry one.
  if ((h.flags & kFlagResent) && h.seq == 0)
    return {Errc::kMalformed, "re-sent frame without a sequence number"};
  return h;
}

bool frame_crc_ok(std::span<const uint8_t> raw_header, std::span<const uint8_t> payload,
                  uint32_t expected) {
  if (raw_header.size() < kCrcOffset) return false;
  return frame_crc(raw_header.data(), payload) == expected;
}

void set_frame_flags(std::vector<uint8_t>& frame, uint16_t flags) {
  assert(frame.size() >= kHeaderSize);
  assert((flags & ~kKnownFlags) == 0);
  frame[6] = static_cast<uint8_t>(flags);
  frame[7] = static_cast<uint8_t>(flags >> 8);
  put_u32_le(frame.data() + kCrcOffset,
             frame_crc(frame.data(), {frame.data() + kHeaderSize, frame.size() - kHeaderSize}));
}

void FrameParser::feed(std::span<const uint8_t> bytes) {
  // Compact consumed bytes first so the buffer stays bounded.
  if (pos_ > 0) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

Result<std::optional<Frame>> FrameParser::next() {
  if (failed_) return {Errc::kMalformed, "parser failed earlier"};
  const std::span<const uint8_t> avail{buf_.data() + pos_, buf_.size() - pos_};
  if (avail.size() < kHeaderSize) return std::optional<Frame>{};
  auto h = decode_header(avail);
  if (!h) {
    failed_ = true;
    return h.error();
  }
  if (avail.size() < kHeaderSize + h->length) return std::optional<Frame>{};
  const auto payload = avail.subspan(kHeaderSize, h->length);
  if (!frame_crc_ok(avail, payload, h->crc)) {
    failed_ = true;
    return {Errc::kBadChecksum, std::string("CRC32C mismatch on ") + type_name(h->type) + " frame"};
  }
  pos_ += kHeaderSize + h->length;
  return std::optional<Frame>{Frame{*h, payload}};
}

}  // namespace tideway::proto

// The Tideway frame: a fixed 32-byte header followed by a payload.
//
//   off len field
//     0   4 magic    0x59574454 ("TDWY" on the wire)
//     4   1 version  protocol version of this frame
//     5   1 type     MessageType
//     6   2 flags    FrameFlags; unknown bits are an error
//     8   4 stream   logical stream id (0 = channel control)
//    12   4 length   payload bytes, <= kMaxPayload
//    16   8 seq      per-stream sequence number, 0 = unsequenced
//    24   4 reserved must be zero
//    28   4 crc      CRC32C of bytes 0..27 followed by the payload
//
// All integers are little-endian. docs/protocol.md is the full spec.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "proto/result.h"

namespace tideway::proto {

inline constexpr uint32_t kMagic = 0x59574454;  // bytes 'T' 'D' 'W' 'Y'
inline constexpr size_t kHeaderSize = 32;
// Largest payload a frame may carry: a 1 MiB write plus its message fields.
inline constexpr uint32_t kMaxPayload = (1u << 20) + 4096;
inline constexpr uint8_t kMinVersion = 1;
inline constexpr uint8_t kMaxVersion = 1;
inline constexpr uint32_t kControlStream = 0;

enum class MessageType : uint8_t {
  // Channel control, stream 0, unsequenced.
  kHello = 0x01,
  kWelcome = 0x02,
  kError = 0x03,
  kHeartbeat = 0x04,
  kStreamAck = 0x05,
  // Replication (protect).
  kReplWrite = 0x10,
  kReplFlush = 0x11,
  kReplAck = 0x12,
  kReplAttach = 0x13,
  kReplAttached = 0x14,
  // Migration and disk copy.
  kMigControl = 0x20,
  kMigPages = 0x21,
  kDiskBlocks = 0x22,
  // Opaque payload for link probes and benchmarks.
  kProbe = 0x30,
};

bool is_known_type(uint8_t t);
const char* type_name(MessageType t);
// HELLO, WELCOME, ERROR, HEARTBEAT, STREAM_ACK: stream 0, seq 0, no flags.
bool is_control_type(MessageType t);

enum FrameFlags : uint16_t {
  kFlagNone = 0,
  // The payload was re-sent after a reconnect (informational; the receiver
  // deduplicates by seq, not by this flag).
  kFlagResent = 1u << 0,
  // More fragments of this message follow on the same stream. Senders split
  // large messages so that a high-priority frame never waits behind a whole
  // 1 MiB write; the receiver reassembles up to kMaxPayload bytes.
  kFlagMore = 1u << 1,
};
inline constexpr uint16_t kKnownFlags = kFlagResent | kFlagMore;

struct FrameHeader {
  uint8_t version = kMaxVersion;
  MessageType type = MessageType::kProbe;
  uint16_t flags = 0;
  uint32_t stream = 0;
  uint32_t length = 0;
  uint64_t seq = 0;
  uint32_t crc = 0;
};

// Serialises header + payload, computing length and crc.
std::vector<uint8_t> encode_frame(FrameHeader h, std::span<const uint8_t> payload);
// Same, appending to `out` (lets the caller batch frames in one buffer).
void append_frame(std::vector<uint8_t>& out, FrameHeader h, std::span<const uint8_t> payload);

// Parses and validates the fixed header (magic, version, type, flags,
// length bound, reserved, and the cross-field rules: control messages are on
// stream 0 with seq 0 and no flags; kFlagResent needs a non-zero seq).
// Does not check the crc: that needs the payload.
Result<FrameHeader> decode_header(std::span<const uint8_t> bytes);
// Rewrites the flags of an encoded frame in place and reseals its crc (a
// frame re-sent after a reconnect gets kFlagResent).
void set_frame_flags(std::vector<uint8_t>& frame, uint16_t flags);
// Checks the crc of a complete frame whose header was decoded from `raw`.
bool frame_crc_ok(std::span<const uint8_t> raw_header, std::span<const uint8_t> payload,
                  uint32_t expected);

struct Frame {
  FrameHeader header;
  std::span<const uint8_t> payload;  // view into the parser's buffer
};

// Incremental parser over a byte stream: feed bytes as they arrive, take
// complete, checked frames out. Memory is bounded by one maximal frame plus
// the bytes fed in one call. After an error the parser stays failed: the
// stream is out of sync and the connection must close.
class FrameParser {
 public:
  // Appends bytes to the internal buffer.
  void feed(std::span<const uint8_t> bytes);
  // The next complete frame, nullopt if more bytes are needed, or an error.
  // The frame's payload view is valid until the next feed() or next().
  Result<std::optional<Frame>> next();
  size_t buffered() const { return buf_.size() - pos_; }
  bool failed() const { return failed_; }

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
  bool failed_ = false;
};

}  // namespace tideway::proto

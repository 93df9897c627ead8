// Message payloads carried in frames, for both jobs (protect, migrate) and
// for the channel itself. Encoding is little-endian, fields in the order
// declared; docs/protocol.md lists them. Decoders are strict: every length
// is bounded, every byte must be consumed, and views (std::span) point into
// the payload they were decoded from, so they live as long as that buffer.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "proto/frame.h"
#include "proto/result.h"

namespace tideway::proto {

inline constexpr size_t kMaxNameLen = 255;
inline constexpr size_t kMaxReasonLen = 4096;
inline constexpr size_t kMaxStreams = 64;      // streams per channel
inline constexpr size_t kMaxVectorLen = 16;    // count-vector entries (writers)
inline constexpr uint32_t kPageSize = 4096;
inline constexpr uint32_t kMaxWriteLen = 1u << 20;
inline constexpr uint32_t kMaxRecordsPerBatch = 1024;

// Feature bits negotiated at connect: the session uses the intersection.
enum Feature : uint64_t {
  kFeatResume = 1u << 0,       // reconnect resumes a session by id
  kFeatReplication = 1u << 1,  // REPL_* messages
  kFeatMigration = 1u << 2,    // MIG_* and DISK_BLOCKS messages
  kFeatCodec = 1u << 3,        // encoded (CBR/delta/zstd) records
};
inline constexpr uint64_t kAllFeatures = kFeatResume | kFeatReplication | kFeatMigration | kFeatCodec;

using SessionId = std::array<uint8_t, 16>;

// In a list of positions each stream appears at most once and never the
// control stream 0 (decoders reject both).
struct StreamPosition {
  uint32_t stream = 0;
  uint64_t seq = 0;  // highest sequence number received in order
  bool operator==(const StreamPosition&) const = default;
};

// Channel control ----------------------------------------------------------

struct Hello {
  uint16_t min_version = kMinVersion;
  uint16_t max_version = kMaxVersion;
  uint64_t features = 0;
  SessionId session{};              // all zero: start a new session
  std::string site;                 // the dialer's site name
  std::vector<StreamPosition> received;  // resume: what we already have;
                                         // empty when session is all zero
  bool operator==(const Hello&) const = default;
};

struct Welcome {
  uint16_t version = kMaxVersion;
  uint64_t features = 0;
  SessionId session{};
  bool resumed = false;                  // never true for the zero session
  std::string site;
  std::vector<StreamPosition> received;  // empty unless resumed
  bool operator==(const Welcome&) const = default;
};

enum class ErrorCode : uint32_t {
  kProtocol = 1,
  kIncompatible = 2,
  kUnauthorized = 3,
  kUnknownSession = 4,
  kShuttingDown = 5,
};

struct ErrorMsg {
  ErrorCode code = ErrorCode::kProtocol;
  std::string reason;
  bool operator==(const ErrorMsg&) const = default;
};

struct Heartbeat {
  uint64_t sent_ns = 0;   // sender's clock
  uint64_t echo_ns = 0;   // the last sent_ns we received from the peer
  bool operator==(const Heartbeat&) const = default;
};

struct StreamAck {
  std::vector<StreamPosition> acked;  // cumulative per stream
  bool operator==(const StreamAck&) const = default;
};

// Replication ------------------------------------------------------------

enum class WriteOp : uint8_t { kWrite = 1, kDiscard = 2, kWriteZeroes = 3 };
enum WriteFlags : uint32_t {
  kWriteFua = 1u << 0,
  // `data` is one WAN codec batch (docs/codec.md) of the write's length /
  // kPageSize pages, at repl_page_address(volume, offset + i * kPageSize);
  // `length` stays the decoded length. Only for repl_encodable() writes, and
  // only once both ends negotiated kFeatCodec. Never journaled.
  kWriteEncoded = 1u << 1,
};
inline constexpr uint32_t kKnownWriteFlags = kWriteFua | kWriteEncoded;
// An encoded write is at most its pages plus 11 bytes each and a batch
// header (the codec's max_batch_bytes(256) is 1 051 496).
inline constexpr uint32_t kMaxEncodedWriteLen = kMaxWriteLen + 8192;

// Codec addresses: a replication stream carries one writer's volumes, so a
// page's address is its byte offset with the volume in the top 16 bits
// (byte offsets keep consecutive pages 4096 apart, which the codec encodes
// in one byte).
inline constexpr int kReplAddressVolumeShift = 48;
constexpr uint64_t repl_page_address(uint32_t volume, uint64_t offset) {
  return (uint64_t{volume} << kReplAddressVolumeShift) | offset;
}
// Whether a write may travel encoded: page-aligned data writes whose pages
// have distinct codec addresses. Anything else goes raw.
constexpr bool repl_encodable(WriteOp op, uint32_t volume, uint64_t offset, uint32_t length) {
  return op == WriteOp::kWrite && length != 0 && offset % kPageSize == 0 && length % kPageSize == 0 &&
         volume < (1u << (64 - kReplAddressVolumeShift)) &&
         offset + length <= (uint64_t{1} << kReplAddressVolumeShift);
}

struct ReplWrite {
  uint32_t writer = 0;
  uint32_t volume = 0;
  uint64_t seq = 0;                    // writer's sequence number, from 1
  std::vector<uint32_t> vector;        // count vector (multi-tier causality)
  WriteOp op = WriteOp::kWrite;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  // kWrite: length bytes, or (kWriteEncoded) the codec batch of those bytes,
  // 1..kMaxEncodedWriteLen; other ops: empty.
  std::span<const uint8_t> data;
};

struct ReplFlush {
  uint32_t writer = 0;
  uint32_t volume = 0;
  uint64_t seq = 0;  // every write <= seq must be durable before the ack
  bool operator==(const ReplFlush&) const = default;
};

struct ReplAck {
  uint32_t writer = 0;
  uint32_t volume = 0;
  uint64_t seq = 0;  // cumulative: all writes <= seq are durable at the backup
  bool operator==(const ReplAck&) const = default;
};

// The agent announces each protected volume before its writes, and again
// after a reset: the replicator creates or checks the backup volume and
// answers with what it already holds durably, so the agent re-sends only
// what is missing.
struct ReplAttach {
  uint32_t writer = 0;
  uint32_t volume = 0;
  uint64_t size = 0;        // bytes, > 0
  std::string name;         // the protection's name: 1..255 of [A-Za-z0-9_.-]
  bool operator==(const ReplAttach&) const = default;
};

enum class AttachStatus : uint8_t {
  kOk = 0,
  kRefused = 1,
  // Unsolicited, after a write the replicator could not take (its codec
  // batch failed to decode): it dropped that write and everything after
  // it in this session. The agent attaches again (resetting its encoder)
  // and re-sends from durable_seq + 1. `reason` says what failed.
  kReattach = 2,
};

struct ReplAttached {
  uint32_t writer = 0;
  uint32_t volume = 0;
  AttachStatus status = AttachStatus::kOk;
  uint64_t durable_seq = 0;  // every write of `writer` <= this is journaled
  std::string reason;        // why refused; empty when ok
  bool operator==(const ReplAttached&) const = default;
};

// True for names usable as file names and in logs: [A-Za-z0-9_.-]{1,255},
// not "." or "..".
bool valid_volume_name(std::string_view name);

// Migration --------------------------------------------------------------

enum class MigOp : uint8_t {
  kBegin = 1,
  kIterationStart = 2,
  kIterationEnd = 3,
  kStopAndCopy = 4,
  kComplete = 5,
  kCancel = 6,
  kDeviceState = 7,  // opaque hypervisor bytes follow in `detail`
  kAccepted = 8,     // destination -> source: ready to receive
  kLoaded = 9,       // destination -> source: whole stream loaded, VM paused there
  kCommit = 10,      // source -> destination: run the VM there (the switchover)
  kResumed = 11,     // destination -> source: the VM runs here; the source may end its copy
};
inline constexpr uint8_t kMaxMigOp = 11;

struct MigControl {
  uint32_t migration = 0;
  MigOp op = MigOp::kBegin;
  uint32_t iteration = 0;
  uint64_t pages_sent = 0;
  uint64_t pages_dirtied = 0;
  uint64_t pages_remaining = 0;
  std::span<const uint8_t> detail;  // up to kMaxPayload bytes
};

// Encoding of one page or block record. Raw and zero are understood by the
// protocol layer; the others are produced and checked by wan/'s codec.
enum class RecordEncoding : uint8_t {
  kRaw = 0,       // length == page size
  kZero = 1,      // length == 0
  kCbr = 2,       // codec-defined
  kDelta = 3,     // codec-defined
  kZstd = 4,      // codec-defined
};

struct Record {
  uint64_t address = 0;          // guest-physical page or disk byte offset;
                                 // address + block size must not overflow
  RecordEncoding encoding = RecordEncoding::kRaw;
  std::span<const uint8_t> bytes;
};

// One piece of a hypervisor's outgoing memory stream (QEMU's, libxc's):
// the bytes between pages verbatim, the pages as one codec batch
// (wan/codec, decoded there). The destination rebuilds the piece as
//   opaque[0, cut0) page0 opaque[cut0, cut1) page1 ... opaque[cut_last, end)
// so the hypervisor at the destination reads the byte-identical stream.
struct MigPages {
  uint32_t migration = 0;
  uint64_t stream_offset = 0;            // where this piece starts in the stream
  std::span<const uint8_t> opaque;
  std::vector<uint32_t> page_cuts;       // ascending (equal for adjacent pages),
                                         // each <= opaque.size(); <= kMaxRecordsPerBatch
  std::span<const uint8_t> batch;        // page_cuts.size() pages; empty iff no cuts
};

struct DiskBlocks {
  uint32_t volume = 0;
  uint32_t block_size = kPageSize;
  std::vector<Record> records;
};

struct Probe {
  uint64_t sent_ns = 0;
  uint64_t index = 0;
  std::span<const uint8_t> padding;
};

using Message = std::variant<Hello, Welcome, ErrorMsg, Heartbeat, StreamAck, ReplWrite, ReplFlush,
                             ReplAck, ReplAttach, ReplAttached, MigControl, MigPages, DiskBlocks, Probe>;

MessageType message_type(const Message& m);

// Payload encoding. Preconditions (asserted): lengths within the bounds above.
std::vector<uint8_t> encode_payload(const Message& m);

// Decodes a payload of the given type. Views point into `payload`.
Result<Message> decode_payload(MessageType type, std::span<const uint8_t> payload);

// Convenience: a whole frame for a message.
std::vector<uint8_t> encode_message(const Message& m, uint32_t stream = kControlStream,
                                    uint64_t seq = 0, uint16_t flags = 0);

// Handshake: the version and features both sides speak, or kIncompatible
// with a reason fit to show an operator.
struct Agreement {
  uint16_t version = 0;
  uint64_t features = 0;
};
Result<Agreement> negotiate(uint16_t our_min, uint16_t our_max, uint64_t our_features,
                            const Hello& theirs, uint64_t required_features);

}  // namespace tideway::proto

// Batch wire format, version 1 (docs/codec.md has the full table).
// Little-endian. A batch is:
//   header (64 bytes) | record section (control_len bytes) |
//   literal section: ceil(literal_len / kLiteralChunk) chunks of
//     {u8 method, u32 stored_len, stored_len bytes}
// and nothing after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "proto/result.h"
#include "wan/codec/codec_config.h"

namespace tideway::wan::codec {

inline constexpr uint32_t kBatchMagic = 0x42435754;  // "TWCB" in memory order
inline constexpr uint8_t kBatchVersion = 1;
inline constexpr size_t kHeaderSize = 64;
// Literal bytes are compressed in chunks of this size (a multiple of every
// sub-block size, so no literal sub-block straddles two chunks).
inline constexpr uint32_t kLiteralChunk = 128 * 1024;
inline constexpr size_t kChunkHeaderSize = 5;

// Record kind byte: type in bits 0-1, bit 2 = sequential address (this
// record's address is the previous record's + kPageSize, or 0 for the first
// record of a batch), bits 3-7 zero.
enum class RecordType : uint8_t { kZero = 0, kRaw = 1, kBlocks = 2 };
inline constexpr uint8_t kRecordTypeMask = 0x03;
inline constexpr uint8_t kRecordSequential = 0x04;
inline constexpr uint8_t kRecordKnownBits = 0x07;

// Per sub-block code in a blocks record: 2 bits each, sub-block j in bits
// 2*(j%4) of code byte j/4.
enum class SubCode : uint8_t {
  kLiteral = 0,    // S bytes from the literal section
  kHit = 1,        // u32 CBR cache slot
  kDelta = 2,      // u16 run bytes, then runs XORed onto the last version
  kUnchanged = 3,  // same bytes as the last version of this address
};
inline constexpr size_t code_bytes(uint32_t sub_blocks) { return (sub_blocks + 3) / 4; }

enum class ChunkMethod : uint8_t { kStored = 0, kZstd = 1 };

struct BatchHeader {
  uint8_t version = kBatchVersion;
  uint8_t sub_blocks = 0;
  uint16_t flags = 0;          // reserved, 0
  uint32_t cache_slots = 0;    // state parameters: must match the decoder's
  uint32_t delta_slots = 0;
  uint64_t epoch = 0;          // >= 1
  uint64_t seq = 0;            // batch number within the epoch, from 0
  uint64_t cache_inserts = 0;  // CBR inserts in this epoch before this batch
  uint32_t record_count = 0;
  uint32_t control_len = 0;
  uint32_t literal_len = 0;    // literal bytes after decompression
  uint32_t reserved = 0;       // 0
  uint64_t checksum = 0;       // chained XXH3 of the decoded records
};

void write_header(const BatchHeader& h, uint8_t* out);
// Parses and checks the fixed fields (magic, version, reserved bits, lengths
// against the input size); does not check them against any decoder state.
proto::Result<BatchHeader> parse_header(std::span<const uint8_t> batch);

// Worst-case encoded size of a batch of `records` pages: use it to size
// batches against a frame limit (256 records fit proto's kMaxPayload).
size_t max_batch_bytes(uint32_t records);

// LEB128 with at most two bytes (values < 16384: every run in a sub-block).
inline constexpr uint32_t kMaxVarint = (1u << 14) - 1;
inline uint8_t* put_varint(uint8_t* p, uint32_t v) {
  if (v < 0x80) {
    *p++ = static_cast<uint8_t>(v);
  } else {
    *p++ = static_cast<uint8_t>(v | 0x80);
    *p++ = static_cast<uint8_t>(v >> 7);
  }
  return p;
}
// Reads one varint from [p, end); false if truncated or longer than 2 bytes.
inline bool get_varint(const uint8_t*& p, const uint8_t* end, uint32_t& v) {
  if (p == end) return false;
  const uint8_t b0 = *p++;
  if (b0 < 0x80) {
    v = b0;
    return true;
  }
  if (p == end) return false;
  const uint8_t b1 = *p++;
  if (b1 >= 0x80) return false;
  v = (b0 & 0x7fu) | (uint32_t{b1} << 7);
  return true;
}

inline void store_le16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void store_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_le64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace tideway::wan::codec

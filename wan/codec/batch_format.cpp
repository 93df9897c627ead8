#include "wan/codec/batch_format.h"

#include <string>

namespace tideway::wan::codec {

using proto::Errc;

void write_header(const BatchHeader& h, uint8_t* out) {
  store_le32(out + 0, kBatchMagic);
  out[4] = h.version;
  out[5] = h.sub_blocks;
  store_le16(out + 6, h.flags);
  store_le32(out + 8, h.cache_slots);
  store_le32(out + 12, h.delta_slots);
  store_le64(out + 16, h.epoch);
  store_le64(out + 24, h.seq);
  store_le64(out + 32, h.cache_inserts);
  store_le32(out + 40, h.record_count);
  store_le32(out + 44, h.control_len);
  store_le32(out + 48, h.literal_len);
  store_le32(out + 52, h.reserved);
  store_le64(out + 56, h.checksum);
}

proto::Result<BatchHeader> parse_header(std::span<const uint8_t> batch) {
  if (batch.size() < kHeaderSize)
    return {Errc::kTruncated, "batch of " + std::to_string(batch.size()) + " bytes is shorter than its 64-byte header"};
  const uint8_t* p = batch.data();
  if (load_le32(p) != kBatchMagic) return {Errc::kBadMagic, "not a codec batch (bad magic)"};
  BatchHeader h;
  h.version = p[4];
  if (h.version != kBatchVersion)
    return {Errc::kBadVersion, "codec batch version " + std::to_string(h.version) + ", this decoder speaks 1"};
  h.sub_blocks = p[5];
  h.flags = load_le16(p + 6);
  h.cache_slots = load_le32(p + 8);
  h.delta_slots = load_le32(p + 12);
  h.epoch = load_le64(p + 16);
  h.seq = load_le64(p + 24);
  h.cache_inserts = load_le64(p + 32);
  h.record_count = load_le32(p + 40);
  h.control_len = load_le32(p + 44);
  h.literal_len = load_le32(p + 48);
  h.reserved = load_le32(p + 52);
  h.checksum = load_le64(p + 56);
  if (h.sub_blocks != 1 && h.sub_blocks != 2 && h.sub_blocks != 4 && h.sub_blocks != 8)
    return {Errc::kMalformed, "sub-blocks per page " + std::to_string(h.sub_blocks) + " is not 1, 2, 4 or 8"};
  if (h.flags != 0) return {Errc::kUnknownFlags, "unknown batch flags " + std::to_string(h.flags)};
  if (h.reserved != 0) return {Errc::kMalformed, "reserved header field is not zero"};
  if (h.epoch == 0) return {Errc::kMalformed, "epoch 0 is not valid"};
  const size_t body = batch.size() - kHeaderSize;
  if (h.control_len > body)
    return {Errc::kTruncated, "record section of " + std::to_string(h.control_len) + " bytes, only " +
                                  std::to_string(body) + " follow the header"};
  // Every record has at least its kind byte: bounds the count by the input.
  if (h.record_count > h.control_len)
    return {Errc::kMalformed, std::to_string(h.record_count) + " records cannot fit in a " +
                                  std::to_string(h.control_len) + "-byte record section"};
  const uint32_t sub_size = kPageSize / h.sub_blocks;
  if (uint64_t{h.literal_len} > uint64_t{h.record_count} * kPageSize || h.literal_len % sub_size != 0)
    return {Errc::kMalformed, "literal length " + std::to_string(h.literal_len) + " does not fit " +
                                  std::to_string(h.record_count) + " records of whole sub-blocks"};
  return h;
}

size_t max_batch_bytes(uint32_t records) {
  const uint64_t literal = uint64_t{records} * kPageSize;
  const uint64_t chunks = (literal + kLiteralChunk - 1) / kLiteralChunk;
  // Per record: kind 1 + address 8 + code bytes <= 2, and the sub-blocks
  // cost at most a page between the record and literal sections (a hit or
  // a delta is only sent when smaller than the literal).
  return kHeaderSize + records * (11 + size_t{kPageSize}) + chunks * kChunkHeaderSize;
}

}  // namespace tideway::wan::codec

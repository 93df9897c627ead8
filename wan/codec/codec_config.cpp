#include "wan/codec/codec_config.h"

#include <string>

namespace tideway::wan::codec {

using proto::Errc;

proto::Result<CodecGeometry> make_geometry(const CodecConfig& c) {
  if (c.sub_blocks != 1 && c.sub_blocks != 2 && c.sub_blocks != 4 && c.sub_blocks != 8)
    return {Errc::kInvalid, "sub_blocks must be 1, 2, 4 or 8, not " + std::to_string(c.sub_blocks)};
  CodecGeometry g;
  g.sub_blocks = c.sub_blocks;
  g.sub_block_size = kPageSize / c.sub_blocks;
  if (c.cache_bytes > kMaxCacheBytes)
    return {Errc::kInvalid, "cache_bytes " + std::to_string(c.cache_bytes) + " above the limit of " +
                                std::to_string(kMaxCacheBytes)};
  if (c.cache_bytes != 0 && c.cache_bytes < g.sub_block_size)
    return {Errc::kInvalid, "cache_bytes must be 0 (off) or hold at least one sub-block (" +
                                std::to_string(g.sub_block_size) + " bytes)"};
  g.cache_slots = static_cast<uint32_t>(c.cache_bytes / g.sub_block_size);
  if (c.delta_store_bytes > kMaxDeltaStoreBytes)
    return {Errc::kInvalid, "delta_store_bytes " + std::to_string(c.delta_store_bytes) +
                                " above the limit of " + std::to_string(kMaxDeltaStoreBytes)};
  if (c.delta_store_bytes != 0 && c.delta_store_bytes < kPageSize)
    return {Errc::kInvalid, "delta_store_bytes must be 0 (off) or hold at least one page (4096 bytes)"};
  g.delta_slots = static_cast<uint32_t>(c.delta_store_bytes / kPageSize);
  if (c.max_records == 0 || c.max_records > kMaxRecordsLimit)
    return {Errc::kInvalid, "max_records must be 1.." + std::to_string(kMaxRecordsLimit)};
  if (c.zstd_level < -7 || c.zstd_level > 19)
    return {Errc::kInvalid, "zstd_level must be -7..19 (0 = off), not " + std::to_string(c.zstd_level)};
  if (c.initial_epoch == 0) return {Errc::kInvalid, "initial_epoch must be >= 1"};
  return g;
}

}  // namespace tideway::wan::codec

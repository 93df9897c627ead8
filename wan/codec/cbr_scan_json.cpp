#include "wan/codec/cbr_scan_json.h"

namespace tideway::wan::codec {

nlohmann::json to_json(const CodecStats& s) {
  return nlohmann::json{
      {"batches", s.batches},
      {"records", s.records},
      {"records_by_encoding",
       {{"zero", s.zero_records},
        {"raw", s.raw_records},
        {"cbr", s.cbr_records},
        {"delta", s.delta_records},
        {"mixed", s.mixed_records}}},
      {"sub_blocks",
       {{"literal", s.sub_literal}, {"hit", s.sub_hit}, {"delta", s.sub_delta}, {"unchanged", s.sub_unchanged}}},
      {"hash_collisions", s.hash_collisions},
      {"page_bytes", s.page_bytes},
      {"wire_bytes", s.wire_bytes},
      {"ratio", reduction_ratio(s)},
      {"literal_bytes", s.literal_bytes},
      {"zstd", {{"chunks", s.zstd_chunks}, {"in", s.zstd_in}, {"out", s.zstd_out}, {"skipped", s.zstd_skipped},
                {"not_smaller", s.zstd_not_smaller}}},
      {"cpu_seconds", static_cast<double>(s.cpu_ns) / 1e9},
      {"resets", s.resets},
      {"rejected", s.rejected},
  };
}

nlohmann::json to_json(const ScanReport& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.rows) {
    rows.push_back({{"sub_blocks", row.sub_blocks},
                    {"cache_bytes", row.cache_bytes},
                    {"duplicate_sub_blocks", row.stats.sub_hit},
                    {"duplicate_bytes", row.duplicate_bytes()},
                    {"bytes_in", row.stats.page_bytes},
                    {"bytes_out", row.stats.wire_bytes},
                    {"ratio", reduction_ratio(row.stats)},
                    {"stats", to_json(row.stats)}});
  }
  return nlohmann::json{{"image", r.image},
                        {"image_bytes", r.image_bytes},
                        {"pages", r.pages},
                        {"zero_pages", r.zero_pages},
                        {"zero_bytes", r.zero_pages * 4096},
                        {"tail_bytes", r.tail_bytes},
                        {"seconds", r.seconds},
                        {"rows", rows}};
}

}  // namespace tideway::wan::codec

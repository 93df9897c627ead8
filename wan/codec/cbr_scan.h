// Offline scan: what the codec would send for a disk or memory image, like
// the paper's offline disk tool (seeds/004 section 6.5.5). The image is read
// once, in page order, and every configuration (sub-blocks per page x cache
// size) runs the real encoder over it with its output discarded, so the
// numbers are exactly what the codec would put on the wire. Page deltas are
// off (each address is sent once, so they cannot help).
// `tideway cbr-scan` and `tideway-cbr-scan` both call scan_image().
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "proto/result.h"
#include "wan/codec/codec_stats.h"

namespace tideway::wan::codec {

struct ScanOptions {
  std::vector<uint64_t> cache_bytes = {100ull << 20, 1ull << 30};  // the paper's 100 MB and 1 GB
  std::vector<uint32_t> sub_blocks = {1, 2, 4, 8};
  int zstd_level = 1;  // 0: CBR and zero pages only
  uint32_t batch_records = 256;
  // Called with (bytes scanned, image bytes) about every 64 MiB and at the end.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct ScanRow {
  uint32_t sub_blocks = 0;
  uint64_t cache_bytes = 0;
  CodecStats stats;  // the encoder's counters: sub_hit = duplicate sub-blocks
  uint64_t duplicate_bytes() const { return stats.sub_hit * (4096 / sub_blocks); }
};

struct ScanReport {
  std::string image;
  uint64_t image_bytes = 0;
  uint64_t pages = 0;       // 4 KiB pages, the last one zero-padded if partial
  uint64_t zero_pages = 0;
  uint64_t tail_bytes = 0;  // bytes of a partial last page (0 if none)
  double seconds = 0;       // wall time of the scan
  std::vector<ScanRow> rows;  // one per (sub_blocks, cache_bytes), in option order
};

// Scans the file or block device at `path`. Errors: kSystem (cannot open or
// read, with the reason), kInvalid (bad options, or a directory).
proto::Result<ScanReport> scan_image(const std::string& path, const ScanOptions& options = {});
// The same over bytes in memory (tests; `name` goes into the report).
proto::Result<ScanReport> scan_bytes(std::span<const uint8_t> image, const std::string& name,
                                     const ScanOptions& options = {});

// Human-readable table.
std::string format_report(const ScanReport& report);

}  // namespace tideway::wan::codec

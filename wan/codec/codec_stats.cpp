#include "wan/codec/codec_stats.h"

#include <time.h>

#include <cstdio>

namespace tideway::wan::codec {

double reduction_ratio(const CodecStats& s) {
  if (s.wire_bytes == 0) return 1.0;
  return static_cast<double>(s.page_bytes) / static_cast<double>(s.wire_bytes);
}

std::string to_string(const CodecStats& s) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "batches=%llu records=%llu zero=%llu raw=%llu cbr=%llu delta=%llu mixed=%llu "
                "sub_literal=%llu sub_hit=%llu sub_delta=%llu sub_unchanged=%llu collisions=%llu "
                "page_bytes=%llu wire_bytes=%llu ratio=%.3f zstd_chunks=%llu cpu_ms=%.1f",
                (unsigned long long)s.batches, (unsigned long long)s.records,
                (unsigned long long)s.zero_records, (unsigned long long)s.raw_records,
                (unsigned long long)s.cbr_records, (unsigned long long)s.delta_records,
                (unsigned long long)s.mixed_records, (unsigned long long)s.sub_literal,
                (unsigned long long)s.sub_hit, (unsigned long long)s.sub_delta,
                (unsigned long long)s.sub_unchanged, (unsigned long long)s.hash_collisions,
                (unsigned long long)s.page_bytes, (unsigned long long)s.wire_bytes, reduction_ratio(s),
                (unsigned long long)s.zstd_chunks, static_cast<double>(s.cpu_ns) / 1e6);
  return buf;
}

uint64_t thread_cpu_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace tideway::wan::codec

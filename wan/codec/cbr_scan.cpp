#include "wan/codec/cbr_scan.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>

#include "wan/codec/encoder.h"

namespace tideway::wan::codec {

using proto::Errc;

namespace {

constexpr uint64_t kProgressEvery = 64ull << 20;

// Reads up to n bytes at offset into buf; returns the count (0 = end).
using Reader = std::function<proto::Result<size_t>(uint64_t offset, uint8_t* buf, size_t n)>;

proto::Result<ScanReport> scan_source(const std::string& name, uint64_t size, const Reader& read,
                                      const ScanOptions& options) {
  if (options.cache_bytes.empty() || options.sub_blocks.empty())
    return {Errc::kInvalid, "scan needs at least one cache size and one sub-block count"};
  if (options.batch_records == 0 || options.batch_records > kMaxRecordsLimit)
    return {Errc::kInvalid, "batch_records must be 1.." + std::to_string(kMaxRecordsLimit)};
  ScanReport report;
  report.image = name;
  report.image_bytes = size;
  std::vector<std::unique_ptr<Encoder>> encoders;
  for (uint32_t n : options.sub_blocks) {
    for (uint64_t cache : options.cache_bytes) {
      CodecConfig c;
      c.sub_blocks = n;
      c.cache_bytes = cache;
      c.delta_store_bytes = 0;
      c.zstd_level = options.zstd_level;
      c.max_records = options.batch_records;
      auto e = Encoder::create(c);
      if (!e) return e.error();
      encoders.push_back(std::move(*e));
      report.rows.push_back(ScanRow{n, cache, {}});
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  const size_t buf_bytes = size_t{options.batch_records} * kPageSize;
  auto buf = std::make_unique<uint8_t[]>(buf_bytes);
  std::vector<PageRef> pages;
  pages.reserve(options.batch_records);
  std::vector<uint8_t> out;
  uint64_t done = 0;
  uint64_t next_progress = kProgressEvery;
  while (done < size) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf_bytes, size - done));
    size_t got = 0;
    while (got < want) {
      auto r = read(done + got, buf.get() + got, want - got);
      if (!r) return r.error();
      if (*r == 0) break;  // shrank while we read: scan what we have
      got += *r;
    }
    if (got == 0) break;
    if (got % kPageSize != 0) {
      report.tail_bytes = got % kPageSize;
      const size_t pad = kPageSize - report.tail_bytes;
      std::memset(buf.get() + got, 0, pad);
      got += pad;
    }
    pages.clear();
    for (size_t off = 0; off < got; off += kPageSize)
      pages.push_back(PageRef{done + off, std::span<const uint8_t>(buf.get() + off, kPageSize)});
    for (auto& e : encoders) {
      auto r = e->encode(pages, out);
      if (!r) return r.error();
    }
    report.pages += pages.size();
    done += std::min<uint64_t>(got, size - done);
    if (options.progress && done >= next_progress) {
      options.progress(done, size);
      next_progress = done + kProgressEvery;
    }
    if (report.tail_bytes != 0) break;
  }
  if (options.progress) options.progress(done, size);
  for (size_t i = 0; i < encoders.size(); ++i) report.rows[i].stats = encoders[i]->stats();
  report.zero_pages = report.rows.front().stats.zero_records;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace

proto::Result<ScanReport> scan_image(const std::string& path, const ScanOptions& options) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {Errc::kSystem, "cannot open " + path + ": " + std::strerror(errno)};
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return {Errc::kSystem, "cannot stat " + path + ": " + std::strerror(errno)};
  if (S_ISDIR(st.st_mode)) return {Errc::kInvalid, path + " is a directory, not an image"};
  // lseek gives the size of regular files and block devices alike.
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) return {Errc::kSystem, "cannot find the size of " + path + ": " + std::strerror(errno)};
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  const Reader read = [&](uint64_t offset, uint8_t* buf, size_t n) -> proto::Result<size_t> {
    for (;;) {
      const ssize_t r = ::pread(fd, buf, n, static_cast<off_t>(offset));
      if (r >= 0) return static_cast<size_t>(r);
      if (errno != EINTR)
        return proto::Result<size_t>(Errc::kSystem, "cannot read " + path + " at offset " + std::to_string(offset) +
                                                        ": " + std::strerror(errno));
    }
  };
  return scan_source(path, static_cast<uint64_t>(end), read, options);
}

proto::Result<ScanReport> scan_bytes(std::span<const uint8_t> image, const std::string& name,
                                     const ScanOptions& options) {
  const Reader read = [&](uint64_t offset, uint8_t* buf, size_t n) -> proto::Result<size_t> {
    const size_t k = static_cast<size_t>(std::min<uint64_t>(n, image.size() - offset));
    std::memcpy(buf, image.data() + offset, k);
    return k;
  };
  return scan_source(name, image.size(), read, options);
}

std::string format_report(const ScanReport& r) {
  std::string s;
  char line[256];
  const double mib = 1024.0 * 1024.0;
  std::snprintf(line, sizeof line, "image %s: %.1f MiB, %llu pages, %llu zero (%.1f%%)%s\n", r.image.c_str(),
                static_cast<double>(r.image_bytes) / mib, static_cast<unsigned long long>(r.pages),
                static_cast<unsigned long long>(r.zero_pages),
                r.pages ? 100.0 * static_cast<double>(r.zero_pages) / static_cast<double>(r.pages) : 0.0,
                r.tail_bytes ? ", last page partial (zero-padded)" : "");
  s += line;
  std::snprintf(line, sizeof line, "%-10s %-10s %14s %12s %12s %12s %8s\n", "sub-blocks", "cache MiB", "dup sub-blocks",
                "dup MiB", "in MiB", "out MiB", "ratio");
  s += line;
  for (const auto& row : r.rows) {
    std::snprintf(line, sizeof line, "%-10u %-10.0f %14llu %12.1f %12.1f %12.1f %8.2f\n", row.sub_blocks,
                  static_cast<double>(row.cache_bytes) / mib, static_cast<unsigned long long>(row.stats.sub_hit),
                  static_cast<double>(row.duplicate_bytes()) / mib, static_cast<double>(row.stats.page_bytes) / mib,
                  static_cast<double>(row.stats.wire_bytes) / mib, reduction_ratio(row.stats));
    s += line;
  }
  std::snprintf(line, sizeof line, "scanned in %.1f s\n", r.seconds);
  s += line;
  return s;
}

}  // namespace tideway::wan::codec

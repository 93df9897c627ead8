#include "replicator/journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <spdlog/spdlog.h>

namespace tideway::replicator {

using proto::Errc;
using proto::Error;

namespace {

Error sys_error(const std::string& what) { return Error{Errc::kSystem, what + ": " + std::strerror(errno)}; }

// Segment numbers from file names; anything else in the directory is left alone.
bool parse_segment_name(const char* name, uint64_t& number) {
  size_t n = std::strlen(name);
  if (n != 20 || std::strcmp(name + 16, ".twj") != 0) return false;
  number = 0;
  for (size_t i = 0; i < 16; ++i) {
    char c = name[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    number = number * 16 + static_cast<uint64_t>(d);
  }
  return true;
}

proto::Result<std::vector<uint8_t>> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("open " + path);
  std::vector<uint8_t> buf;
  uint8_t chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      Error e = sys_error("read " + path);
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    buf.insert(buf.end(), chunk, chunk + n);
  }
  ::close(fd);
  return buf;
}

}  // namespace

std::string Journal::segment_path(uint64_t number) const {
  char name[32];
  std::snprintf(name, sizeof name, "%016" PRIx64 ".twj", number);
  return opts_.dir + "/" + name;
}

proto::Result<std::unique_ptr<Journal>> Journal::open(const JournalOptions& opts) {
  if (opts.dir.empty()) return Error{Errc::kInvalid, "journal: no directory given"};
  if (::mkdir(opts.dir.c_str(), 0700) != 0 && errno != EEXIST) return sys_error("mkdir " + opts.dir);
  std::unique_ptr<Journal> j(new Journal(opts));
  j->dir_fd_ = ::open(opts.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (j->dir_fd_ < 0) return sys_error("open " + opts.dir);
  if (auto r = j->recover(); !r) return r.error();
  return j;
}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
  if (dir_fd_ >= 0) ::close(dir_fd_);
}

proto::Result<void> Journal::recover() {
  DIR* d = ::opendir(opts_.dir.c_str());
  if (!d) return sys_error("opendir " + opts_.dir);
  std::vector<uint64_t> numbers;
  while (dirent* e = ::readdir(d)) {
    uint64_t n = 0;
    if (parse_segment_name(e->d_name, n)) numbers.push_back(n);
  }
  ::closedir(d);
  std::sort(numbers.begin(), numbers.end());

  // Validate first, change nothing until every segment checked out.
  JournalRecovery rec;
  std::map<uint64_t, uint64_t> sizes;
  uint64_t cut_at = 0;
  for (size_t i = 0; i < numbers.size(); ++i) {
    const bool last = i + 1 == numbers.size();
    const std::string path = segment_path(numbers[i]);
    auto data = read_file(path);
    if (!data) return data.error();
    const auto& buf = data.value();
    size_t off = 0;
    while (off < buf.size()) {
      auto r = proto::decode_journal_record({buf.data() + off, buf.size() - off});
      if (!r) {
        if (!last)
          return Error{Errc::kBadChecksum, "journal corrupt: " + path + " at offset " + std::to_string(off) +
                                               ": " + r.error().detail + " (not the last segment; refusing to start)"};
        rec.torn_bytes = buf.size() - off;
        rec.torn_reason = r.error().detail + " at " + path + " offset " + std::to_string(off);
        break;
      }
      const auto& w = r->write;
      auto [it, fresh] = rec.last_seq.try_emplace(w.writer, w.seq);
      if (!fresh) {
        if (w.seq <= it->second)
          return Error{Errc::kMalformed, "journal corrupt: " + path + " at offset " + std::to_string(off) +
                                             ": writer " + std::to_string(w.writer) + " seq " +
                                             std::to_string(w.seq) + " after " + std::to_string(it->second)};
        it->second = w.seq;
      }
      if (rec.records == 0) rec.first = {numbers[i], off};
      ++rec.records;
      rec.bytes += r->size;
      off += r->size;
    }
    sizes[numbers[i]] = off;
    if (last) cut_at = off;
  }
  rec.segments = numbers.size();

  if (numbers.empty()) {
    if (auto r = start_segment(1); !r) return r.error();
    rec.first = rec.end = {1, 0};
    recovery_ = rec;
    return {};
  }
  const uint64_t last = numbers.back();
  fd_ = ::open(segment_path(last).c_str(), O_WRONLY | O_CLOEXEC);
  if (fd_ < 0) return sys_error("open " + segment_path(last));
  if (rec.torn_bytes > 0) {
    spdlog::warn("journal: dropping a torn tail of {} bytes: {}", rec.torn_bytes, rec.torn_reason);
    if (::ftruncate(fd_, static_cast<off_t>(cut_at)) != 0 || ::fdatasync(fd_) != 0)
      return sys_error("truncate " + segment_path(last));
  }
  if (::lseek(fd_, static_cast<off_t>(cut_at), SEEK_SET) < 0) return sys_error("seek " + segment_path(last));
  segments_ = std::move(sizes);
  end_ = {last, cut_at};
  rec.end = end_;
  if (rec.records == 0) rec.first = end_;
  recovery_ = rec;
  return {};
}

proto::Result<void> Journal::start_segment(uint64_t number) {
  const std::string path = segment_path(number);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return sys_error("create " + path);
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  dir_dirty_ = true;
  std::lock_guard lock(mu_);
  segments_[number] = 0;
  end_ = {number, 0};
  return {};
}

proto::Result<JournalPosition> Journal::append(std::span<const uint8_t> records) {
  JournalPosition pos = end();
  if (pos.offset >= opts_.segment_bytes) {
    if (auto r = start_segment(pos.segment + 1); !r) return r.error();
    pos = end();
  }
  size_t done = 0;
  while (done < records.size()) {
    ssize_t n = ::write(fd_, records.data() + done, records.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      // The file may now end inside a record: recovery will cut it, and
      // nothing after it was acknowledged.
      return sys_error("journal write " + segment_path(pos.segment));
    }
    done += static_cast<size_t>(n);
  }
  std::lock_guard lock(mu_);
  end_.offset += records.size();
  segments_[end_.segment] = end_.offset;
  return end_;
}

proto::Result<void> Journal::sync() {
  if (::fdatasync(fd_) != 0) return sys_error("journal fdatasync");
  if (dir_dirty_) {
    if (::fsync(dir_fd_) != 0) return sys_error("journal dir fsync");
    dir_dirty_ = false;
  }
  return {};
}

proto::Result<JournalPosition> Journal::read(JournalPosition from, JournalPosition limit,
                                             const Visitor& fn) const {
  JournalPosition pos = from;
  std::vector<uint8_t> buf;
  while (pos < limit) {
    uint64_t seg_end = 0;
    {
      std::lock_guard lock(mu_);
      auto it = segments_.lower_bound(pos.segment);
      if (it == segments_.end()) break;
      if (it->first != pos.segment) pos = {it->first, 0};  // skip to the next segment
      seg_end = it->second;
    }
    if (pos.segment == limit.segment) seg_end = std::min(seg_end, limit.offset);
    if (pos.offset >= seg_end) {
      if (pos.segment >= limit.segment) break;
      pos = {pos.segment + 1, 0};
      continue;
    }
    const std::string path = segment_path(pos.segment);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sys_error("open " + path);
    // Read in chunks of whole records (at least one maximal record).
    while (pos.offset < seg_end) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(seg_end - pos.offset, 8ull << 20));
      want = std::max(want, std::min<size_t>(proto::kJournalMaxRecord, seg_end - pos.offset));
      buf.resize(want);
      ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(pos.offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        Error e = sys_error("read " + path);
        ::close(fd);
        return e;
      }
      if (n == 0) {
        ::close(fd);
        return Error{Errc::kTruncated, "journal " + path + " ends before offset " + std::to_string(seg_end)};
      }
      size_t off = 0;
      while (off < static_cast<size_t>(n)) {
        auto r = proto::decode_journal_record({buf.data() + off, static_cast<size_t>(n) - off});
        if (!r) {
          if (r.error().code == Errc::kTruncated && off > 0) break;  // next chunk
          ::close(fd);
          return Error{r.error().code, "journal " + path + " offset " + std::to_string(pos.offset) + ": " +
                                           r.error().detail};
        }
        if (!fn(r.value(), pos)) {
          ::close(fd);
          return pos;
        }
        off += r->size;
        pos.offset += r->size;
      }
    }
    ::close(fd);
  }
  return pos;
}

void Journal::trim_before(uint64_t segment) {
  std::vector<uint64_t> doomed;
  {
    std::lock_guard lock(mu_);
    for (auto it = segments_.begin(); it != segments_.end() && it->first < segment;) {
      if (std::next(it) == segments_.end()) break;  // never the last
      doomed.push_back(it->first);
      it = segments_.erase(it);
    }
  }
  for (uint64_t n : doomed) {
    if (::unlink(segment_path(n).c_str()) != 0)
      spdlog::warn("journal: cannot delete {}: {}", segment_path(n), std::strerror(errno));
  }
}

JournalPosition Journal::end() const {
  std::lock_guard lock(mu_);
  return end_;
}

uint64_t Journal::disk_bytes() const {
  std::lock_guard lock(mu_);
  uint64_t b = 0;
  for (auto& [n, s] : segments_) b += s;
  return b;
}

uint64_t Journal::segment_count() const {
  std::lock_guard lock(mu_);
  return segments_.size();
}

}  // namespace tideway::replicator

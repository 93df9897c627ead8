// The backup journal: an append-only log of replicated writes in segment
// files, made durable (fdatasync) before anything in it is acknowledged.
//
// Files: DIR/<segment, 16 hex digits>.twj, each a sequence of records
// (proto/journal_record.h); a record never spans two segments. A new
// segment starts when a write batch begins with the current one past
// `segment_bytes`, so every segment but the last is complete and synced.
//
// Recovery (open): every segment is scanned and checked. In the last
// segment, the first invalid or incomplete record and everything after it
// is a torn tail - never acknowledged, since acks follow fdatasync - and is
// cut off. Anything invalid in an earlier segment is corruption: open()
// fails with the segment and offset, and changes nothing.
//
// Threading: one writer thread calls append/sync; any thread may read
// (Reader) or trim. The list of segments is guarded by a mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "proto/journal_record.h"
#include "proto/result.h"

namespace tideway::replicator {

struct JournalPosition {
  uint64_t segment = 0;
  uint64_t offset = 0;
  auto operator<=>(const JournalPosition&) const = default;
};

struct JournalOptions {
  std::string dir;
  uint64_t segment_bytes = 64ull << 20;
};

struct JournalRecovery {
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;                    // valid record bytes kept
  uint64_t torn_bytes = 0;               // cut off the last segment
  std::string torn_reason;               // why the tail was cut (empty: clean)
  std::map<uint32_t, uint64_t> last_seq;  // per writer: highest seq kept
  JournalPosition first, end;            // first record, end of the last
};

class Journal {
 public:
  // Creates DIR if missing, recovers what is there.
  static proto::Result<std::unique_ptr<Journal>> open(const JournalOptions& opts);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  const JournalRecovery& recovery() const { return recovery_; }

  // --- writer thread ---
  // Appends whole encoded records (not yet durable). Returns the end
  // position after them.
  proto::Result<JournalPosition> append(std::span<const uint8_t> records);
  // Makes everything appended so far durable.
  proto::Result<void> sync();

  // --- any thread ---
  // Calls `fn` for each record in [from, limit), in order, and returns the
  // position after the last one visited. `fn` returning false stops early
  // (the position is then that of the record it refused). A record that
  // fails to decode below `limit` is corruption: an error.
  using Visitor = std::function<bool(const proto::JournalRecord&, JournalPosition at)>;
  proto::Result<JournalPosition> read(JournalPosition from, JournalPosition limit, const Visitor& fn) const;

  // Deletes every segment numbered below `segment` (never the last).
  void trim_before(uint64_t segment);

  // The position after the last appended record.
  JournalPosition end() const;
  uint64_t disk_bytes() const;
  uint64_t segment_count() const;
  const std::string& dir() const { return opts_.dir; }

 private:
  explicit Journal(JournalOptions opts) : opts_(std::move(opts)) {}
  proto::Result<void> recover();
  proto::Result<void> start_segment(uint64_t number);
  std::string segment_path(uint64_t number) const;

  const JournalOptions opts_;
  JournalRecovery recovery_;
  int dir_fd_ = -1;
  int fd_ = -1;                 // the last segment, open for appending
  bool dir_dirty_ = false;      // a new segment's name still needs a dir fsync
  mutable std::mutex mu_;       // guards segments_ and end_
  std::map<uint64_t, uint64_t> segments_;  // number -> bytes
  JournalPosition end_;
};

}  // namespace tideway::replicator

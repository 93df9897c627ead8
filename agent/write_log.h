// A writer's replication state: the pending counter (writes issued), the
// committed counter (writes the backup acknowledged as durable), and the
// writes in between, retained until acked so they can be re-sent after a
// reconnect or a replicator restart.
//
// Threading: issue() and when_committed() are called from the taps' threads;
// next(), ack_through() and the like from the replication link's io thread.
// One mutex guards the retention; the two counters are also atomics so the
// packet holder can read them per packet without taking it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "agent/ack_window.h"
#include "agent/block_target.h"
#include "proto/messages.h"
#include "wan/clock.h"

namespace tideway::agent {

struct RetainedWrite {
  uint64_t seq = 0;
  uint32_t volume = 0;
  proto::WriteOp op = proto::WriteOp::kWrite;
  uint32_t flags = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  std::vector<uint8_t> data;  // kWrite only
  wan::Nanos issued{0};  // clock time of issue
};

struct WriteLogStats {
  uint64_t pending = 0, committed = 0;
  uint64_t unacked_writes = 0, unacked_bytes = 0;
  double oldest_unacked_ms = 0;  // RPO exposure
  uint64_t issued_total = 0, acked_total = 0;
  uint64_t blocked_total = 0;    // issues that waited for room
};

class WriteLog {
 public:
  // `max_retained_bytes`: past this, issue() blocks until acks free room -
  // the guest slows down rather than the agent running out of memory.
  WriteLog(uint32_t writer, uint64_t max_retained_bytes, wan::Clock& clock);

  uint32_t writer() const { return writer_; }

  // --- taps' threads ---
  // Assigns the next seq (the pending counter) to the write and retains it.
  // `data` is copied for kWrite. Returns 0 if the log was closed.
  uint64_t issue(uint32_t volume, proto::WriteOp op, uint32_t flags, uint64_t offset, uint32_t length,
                 std::span<const uint8_t> data);
  // Runs `fn(0)` once committed >= seq (at once if already), or `fn(EIO)` if
  // the log closes first. May run on the caller's thread or the io thread.
  void when_committed(uint64_t seq, IoDone fn);

  uint64_t pending() const { return pending_.load(std::memory_order_acquire); }
  uint64_t committed() const { return committed_.load(std::memory_order_acquire); }

  // --- io thread ---
  // The retained write with the smallest seq >= `seq`, or null.
  std::shared_ptr<const RetainedWrite> next(uint64_t seq) const;
  // The backup holds every write <= seq. Frees them, runs commit waiters.
  // Returns the committed counter.
  uint64_t ack_through(uint64_t seq);
  // Called when new writes are issued (from the issuing thread): the link
  // posts a wakeup to its io thread.
  void on_issue(std::function<void()> fn) { on_issue_ = std::move(fn); }
  // The counters start at `seq` (a fresh agent attaching to a backup that
  // already holds writes up to seq). Only while nothing is retained.
  void start_at(uint64_t seq);

  // Wakes blocked issuers and fails waiters: the protection is going away.
  void close();
  WriteLogStats stats() const;

 private:
  const uint32_t writer_;
  const uint64_t max_retained_;
  wan::Clock& clock_;
  std::atomic<uint64_t> pending_{0}, committed_{0};
  mutable std::mutex mu_;
  std::condition_variable room_cv_;
  std::deque<std::shared_ptr<const RetainedWrite>> retained_;  // ascending seq
  uint64_t retained_bytes_ = 0;
  AckWindow window_;
  std::multimap<uint64_t, IoDone> waiters_;
  bool closed_ = false;
  uint64_t issued_total_ = 0, acked_total_ = 0, blocked_total_ = 0;
  std::function<void()> on_issue_;
};

}  // namespace tideway::agent

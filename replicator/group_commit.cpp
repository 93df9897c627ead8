#include "replicator/group_commit.h"

#include <cassert>
#include <chrono>
#include <spdlog/spdlog.h>

#include "proto/journal_record.h"

namespace tideway::replicator {

GroupCommit::GroupCommit(Journal& journal, uint64_t max_pending_bytes, OnDurable on_durable)
    : journal_(journal), max_pending_(max_pending_bytes), on_durable_(std::move(on_durable)) {
  assert(max_pending_ >= proto::kJournalMaxRecord);
  thread_ = std::thread([this] {
    run();
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    done_cv_.notify_all();
  });
}

GroupCommit::~GroupCommit() { stop(); }

void GroupCommit::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  room_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool GroupCommit::submit(const proto::ReplWrite& w) {
  std::unique_lock lock(mu_);
  room_cv_.wait(lock, [&] {
    return stop_ || !stats_.error.empty() || pending_.size() + proto::journal_record_size(w) <= max_pending_;
  });
  if (stop_ || !stats_.error.empty()) return false;
  proto::append_journal_record(w, pending_);
  auto& last = pending_last_[w.writer];
  assert(w.seq > last);  // the intake drops duplicates and reordering
  last = w.seq;
  ++pending_records_;
  ++submitted_;
  stats_.pending_bytes = pending_.size();
  lock.unlock();
  work_cv_.notify_one();
  return true;
}

void GroupCommit::run() {
  std::vector<uint8_t> batch;
  for (;;) {
    DurableBatch done;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      // Records already handed over are journaled even when stopping: the
      // agent may not have them acked, but they are safe to keep.
      if (pending_.empty()) return;
      batch.swap(pending_);
      pending_.clear();
      done.last_seq.swap(pending_last_);
      done.records = pending_records_;
      pending_records_ = 0;
      stats_.pending_bytes = 0;
    }
    room_cv_.notify_all();
    const auto t0 = std::chrono::steady_clock::now();
    auto end = journal_.append(batch);
    proto::Result<void> synced = end ? journal_.sync() : proto::Result<void>(end.error());
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!end || !synced) {
      std::string err = !end ? end.error().detail : synced.error().detail;
      spdlog::error("journal failed, intake stops (nothing more will be acknowledged): {}", err);
      std::lock_guard lock(mu_);
      stats_.error = err;
      room_cv_.notify_all();
      done_cv_.notify_all();
      return;
    }
    done.end = end.value();
    {
      std::lock_guard lock(mu_);
      ++stats_.batches;
      stats_.records += done.records;
      stats_.bytes += batch.size();
      stats_.last_sync_ms = ms;
    }
    on_durable_(done);
    {
      std::lock_guard lock(mu_);
      completed_ += done.records;
    }
    done_cv_.notify_all();
  }
}

bool GroupCommit::flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = submitted_;
  done_cv_.wait(lock, [&] { return completed_ >= target || !stats_.error.empty() || finished_; });
  return completed_ >= target;
}

GroupCommitStats GroupCommit::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace tideway::replicator

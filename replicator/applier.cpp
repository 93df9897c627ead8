#include "replicator/applier.h"

#include "wan/file_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <spdlog/spdlog.h>

namespace tideway::replicator {


Applier::Applier(Journal& journal, VolumeRegistry& volumes, ApplierOptions opts, Checkpoint start)
    : journal_(journal), volumes_(volumes), opts_(std::move(opts)) {
  stats_.checkpoint = start;
  // A checkpoint older than the journal's first segment (trimmed after the
  // checkpoint was written) starts at the first record still there.
  stats_.applied = std::max(start.applied, journal_.recovery().first);
  stats_.target = journal_.recovery().end;
  applied_seq_ = start.applied_seq;
  last_sync_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { run(); });
}

Applier::~Applier() { stop(); }

void Applier::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  drained_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Applier::durable_to(JournalPosition end) {
  {
    std::lock_guard lock(mu_);
    if (end > stats_.target) stats_.target = end;
  }
  cv_.notify_one();
}

bool Applier::drain() {
  std::unique_lock lock(mu_);
  const uint64_t ticket = ++drain_requests_;
  cv_.notify_one();
  drained_cv_.wait(lock, [&] { return drains_done_ >= ticket || stop_ || !stats_.error.empty(); });
  return stats_.error.empty() && drains_done_ >= ticket;
}

ApplierStats Applier::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

bool Applier::apply(const proto::JournalRecord& r) {
  const auto& w = r.write;
  BackupVolume* v = volumes_.find(w.writer, w.volume);
  std::string err;
  if (!v) {
    err = "journal has a write for unknown writer " + std::to_string(w.writer) + " volume " +
          std::to_string(w.volume);
  } else if (w.offset > v->size || w.length > v->size - w.offset) {
    err = "write beyond the end of \"" + v->name + "\"";
  } else {
    int e = w.op == proto::WriteOp::kWrite ? wan::pwrite_all(v->fd, w.data.data(), w.data.size(), w.offset)
                                           : wan::zero_range(v->fd, w.offset, w.length);
    if (e != 0) err = "apply to " + v->path + ": " + std::strerror(e);
  }
  if (!err.empty()) {
    spdlog::error("applier stopped: {}", err);
    std::lock_guard lock(mu_);
    stats_.error = err;
    return false;
  }
  dirty_fds_.insert(v->fd);
  applied_seq_[w.writer] = w.seq;
  bytes_since_sync_ += w.length;
  return true;
}

bool Applier::sync_and_checkpoint() {
  for (int fd : dirty_fds_) {
    if (::fdatasync(fd) != 0) {
      std::lock_guard lock(mu_);
      stats_.error = std::string("fdatasync backup volume: ") + std::strerror(errno);
      spdlog::error("applier stopped: {}", stats_.error);
      return false;
    }
  }
  dirty_fds_.clear();
  Checkpoint c;
  {
    std::lock_guard lock(mu_);
    c.applied = stats_.applied;
  }
  c.applied_seq = applied_seq_;
  if (auto r = save_checkpoint(opts_.checkpoint_path, c); !r) {
    std::lock_guard lock(mu_);
    stats_.error = r.error().detail;
    spdlog::error("applier stopped: {}", stats_.error);
    return false;
  }
  journal_.trim_before(c.applied.segment);
  bytes_since_sync_ = 0;
  last_sync_ = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  stats_.checkpoint = c;
  return true;
}

void Applier::run() {
  for (;;) {
    JournalPosition from, to;
    uint64_t drain_ticket = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, opts_.sync_interval, [&] {
        return stop_ || stats_.applied < stats_.target || drain_requests_ > drains_done_;
      });
      if (stop_ || !stats_.error.empty()) return;
      if (stats_.applied < stats_.target && drain_requests_ == drains_done_)
        cv_.wait_for(lock, opts_.apply_delay, [&] { return stop_ || drain_requests_ > drains_done_; });
      if (stop_) return;
      from = stats_.applied;
      to = stats_.target;
      drain_ticket = drain_requests_;
    }
    if (from < to) {
      uint64_t n = 0, b = 0;
      bool failed = false;
      auto end = journal_.read(from, to, [&](const proto::JournalRecord& r, JournalPosition) {
        if (!apply(r)) {
          failed = true;
          return false;
        }
        ++n;
        b += r.size;
        return true;
      });
      if (!end || failed) {
        std::lock_guard lock(mu_);
        if (!end) stats_.error = end.error().detail;
        spdlog::error("applier stopped: {}", stats_.error);
        drained_cv_.notify_all();
        return;
      }
      std::lock_guard lock(mu_);
      stats_.applied = end.value();
      stats_.records += n;
      stats_.bytes += b;
    }
    const bool due = bytes_since_sync_ >= opts_.sync_bytes ||
                     std::chrono::steady_clock::now() - last_sync_ >= opts_.sync_interval;
    bool drained = false;
    {
      std::lock_guard lock(mu_);
      drained = drain_ticket > drains_done_ && stats_.applied >= to;
    }
    if (due || drained) {
      bool dirty = !dirty_fds_.empty() || stats().checkpoint.applied != stats().applied;
      if (dirty && !sync_and_checkpoint()) {
        drained_cv_.notify_all();
        return;
      }
    }
    if (drained) {
      std::lock_guard lock(mu_);
      drains_done_ = drain_ticket;
      drained_cv_.notify_all();
    }
  }
}

}  // namespace tideway::replicator

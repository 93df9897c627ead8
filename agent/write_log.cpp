#include "agent/write_log.h"

#include <cassert>
#include <cerrno>

namespace tideway::agent {

WriteLog::WriteLog(uint32_t writer, uint64_t max_retained_bytes, wan::Clock& clock)
    : writer_(writer), max_retained_(max_retained_bytes), clock_(clock) {
  assert(max_retained_ >= proto::kMaxWriteLen);
}

uint64_t WriteLog::issue(uint32_t volume, proto::WriteOp op, uint32_t flags, uint64_t offset, uint32_t length,
                         std::span<const uint8_t> data) {
  assert(length > 0 && length <= proto::kMaxWriteLen);
  assert(op == proto::WriteOp::kWrite ? data.size() == length : data.empty());
  auto w = std::make_shared<RetainedWrite>();
  w->volume = volume;
  w->op = op;
  w->flags = flags;
  w->offset = offset;
  w->length = length;
  w->data.assign(data.begin(), data.end());
  uint64_t seq = 0;
  {
    std::unique_lock lock(mu_);
    if (retained_bytes_ + w->data.size() > max_retained_ && !closed_) {
      ++blocked_total_;
      room_cv_.wait(lock, [&] { return closed_ || retained_bytes_ + w->data.size() <= max_retained_; });
    }
    if (closed_) return 0;
    seq = pending_.load(std::memory_order_relaxed) + 1;
    w->seq = seq;
    w->issued = clock_.now();
    retained_bytes_ += w->data.size();
    retained_.push_back(std::move(w));
    ++issued_total_;
    // Published after the write is retained, so the shipper finds it.
    pending_.store(seq, std::memory_order_release);
  }
  if (on_issue_) on_issue_();
  return seq;
}

void WriteLog::when_committed(uint64_t seq, IoDone fn) {
  {
    std::lock_guard lock(mu_);
    if (!closed_ && seq > committed_.load(std::memory_order_relaxed)) {
      waiters_.emplace(seq, std::move(fn));
      return;
    }
  }
  fn(seq <= committed() ? 0 : EIO);
}

std::shared_ptr<const RetainedWrite> WriteLog::next(uint64_t seq) const {
  std::lock_guard lock(mu_);
  if (retained_.empty() || seq > retained_.back()->seq) return nullptr;
  // Seqs in the retention are contiguous: index directly.
  const uint64_t first = retained_.front()->seq;
  const size_t i = seq <= first ? 0 : static_cast<size_t>(seq - first);
  assert(retained_[i]->seq == std::max(seq, first));
  return retained_[i];
}

uint64_t WriteLog::ack_through(uint64_t seq) {
  std::vector<IoDone> ready;
  uint64_t committed = 0;
  {
    std::lock_guard lock(mu_);
    // An ack beyond what we issued means the backup holds writes of a
    // previous life of this writer: never count them as ours.
    seq = std::min(seq, pending_.load(std::memory_order_relaxed));
    window_.ack_through(seq);
    committed = window_.committed();
    committed_.store(committed, std::memory_order_release);
    while (!retained_.empty() && retained_.front()->seq <= committed) {
      retained_bytes_ -= retained_.front()->data.size();
      retained_.pop_front();
      ++acked_total_;
    }
    auto end = waiters_.upper_bound(committed);
    for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
    waiters_.erase(waiters_.begin(), end);
  }
  room_cv_.notify_all();
  for (auto& fn : ready) fn(0);
  return committed;
}

void WriteLog::start_at(uint64_t seq) {
  std::lock_guard lock(mu_);
  assert(retained_.empty());
  window_.reset(seq);
  pending_.store(seq, std::memory_order_release);
  committed_.store(seq, std::memory_order_release);
}

void WriteLog::close() {
  std::multimap<uint64_t, IoDone> waiters;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    waiters.swap(waiters_);
  }
  room_cv_.notify_all();
  for (auto& [seq, fn] : waiters) fn(EIO);
}

WriteLogStats WriteLog::stats() const {
  std::lock_guard lock(mu_);
  WriteLogStats s;
  s.pending = pending();
  s.committed = committed();
  s.unacked_writes = retained_.size();
  s.unacked_bytes = retained_bytes_;
  if (!retained_.empty())
    s.oldest_unacked_ms = std::chrono::duration<double, std::milli>(clock_.now() - retained_.front()->issued).count();
  s.issued_total = issued_total_;
  s.acked_total = acked_total_;
  s.blocked_total = blocked_total_;
  return s;
}

}  // namespace tideway::agent

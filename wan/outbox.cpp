#include "wan/outbox.h"

#include <algorithm>
#include <cassert>


namespace tideway::wan {

const char* priority_name(Priority p) {
  switch (p) {
    case Priority::kControl: return "control";
    case Priority::kReplication: return "replication";
    case Priority::kMigration: return "migration";
    case Priority::kBulk: return "bulk";
  }
  return "?";
}

namespace {
// Heartbeats and acks are tiny and superseded by newer ones; a backlog larger
// than this means the link is down and old ones are worthless.
constexpr size_t kMaxControlBacklog = 256;
}  // namespace

std::vector<uint8_t> mark_resent(const std::vector<uint8_t>& frame) {
  std::vector<uint8_t> copy = frame;
  const uint16_t flags = static_cast<uint16_t>(copy[6] | (copy[7] << 8));
  proto::set_frame_flags(copy, flags | proto::kFlagResent);
  return copy;
}

Outbox::Outbox(Clock& clock, uint64_t link_bytes_per_sec, uint64_t link_burst_bytes,
               uint32_t max_frame_payload)
    : clock_(clock),
      // The burst covers at least 2 ms at the link rate: a timer that wakes
      // late must not cost throughput (at 1 Gbit/s, 64 KiB is only 0.5 ms).
      link_(link_bytes_per_sec == 0
                ? TokenBucket{}
                : TokenBucket{link_bytes_per_sec, std::max(link_burst_bytes, link_bytes_per_sec / 500),
                              clock.now()}),
      max_frame_payload_(max_frame_payload) {
  assert(max_frame_payload_ >= 1024 && max_frame_payload_ <= proto::kMaxPayload);
}

void Outbox::add_stream(const StreamConfig& cfg) {
  assert(cfg.id != proto::kControlStream);
  assert(!has_stream(cfg.id));
  Stream s;
  s.cfg = cfg;
  if (cfg.rate_bytes_per_sec != 0)
    s.bucket = TokenBucket{cfg.rate_bytes_per_sec, std::max<uint64_t>(cfg.rate_bytes_per_sec / 100, 16384),
                           clock_.now()};
  streams_.emplace(cfg.id, std::move(s));
  by_class_[static_cast<int>(cfg.priority)].push_back(cfg.id);
}

bool Outbox::enqueue(uint32_t stream, proto::MessageType type, std::span<const uint8_t> payload) {
  auto it = streams_.find(stream);
  assert(it != streams_.end());
  Stream& s = it->second;
  assert(payload.size() <= proto::kMaxPayload);
  if (s.retained > 0 && s.retained + payload.size() > s.cfg.max_retained_bytes) {
    ++stats_.refused_full;
    return false;
  }
  size_t off = 0;
  do {
    const size_t n = std::min<size_t>(max_frame_payload_, payload.size() - off);
    proto::FrameHeader h;
    h.type = type;
    h.stream = stream;
    h.seq = s.next_seq++;
    h.flags = off + n < payload.size() ? proto::kFlagMore : 0;
    auto bytes = std::make_shared<std::vector<uint8_t>>();
    proto::append_frame(*bytes, h, payload.subspan(off, n));
    s.retained += bytes->size();
    s.frames.push_back(Out{std::move(bytes), h.seq});
    off += n;
  } while (off < payload.size());
  ++stats_.messages_queued;
  return true;
}

void Outbox::enqueue_control(std::vector<uint8_t> frame) {
  if (control_.size() >= kMaxControlBacklog) control_.pop_front();
  control_.push_back(std::move(frame));
}

Outbox::Stream* Outbox::pick(Nanos now, Nanos* wait) {
  Nanos best_wait = Nanos::max();
  const bool link_ready = link_.ready(now);
  for (int c = 0; c < kPriorityCount; ++c) {
    auto& ids = by_class_[c];
    for (size_t k = 0; k < ids.size(); ++k) {
      const size_t idx = (rr_[c] + k) % ids.size();
      Stream& s = streams_.at(ids[idx]);
      if (s.unsent == s.frames.size()) continue;
      const bool exempt = s.cfg.priority == Priority::kControl;
      if (!s.bucket.ready(now)) {
        best_wait = std::min(best_wait, s.bucket.wait_time(now));
        continue;
      }
      if (!exempt && !link_ready) {
        best_wait = std::min(best_wait, link_.wait_time(now));
        continue;
      }
      rr_[c] = (idx + 1) % ids.size();
      return &s;
    }
  }
  *wait = best_wait == Nanos::max() ? Nanos{0} : best_wait;
  return nullptr;
}

Outbox::Batch Outbox::next_batch(size_t max_bytes, Nanos* wait) {
  Batch b;
  *wait = Nanos{0};
  while (!control_.empty()) {
    auto f = std::make_shared<const std::vector<uint8_t>>(std::move(control_.front()));
    control_.pop_front();
    link_.consume(f->size());
    b.bytes += f->size();
    b.frames.push_back(std::move(f));
  }
  const Nanos now = clock_.now();
  while (b.bytes < max_bytes) {
    Nanos w{0};
    Stream* s = pick(now, &w);
    if (s == nullptr) {
      if (b.frames.empty()) *wait = w;
      break;
    }
    const Out& out = s->frames[s->unsent++];
    s->bucket.consume(out.bytes->size());
    link_.consume(out.bytes->size());
    b.bytes += out.bytes->size();
    b.frames.push_back(out.bytes);
    ++stats_.frames_sent;
    stats_.bytes_sent += out.bytes->size();
  }
  return b;
}

bool Outbox::on_ack(uint32_t stream, uint64_t seq) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return false;
  Stream& s = it->second;
  if (seq >= s.next_seq) return false;  // acks a frame never queued
  while (!s.frames.empty() && s.frames.front().seq <= seq) {
    if (s.unsent == 0) return false;  // acks a frame not yet sent on this connection
    s.retained -= s.frames.front().bytes->size();
    s.frames.pop_front();
    --s.unsent;
  }
  return true;
}

bool Outbox::rewind(const std::vector<proto::StreamPosition>& peer_has, std::string* why) {
  control_.clear();
  for (auto& [id, s] : streams_) {
    uint64_t has = 0;
    for (const auto& p : peer_has)
      if (p.stream == id) has = p.seq;
    const uint64_t first_retained = s.frames.empty() ? s.next_seq : s.frames.front().seq;
    const uint64_t last_sent = s.unsent > 0 ? s.frames[s.unsent - 1].seq : first_retained - 1;
    if (has > last_sent || has + 1 < first_retained) {
      *why = "stream " + std::to_string(id) + ": peer has seq " + std::to_string(has) +
             " but we retain " + std::to_string(first_retained) + ".." + std::to_string(s.next_seq - 1);
      return false;
    }
    while (!s.frames.empty() && s.frames.front().seq <= has) {
      s.retained -= s.frames.front().bytes->size();
      s.frames.pop_front();
      --s.unsent;  // has <= last_sent, so this frame was sent
    }
    // Everything we had sent on the old connection goes again.
    for (size_t i = 0; i < s.unsent; ++i) {
      s.frames[i].bytes = std::make_shared<const std::vector<uint8_t>>(mark_resent(*s.frames[i].bytes));
      ++stats_.frames_resent;
    }
    s.unsent = 0;
  }
  return true;
}

void Outbox::reset() {
  control_.clear();
  for (auto& [id, s] : streams_) {
    s.frames.clear();
    s.unsent = 0;
    s.retained = 0;
    s.next_seq = 1;
  }
}

size_t Outbox::retained_bytes(uint32_t stream) const { return streams_.at(stream).retained; }
size_t Outbox::max_retained_bytes(uint32_t stream) const {
  return streams_.at(stream).cfg.max_retained_bytes;
}
uint64_t Outbox::last_seq(uint32_t stream) const { return streams_.at(stream).next_seq - 1; }

}  // namespace tideway::wan

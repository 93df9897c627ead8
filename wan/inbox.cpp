#include "wan/inbox.h"

#include <string>

namespace tideway::wan {

using proto::Errc;

void Inbox::add_stream(uint32_t id) { streams_.try_emplace(id); }

proto::Result<Inbox::Outcome> Inbox::accept(const proto::Frame& f, Delivery* out) {
  if (delivered_from_ != nullptr) {
    delivered_from_->partial.clear();
    delivered_from_ = nullptr;
  }
  auto it = streams_.find(f.header.stream);
  if (it == streams_.end())
    return proto::Error{Errc::kMalformed, "frame on unknown stream " + std::to_string(f.header.stream)};
  Stream& s = it->second;
  const uint64_t seq = f.header.seq;
  if (seq == 0) return proto::Error{Errc::kMalformed, "data frame without sequence number"};
  if (seq <= s.seq) {
    ++duplicates_;
    return Outcome::kDuplicate;
  }
  if (seq != s.seq + 1)
    return proto::Error{Errc::kMalformed, "stream " + std::to_string(f.header.stream) + ": got seq " +
                                              std::to_string(seq) + ", expected " +
                                              std::to_string(s.seq + 1)};
  const bool more = (f.header.flags & proto::kFlagMore) != 0;
  if (s.in_partial && f.header.type != s.partial_type)
    return proto::Error{Errc::kMalformed, "fragment type changed mid-message"};
  if (s.in_partial || more) {
    if (s.partial.size() + f.payload.size() > proto::kMaxPayload)
      return proto::Error{Errc::kTooLarge, "reassembled message exceeds the payload limit"};
  }
  s.seq = seq;
  unacked_bytes_ += proto::kHeaderSize + f.payload.size();
  if (more) {
    s.partial_type = f.header.type;
    s.in_partial = true;
    s.partial.insert(s.partial.end(), f.payload.begin(), f.payload.end());
    return Outcome::kPartial;
  }
  out->type = f.header.type;
  if (s.in_partial) {
    s.partial.insert(s.partial.end(), f.payload.begin(), f.payload.end());
    s.in_partial = false;
    out->payload = s.partial;
    delivered_from_ = &s;
  } else {
    out->payload = f.payload;
  }
  return Outcome::kDeliver;
}

std::vector<proto::StreamPosition> Inbox::positions() const {
  std::vector<proto::StreamPosition> v;
  // A stream with nothing received is left out (absent means seq 0), so a
  // brand-new session announces no positions at all.
  for (const auto& [id, s] : streams_)
    if (s.seq != 0) v.push_back({id, s.seq});
  return v;
}

std::vector<proto::StreamPosition> Inbox::take_ack() {
  std::vector<proto::StreamPosition> v;
  for (auto& [id, s] : streams_) {
    if (s.seq != s.acked) {
      v.push_back({id, s.seq});
      s.acked = s.seq;
    }
  }
  unacked_bytes_ = 0;
  return v;
}

void Inbox::reset() {
  for (auto& [id, s] : streams_) s = Stream{};
  unacked_bytes_ = 0;
  delivered_from_ = nullptr;
}

}  // namespace tideway::wan

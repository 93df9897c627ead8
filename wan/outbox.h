// The sending half of a session: one FIFO per stream, sequence numbers,
// fragmentation, retention of sent frames until the peer acknowledges them,
// strict priority between classes, round robin within a class, and the
// per-stream and per-link token buckets. No I/O: the connection asks it for
// the next batch of frames to write.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proto/frame.h"
#include "proto/messages.h"
#include "wan/clock.h"
#include "wan/stream_config.h"
#include "wan/token_bucket.h"

namespace tideway::wan {

using FrameBytes = std::shared_ptr<const std::vector<uint8_t>>;

struct OutboxStats {
  uint64_t frames_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t frames_resent = 0;
  uint64_t messages_queued = 0;
  uint64_t refused_full = 0;
};

class Outbox {
 public:
  Outbox(Clock& clock, uint64_t link_bytes_per_sec, uint64_t link_burst_bytes,
         uint32_t max_frame_payload);

  void add_stream(const StreamConfig& cfg);
  bool has_stream(uint32_t id) const { return streams_.count(id) != 0; }

  // Queues one message on a stream, split into frames of at most
  // max_frame_payload bytes. Returns false, queuing nothing, when the stream
  // already retains max_retained_bytes (an empty stream takes any message).
  bool enqueue(uint32_t stream, proto::MessageType type, std::span<const uint8_t> payload);
  // Unsequenced control frame (heartbeat, ack): sent before anything else,
  // never retained. Bounded: a backlog of control frames keeps the newest.
  void enqueue_control(std::vector<uint8_t> frame);

  struct Batch {
    std::vector<FrameBytes> frames;
    size_t bytes = 0;
  };
  // Frames to write now, up to about max_bytes, by priority and rate limits.
  // If nothing may go now but frames wait for tokens, *wait is set to how
  // long until one may; otherwise *wait is zero.
  Batch next_batch(size_t max_bytes, Nanos* wait);

  // The peer has everything <= seq on the stream: release it. False if the
  // peer acks a frame we never sent (protocol violation).
  bool on_ack(uint32_t stream, uint64_t seq);
  // A new connection: the peer already has these positions. Frames above
  // them are re-sent (marked resent); control frames are dropped. False if
  // the peer claims frames we never sent or already released past.
  bool rewind(const std::vector<proto::StreamPosition>& peer_has, std::string* why);
  // Forget everything (the peer lost the session): sequence numbers restart.
  void reset();

  size_t retained_bytes(uint32_t stream) const;
  size_t max_retained_bytes(uint32_t stream) const;
  uint64_t last_seq(uint32_t stream) const;
  const OutboxStats& stats() const { return stats_; }

 private:
  struct Out {
    FrameBytes bytes;
    uint64_t seq;
  };
  struct Stream {
    StreamConfig cfg;
    TokenBucket bucket;
    uint64_t next_seq = 1;
    std::deque<Out> frames;  // [0, unsent) sent and unacked, [unsent, end) to send
    size_t unsent = 0;
    size_t retained = 0;
  };

  Stream* pick(Nanos now, Nanos* wait);

  Clock& clock_;
  TokenBucket link_;
  uint32_t max_frame_payload_;
  std::map<uint32_t, Stream> streams_;
  std::array<std::vector<uint32_t>, kPriorityCount> by_class_;
  std::array<size_t, kPriorityCount> rr_{};  // round robin cursor per class
  std::deque<std::vector<uint8_t>> control_;
  OutboxStats stats_;
};

// Copy of a frame with the resent flag set and its crc recomputed.
std::vector<uint8_t> mark_resent(const std::vector<uint8_t>& frame);

}  // namespace tideway::wan

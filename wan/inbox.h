// The receiving half of a session: per-stream sequence tracking (deliver
// each frame exactly once, in order, across reconnects), reassembly of
// fragmented messages, and the cumulative acks owed to the sender.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "proto/frame.h"
#include "proto/messages.h"
#include "proto/result.h"

namespace tideway::wan {

class Inbox {
 public:
  void add_stream(uint32_t id);
  bool has_stream(uint32_t id) const { return streams_.count(id) != 0; }

  enum class Outcome { kDeliver, kDuplicate, kPartial };
  struct Delivery {
    proto::MessageType type = proto::MessageType::kProbe;
    std::span<const uint8_t> payload;  // valid until the next accept()
  };
  // A sequenced frame from the peer. kDeliver fills *out with a complete
  // message; kDuplicate means it was delivered before (a resend); an error
  // (gap, unknown stream, bad fragment) means the connection must close.
  proto::Result<Outcome> accept(const proto::Frame& f, Delivery* out);

  // Highest in-order seq per stream that received anything (sent in
  // HELLO/WELCOME on reconnect).
  std::vector<proto::StreamPosition> positions() const;
  // Bytes received since the last take_ack().
  uint64_t unacked_bytes() const { return unacked_bytes_; }
  // Positions of streams that advanced since the last call.
  std::vector<proto::StreamPosition> take_ack();
  void reset();
  uint64_t duplicates() const { return duplicates_; }

 private:
  struct Stream {
    uint64_t seq = 0;       // delivered (or buffered as fragment) up to here
    uint64_t acked = 0;     // last seq we acked
    proto::MessageType partial_type = proto::MessageType::kProbe;
    std::vector<uint8_t> partial;
    bool in_partial = false;
  };
  std::map<uint32_t, Stream> streams_;
  uint64_t unacked_bytes_ = 0;
  uint64_t duplicates_ = 0;
  Stream* delivered_from_ = nullptr;  // partial buffer handed out last time
};

}  // namespace tideway::wan

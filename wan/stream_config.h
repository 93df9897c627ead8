// Streams and their priorities. Priority is the sender's local choice: the
// scheduler always serves a higher class first, so acks and control never
// wait behind bulk data (DRBD keeps a separate socket for the same reason).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tideway::wan {

enum class Priority : uint8_t {
  kControl = 0,      // acks, control: never rate-limited (but counted)
  kReplication = 1,  // protected writes
  kMigration = 2,    // memory pages
  kBulk = 3,         // disk copy, resync, probes
};
inline constexpr int kPriorityCount = 4;
const char* priority_name(Priority p);

struct StreamConfig {
  uint32_t id = 0;                  // 1..; 0 is the channel's own control
  Priority priority = Priority::kBulk;
  uint64_t rate_bytes_per_sec = 0;  // 0 = unlimited (the link limit still applies)
  // Bytes kept for this stream until the peer acknowledges them (for resume
  // after a reconnect). send() refuses a message past this: backpressure.
  size_t max_retained_bytes = size_t{64} << 20;
};

}  // namespace tideway::wan

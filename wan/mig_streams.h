// The streams of a migration channel (agent to agent), shared by the
// source and destination agents. Control (begin, iteration ends, the
// switchover handshake) never waits behind pages; pages carry their own
// rate limit (the channel's, not QEMU's max-bandwidth, which does not cover
// the final stop-and-copy); disk copy is bulk and yields to both.
#pragma once

#include <vector>

#include "wan/stream_config.h"

namespace tideway::wan {

inline constexpr uint32_t kMigControlStream = 11;  // both ways: MIG_CONTROL
inline constexpr uint32_t kMigMemoryStream = 12;   // source -> destination: MIG_PAGES
inline constexpr uint32_t kMigDiskStream = 13;     // source -> destination: DISK_BLOCKS

// `window_bytes` bounds the pages in flight (sent, not yet acknowledged by
// the peer): the source stops reading the hypervisor's stream past it, so
// the hypervisor's own bandwidth estimate sees the WAN, not a buffer.
inline std::vector<StreamConfig> migration_streams(uint64_t rate_bytes_per_sec, size_t window_bytes) {
  StreamConfig control{kMigControlStream, Priority::kControl};
  StreamConfig memory{kMigMemoryStream, Priority::kMigration, rate_bytes_per_sec, window_bytes};
  StreamConfig disk{kMigDiskStream, Priority::kBulk, rate_bytes_per_sec, window_bytes};
  return {control, memory, disk};
}

}  // namespace tideway::wan

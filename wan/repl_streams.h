// The streams a protect channel uses, shared by agent and replicator (both
// ends must declare the same ids). Acks travel on their own stream at
// control priority so they never wait behind replication data.
#pragma once

#include <vector>

#include "wan/stream_config.h"

namespace tideway::wan {

inline constexpr uint32_t kReplControlStream = 1;  // replicator -> agent: ATTACHED, ACK
inline constexpr uint32_t kReplDataStream = 2;     // agent -> replicator: ATTACH, WRITE

inline std::vector<StreamConfig> replication_streams() {
  return {{kReplControlStream, Priority::kControl}, {kReplDataStream, Priority::kReplication}};
}

}  // namespace tideway::wan

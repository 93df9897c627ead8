// What an operator asks of one migration (`tideway migrate VM --to SITE`),
// as the control API carries it.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "proto/result.h"
#include "wan/codec/codec_config.h"
#include "wan/smart_stop.h"

namespace tideway::agent {

// How the memory travels. kTideway: QEMU's stream through the agents, the
// WAN codec and the channel (the product). kQemu: QEMU's own migration
// straight over TCP from the source's QEMU to the destination's (no codec,
// no channel for memory; the switchover handshake, pools, GARP and disks
// stay the agents'): the baseline the benchmarks compare against.
enum class MigrationTransport { kTideway, kQemu };
const char* transport_name(MigrationTransport t);

struct MigrateOptions {
  std::string vm;
  std::string to;                      // destination site (a [sites.X] of the agent config)
  uint64_t rate_bytes_per_sec = 0;     // 0: the link decides
  bool cbr = true;                     // CBR cache on memory pages
  bool delta = true;                   // page deltas
  bool zstd = true;
  bool smart_stop = true;              // else QEMU's own rule (downtime-limit) under the hard caps
  MigrationTransport transport = MigrationTransport::kTideway;
  bool xbzrle = false;                 // QEMU's XBZRLE page deltas (kQemu only: the splitter passes no XBZRLE pages)
  // The VM arrives paused at the destination (`tideway vm resume` there
  // starts it): for checks before it goes live.
  bool paused = false;
  // After the switchover keep the source's paused copy (for comparison or
  // as evidence) until `tideway vm stop`; it is never resumed on its own.
  bool keep_source = false;
  uint32_t max_iterations = 30;
  std::chrono::seconds max_time{600};  // hard cap: stop-and-copy after this long
  std::chrono::seconds switchover_timeout{60};  // source paused, destination silent: roll back
  std::chrono::seconds wan_timeout{10};          // channel down this long before the switchover: roll back
};

proto::Result<MigrateOptions> migrate_options_from_json(const nlohmann::json& j);
nlohmann::json to_json(const MigrateOptions& o);

// The codec configuration of a migration's memory stream, from the options
// (both ends build theirs from the same options, so they match).
wan::codec::CodecConfig memory_codec_config(const MigrateOptions& o);
wan::StopPolicyConfig stop_policy_config(const MigrateOptions& o);
// The disk copy's codec: CBR and zstd as the options say, no page deltas
// (a block is copied once per pass; its last version is rarely worth
// keeping), one REPL_WRITE (256 blocks) per batch.
wan::codec::CodecConfig disk_codec_config(const MigrateOptions& o);

}  // namespace tideway::agent

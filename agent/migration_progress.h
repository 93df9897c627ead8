// What a migration reports while it runs (the progress line) and when it
// ends (the report: JSON, and the per-iteration table behind the plot).
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "wan/codec/codec_stats.h"

namespace tideway::agent {

enum class MigrationPhase {
  kConnecting,   // dialling the destination, waiting for it to accept
  kDisk,         // copying agent-served disks while the VM runs (then mirrored)
  kMemory,       // iterative pre-copy while the VM runs
  kStopAndCopy,  // VM paused at the source, last pages and device state
  kSwitchover,   // stream sent, waiting for the destination to load it
  kDone,         // VM runs at the destination
  kRolledBack,   // cancelled or failed: VM runs at the source
  // Committed, but the destination never confirmed that the VM runs there:
  // the source keeps its copy paused (never resumed on its own, never
  // discarded); the operator checks the destination and decides.
  kUnconfirmed,
};
const char* phase_name(MigrationPhase p);
bool finished(MigrationPhase p);

struct IterationRecord {
  uint32_t iteration = 0;
  uint64_t pages_sent = 0, pages_dirtied = 0, pages_remaining = 0;
  uint64_t wire_bytes = 0;  // channel bytes of this iteration's pieces
  double end_ms = 0;        // since the migration began
};

// The disk copy of a migration (agent-served [[disks]] image = ...):
// passes over the blocks to send while the VM runs, then synchronous
// mirroring of its writes until the switchover.
struct DiskPassRecord {
  uint32_t pass = 0;
  uint64_t blocks_sent = 0, blocks_dirtied = 0;  // dirtied: left for the next pass
  uint64_t wire_bytes = 0;
  double end_ms = 0;
};

struct DiskProgress {
  bool active = false;
  std::string mode;               // full, incremental, or mixed (several disks)
  uint64_t disk_bytes = 0;        // the disks' sizes
  uint64_t blocks_to_copy = 0;    // the first pass's set (4 KiB blocks)
  uint64_t blocks_sent = 0, bytes_sent = 0, wire_bytes = 0;
  uint64_t mirrored_writes = 0, mirrored_bytes = 0;
  std::vector<DiskPassRecord> passes;
  double copy_ms = -1;            // until the destination held every block (mirror on)
  wan::codec::CodecStats codec;
};

struct MigrationProgress {
  std::string vm, from, to;
  MigrationPhase phase = MigrationPhase::kConnecting;
  uint32_t iteration = 0;
  std::vector<IterationRecord> iterations;
  uint64_t stream_bytes = 0;  // hypervisor stream bytes read so far
  uint64_t wire_bytes = 0;    // MIG_PAGES payload bytes queued to the channel
  uint64_t pages = 0, zero_pages = 0;
  double rate_bytes_per_sec = 0;   // wire bytes over the last second
  double eta_s = -1;               // -1: unknown
  double elapsed_ms = 0;
  double downtime_ms = -1;         // the hypervisor's figure, once known
  double switchover_ms = -1;       // source paused -> destination resumed, as the source saw it
  std::string transport = "tideway";  // or "qemu": QEMU's own stream over TCP (MigrateOptions)
  // Transport qemu with XBZRLE: QEMU's own counters (pages sent as XBZRLE,
  // their encoded bytes, cache misses).
  bool xbzrle = false;
  uint64_t xbzrle_pages = 0, xbzrle_bytes = 0, xbzrle_cache_misses = 0;
  std::string stop_reason;
  std::string error;               // why it rolled back
  wan::codec::CodecStats codec;
  DiskProgress disk;
};

nlohmann::json to_json(const MigrationProgress& p);
nlohmann::json codec_json(const wan::codec::CodecStats& c);

}  // namespace tideway::agent

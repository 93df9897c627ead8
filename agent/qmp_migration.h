// QEMU's migration vocabulary over QMP, as pure functions: the arguments of
// migrate-set-capabilities / migrate-set-parameters, the query-migrate
// answer and the events a migration emits, parsed into structs. Field
// names and units are those of QEMU 7.2 (Debian 12), checked against the
// real binary (docs/qemu-driver.md). Unknown fields are ignored (newer
// QEMUs add some); a known field with the wrong type is an error.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"

namespace tideway::agent {

// QAPI MigrationStatus (7.2).
enum class MigrationStatus {
  kNone,
  kSetup,
  kCancelling,
  kCancelled,
  kActive,
  kPostcopyActive,
  kPostcopyPaused,
  kPostcopyRecover,
  kCompleted,
  kFailed,
  kColo,
  kPreSwitchover,  // paused before switchover (capability pause-before-switchover)
  kDevice,         // device state being sent after pre-switchover
  kWaitUnplug,
};

const char* migration_status_name(MigrationStatus s);
proto::Result<MigrationStatus> parse_migration_status(const std::string& s);
// completed, failed or cancelled: no more events will follow.
bool migration_finished(MigrationStatus s);

// query-migrate's "ram" object (MigrationStats). Sizes in bytes, counts in
// pages. dirty_pages_rate is pages/s, measured once per second; mbps is
// QEMU's estimate of its own send rate (megabits/s).
struct RamStats {
  uint64_t transferred = 0;
  uint64_t remaining = 0;
  uint64_t total = 0;
  uint64_t duplicate = 0;  // zero pages (sent as one byte)
  uint64_t skipped = 0;
  uint64_t normal = 0;     // pages sent in full
  uint64_t normal_bytes = 0;
  uint64_t dirty_pages_rate = 0;
  uint64_t dirty_sync_count = 0;  // bitmap syncs: 1 + completed passes
  uint64_t page_size = 0;
  uint64_t pages_per_second = 0;
  uint64_t precopy_bytes = 0;
  uint64_t downtime_bytes = 0;  // sent while the VM was stopped
  double mbps = 0;
};

struct XbzrleStats {
  uint64_t cache_size = 0;
  uint64_t bytes = 0;
  uint64_t pages = 0;
  uint64_t cache_miss = 0;
  double cache_miss_rate = 0;
  double encoding_rate = 0;
  uint64_t overflow = 0;
};

// query-migrate's answer (MigrationInfo). The destination answers with the
// status only. Times in ms. downtime and a non-zero total_time appear once
// completed; expected_downtime while active.
struct MigrationInfo {
  MigrationStatus status = MigrationStatus::kNone;
  std::optional<RamStats> ram;
  std::optional<XbzrleStats> xbzrle;
  std::optional<uint64_t> total_time_ms;
  std::optional<uint64_t> setup_time_ms;
  std::optional<uint64_t> downtime_ms;
  std::optional<uint64_t> expected_downtime_ms;
  std::string error_desc;  // why it failed
  // An incoming VM told to listen on tcp:HOST:0: the ports the kernel gave
  // it ("socket-address", inet entries; QEMU sends each port as a string).
  std::vector<uint16_t> listen_ports;
};

proto::Result<MigrationInfo> parse_query_migrate(const nlohmann::json& ret);

// What migrate-set-capabilities changes; unset ones are left as they are.
// events: MIGRATION / MIGRATION_PASS events (needed on both sides).
// pause_before_switchover: the source stops in kPreSwitchover and waits for
// migrate-continue before sending device state.
struct MigrationCapabilities {
  std::optional<bool> events;
  std::optional<bool> xbzrle;
  std::optional<bool> pause_before_switchover;
};
// {"capabilities": [{"capability": NAME, "state": BOOL}, ...]}; kInvalid
// when nothing is set.
proto::Result<nlohmann::json> capabilities_arguments(const MigrationCapabilities& c);

// What migrate-set-parameters changes; unset ones are left as they are.
// QEMU completes when remaining bytes < bandwidth x downtime_limit; holding
// it at 1 ms and raising it is how smart stop decides the switchover.
// max_bandwidth (bytes/s) does not limit the final stop-and-copy.
struct MigrationParameters {
  std::optional<uint64_t> downtime_limit_ms;  // 1 .. 2000000 (QEMU's bound)
  std::optional<uint64_t> max_bandwidth;      // bytes/s, > 0
  std::optional<uint64_t> xbzrle_cache_size;  // bytes, a multiple of 4096
};
inline constexpr uint64_t kMaxDowntimeLimitMs = 2000000;
proto::Result<nlohmann::json> parameters_arguments(const MigrationParameters& p);

// Events a driver acts on; anything else is kOther (name kept).
enum class QemuEventKind { kMigration, kMigrationPass, kStop, kResume, kShutdown, kOther };
struct QemuEvent {
  QemuEventKind kind = QemuEventKind::kOther;
  std::string name;
  MigrationStatus status = MigrationStatus::kNone;  // kMigration
  uint64_t pass = 0;                                // kMigrationPass: 1 = the first full pass
  std::string shutdown_reason;                      // kShutdown (e.g. "host-qmp-quit")
};
proto::Result<QemuEvent> parse_event(const std::string& name, const nlohmann::json& data);

// query-status: {"status": "running", "running": true, ...}.
struct RunState {
  std::string status;  // running, paused, postmigrate, inmigrate, finish-migrate, prelaunch, shutdown...
  bool running = false;
};
proto::Result<RunState> parse_query_status(const nlohmann::json& ret);

}  // namespace tideway::agent

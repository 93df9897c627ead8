#include "agent/migration_progress.h"

namespace tideway::agent {

const char* phase_name(MigrationPhase p) {
  switch (p) {
    case MigrationPhase::kConnecting: return "connecting";
    case MigrationPhase::kDisk: return "disk";
    case MigrationPhase::kMemory: return "memory";
    case MigrationPhase::kStopAndCopy: return "stop-and-copy";
    case MigrationPhase::kSwitchover: return "switchover";
    case MigrationPhase::kDone: return "done";
    case MigrationPhase::kRolledBack: return "rolled-back";
    case MigrationPhase::kUnconfirmed: return "unconfirmed";
  }
  return "?";
}

bool finished(MigrationPhase p) {
  return p == MigrationPhase::kDone || p == MigrationPhase::kRolledBack || p == MigrationPhase::kUnconfirmed;
}

nlohmann::json to_json(const MigrationProgress& p) {
  nlohmann::json its = nlohmann::json::array();
  for (const auto& i : p.iterations)
    its.push_back({{"iteration", i.iteration},
                   {"pages_sent", i.pages_sent},
                   {"pages_dirtied", i.pages_dirtied},
                   {"pages_remaining", i.pages_remaining},
                   {"wire_bytes", i.wire_bytes},
                   {"end_ms", i.end_ms}});
  nlohmann::json disk = nullptr;  // null: no agent-served disk
  if (p.disk.active) {
    const auto& d = p.disk;
    nlohmann::json passes = nlohmann::json::array();
    for (const auto& x : d.passes)
      passes.push_back({{"pass", x.pass},
                        {"blocks_sent", x.blocks_sent},
                        {"blocks_dirtied", x.blocks_dirtied},
                        {"wire_bytes", x.wire_bytes},
                        {"end_ms", x.end_ms}});
    disk = {{"mode", d.mode},
            {"disk_bytes", d.disk_bytes},
            {"blocks_to_copy", d.blocks_to_copy},
            {"blocks_sent", d.blocks_sent},
            {"bytes_sent", d.bytes_sent},
            {"wire_bytes", d.wire_bytes},
            {"mirrored_writes", d.mirrored_writes},
            {"mirrored_bytes", d.mirrored_bytes},
            {"passes", passes},
            {"copy_ms", d.copy_ms},
            {"codec", codec_json(d.codec)}};
  }
  nlohmann::json xbzrle = nullptr;  // null: not used
  if (p.xbzrle)
    xbzrle = {{"pages", p.xbzrle_pages}, {"bytes", p.xbzrle_bytes}, {"cache_misses", p.xbzrle_cache_misses}};
  return {{"vm", p.vm},
          {"from", p.from},
          {"transport", p.transport},
          {"xbzrle", xbzrle},
          {"to", p.to},
          {"phase", phase_name(p.phase)},
          {"finished", finished(p.phase)},
          {"iteration", p.iteration},
          {"iterations", its},
          {"stream_bytes", p.stream_bytes},
          {"wire_bytes", p.wire_bytes},
          {"bytes_saved", p.stream_bytes > p.wire_bytes ? p.stream_bytes - p.wire_bytes : 0},
          {"pages", p.pages},
          {"zero_pages", p.zero_pages},
          {"rate_bytes_per_sec", p.rate_bytes_per_sec},
          {"eta_s", p.eta_s},
          {"elapsed_ms", p.elapsed_ms},
          {"downtime_ms", p.downtime_ms},
          {"switchover_ms", p.switchover_ms},
          {"stop_reason", p.stop_reason},
          {"error", p.error},
          {"codec", codec_json(p.codec)},
          {"disk", disk}};
}

nlohmann::json codec_json(const wan::codec::CodecStats& c) {
  return {{"records", c.records},
          {"zero", c.zero_records},
          {"raw", c.raw_records},
          {"cbr", c.cbr_records},
          {"delta", c.delta_records},
          {"mixed", c.mixed_records},
          {"sub_hit", c.sub_hit},
          {"sub_delta", c.sub_delta},
          {"sub_unchanged", c.sub_unchanged},
          {"sub_literal", c.sub_literal},
          {"page_bytes", c.page_bytes},
          {"wire_bytes", c.wire_bytes},
          {"cpu_ms", c.cpu_ns / 1e6}};
}

}  // namespace tideway::agent

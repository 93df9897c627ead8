#include "agent/migration_options.h"

#include "proto/messages.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

namespace {
Error bad(const std::string& what) { return Error{Errc::kInvalid, "migrate: " + what}; }
}  // namespace

const char* transport_name(MigrationTransport t) { return t == MigrationTransport::kQemu ? "qemu" : "tideway"; }

proto::Result<MigrateOptions> migrate_options_from_json(const nlohmann::json& j) {
  MigrateOptions o;
  try {
    if (!j.contains("vm") || !j["vm"].is_string() || j["vm"].get<std::string>().empty())
      return bad("\"vm\" (the VM's name) is required");
    if (!j.contains("to") || !j["to"].is_string() || j["to"].get<std::string>().empty())
      return bad("\"to\" (the destination site) is required");
    o.vm = j["vm"].get<std::string>();
    o.to = j["to"].get<std::string>();
    o.rate_bytes_per_sec = j.value("rate_bytes_per_sec", uint64_t{0});
    o.cbr = j.value("cbr", true);
    o.delta = j.value("delta", true);
    o.zstd = j.value("zstd", true);
    o.smart_stop = j.value("smart_stop", true);
    const std::string transport = j.value("transport", std::string("tideway"));
    if (transport == "qemu") o.transport = MigrationTransport::kQemu;
    else if (transport != "tideway") return bad("transport \"" + transport + "\": expected tideway or qemu");
    o.xbzrle = j.value("xbzrle", false);
    o.paused = j.value("paused", false);
    o.keep_source = j.value("keep_source", false);
    o.max_iterations = j.value("max_iterations", uint32_t{30});
    o.max_time = std::chrono::seconds(j.value("max_time_s", int64_t{600}));
    o.switchover_timeout = std::chrono::seconds(j.value("switchover_timeout_s", int64_t{60}));
    o.wan_timeout = std::chrono::seconds(j.value("wan_timeout_s", int64_t{10}));
  } catch (const nlohmann::json::exception& e) {
    return bad(std::string("bad field type: ") + e.what());
  }
  if (o.max_iterations < 1 || o.max_iterations > 1000) return bad("max_iterations must be 1..1000");
  if (o.max_time.count() < 1) return bad("max_time_s must be >= 1");
  if (o.switchover_timeout.count() < 1) return bad("switchover_timeout_s must be >= 1");
  if (o.wan_timeout.count() < 1) return bad("wan_timeout_s must be >= 1");
  if (o.xbzrle && o.transport != MigrationTransport::kQemu)
    return bad("xbzrle is QEMU's own page-delta encoding: it needs transport qemu (Tideway's page deltas are on by "
               "default)");
  return o;
}

nlohmann::json to_json(const MigrateOptions& o) {
  return {{"vm", o.vm},
          {"to", o.to},
          {"rate_bytes_per_sec", o.rate_bytes_per_sec},
          {"cbr", o.cbr},
          {"delta", o.delta},
          {"zstd", o.zstd},
          {"smart_stop", o.smart_stop},
          {"transport", transport_name(o.transport)},
          {"xbzrle", o.xbzrle},
          {"paused", o.paused},
          {"keep_source", o.keep_source},
          {"max_iterations", o.max_iterations},
          {"max_time_s", o.max_time.count()},
          {"switchover_timeout_s", o.switchover_timeout.count()},
          {"wan_timeout_s", o.wan_timeout.count()}};
}

wan::codec::CodecConfig memory_codec_config(const MigrateOptions& o) {
  wan::codec::CodecConfig c;
  if (!o.cbr) c.cache_bytes = 0;
  if (!o.delta) c.delta_store_bytes = 0;
  if (!o.zstd) c.zstd_level = 0;
  return c;
}

wan::codec::CodecConfig disk_codec_config(const MigrateOptions& o) {
  wan::codec::CodecConfig c = memory_codec_config(o);
  c.delta_store_bytes = 0;
  c.max_records = proto::kMaxWriteLen / proto::kPageSize;
  return c;
}

wan::StopPolicyConfig stop_policy_config(const MigrateOptions& o) {
  wan::StopPolicyConfig c;
  c.rule = o.smart_stop ? wan::StopRule::kSmart : wan::StopRule::kQemuDefault;
  c.max_iterations = o.max_iterations;
  c.max_time = o.max_time;
  return c;
}

}  // namespace tideway::agent

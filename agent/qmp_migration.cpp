#include "agent/qmp_migration.h"

#include <array>
#include <utility>

namespace tideway::agent {

using nlohmann::json;
using proto::Errc;
using proto::Error;

namespace {

constexpr std::array<std::pair<MigrationStatus, const char*>, 14> kStatusNames{{
    {MigrationStatus::kNone, "none"},
    {MigrationStatus::kSetup, "setup"},
    {MigrationStatus::kCancelling, "cancelling"},
    {MigrationStatus::kCancelled, "cancelled"},
    {MigrationStatus::kActive, "active"},
    {MigrationStatus::kPostcopyActive, "postcopy-active"},
    {MigrationStatus::kPostcopyPaused, "postcopy-paused"},
    {MigrationStatus::kPostcopyRecover, "postcopy-recover"},
    {MigrationStatus::kCompleted, "completed"},
    {MigrationStatus::kFailed, "failed"},
    {MigrationStatus::kColo, "colo"},
    {MigrationStatus::kPreSwitchover, "pre-switchover"},
    {MigrationStatus::kDevice, "device"},
    {MigrationStatus::kWaitUnplug, "wait-unplug"},
}};

Error malformed(const std::string& what) { return Error{Errc::kMalformed, what}; }

// Parsed JSON holds non-negative integers as unsigned; built JSON may hold
// them as signed.
bool non_negative_integer(const json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
}

// Reads optional members of one JSON object, remembering the first type
// error so the parsers stay flat.
class Fields {
 public:
  Fields(const json& obj, std::string where) : obj_(obj), where_(std::move(where)) {}

  void u64(const char* key, uint64_t& out) {
    if (!obj_.contains(key)) return;
    const json& v = obj_[key];
    if (!non_negative_integer(v)) return bad(key, "a non-negative integer");
    out = v.get<uint64_t>();
  }
  void u64(const char* key, std::optional<uint64_t>& out) {
    if (!obj_.contains(key)) return;
    const json& v = obj_[key];
    if (!non_negative_integer(v)) return bad(key, "a non-negative integer");
    out = v.get<uint64_t>();
  }
  void number(const char* key, double& out) {
    if (!obj_.contains(key)) return;
    const json& v = obj_[key];
    if (!v.is_number()) return bad(key, "a number");
    out = v.get<double>();
  }
  void str(const char* key, std::string& out) {
    if (!obj_.contains(key)) return;
    const json& v = obj_[key];
    if (!v.is_string()) return bad(key, "a string");
    out = v.get<std::string>();
  }
  const std::optional<Error>& error() const { return error_; }

 private:
  void bad(const char* key, const char* expected) {
    if (!error_) error_ = malformed(where_ + "." + key + ": expected " + expected);
  }
  const json& obj_;
  std::string where_;
  std::optional<Error> error_;
};

}  // namespace

const char* migration_status_name(MigrationStatus s) {
  for (const auto& [v, n] : kStatusNames)
    if (v == s) return n;
  return "?";
}

proto::Result<MigrationStatus> parse_migration_status(const std::string& s) {
  for (const auto& [v, n] : kStatusNames)
    if (s == n) return v;
  return malformed("unknown migration status \"" + s + "\"");
}

bool migration_finished(MigrationStatus s) {
  return s == MigrationStatus::kCompleted || s == MigrationStatus::kFailed || s == MigrationStatus::kCancelled;
}

proto::Result<MigrationInfo> parse_query_migrate(const json& ret) {
  if (!ret.is_object()) return malformed("query-migrate: expected an object");
  MigrationInfo info;
  // Before the first migration QEMU 7.2 answers {} (status none).
  if (ret.contains("status")) {
    if (!ret["status"].is_string()) return malformed("query-migrate.status: expected a string");
    auto st = parse_migration_status(ret["status"].get<std::string>());
    if (!st) return st.error();
    info.status = st.value();
  }
  Fields top(ret, "query-migrate");
  top.u64("total-time", info.total_time_ms);
  top.u64("setup-time", info.setup_time_ms);
  top.u64("downtime", info.downtime_ms);
  top.u64("expected-downtime", info.expected_downtime_ms);
  top.str("error-desc", info.error_desc);
  if (top.error()) return *top.error();
  if (ret.contains("ram")) {
    if (!ret["ram"].is_object()) return malformed("query-migrate.ram: expected an object");
    RamStats r;
    Fields f(ret["ram"], "query-migrate.ram");
    f.u64("transferred", r.transferred);
    f.u64("remaining", r.remaining);
    f.u64("total", r.total);
    f.u64("duplicate", r.duplicate);
    f.u64("skipped", r.skipped);
    f.u64("normal", r.normal);
    f.u64("normal-bytes", r.normal_bytes);
    f.u64("dirty-pages-rate", r.dirty_pages_rate);
    f.u64("dirty-sync-count", r.dirty_sync_count);
    f.u64("page-size", r.page_size);
    f.u64("pages-per-second", r.pages_per_second);
    f.u64("precopy-bytes", r.precopy_bytes);
    f.u64("downtime-bytes", r.downtime_bytes);
    f.number("mbps", r.mbps);
    if (f.error()) return *f.error();
    info.ram = r;
  }
  if (ret.contains("xbzrle-cache")) {
    if (!ret["xbzrle-cache"].is_object()) return malformed("query-migrate.xbzrle-cache: expected an object");
    XbzrleStats x;
    Fields f(ret["xbzrle-cache"], "query-migrate.xbzrle-cache");
    f.u64("cache-size", x.cache_size);
    f.u64("bytes", x.bytes);
    f.u64("pages", x.pages);
    f.u64("cache-miss", x.cache_miss);
    f.number("cache-miss-rate", x.cache_miss_rate);
    f.number("encoding-rate", x.encoding_rate);
    f.u64("overflow", x.overflow);
    if (f.error()) return *f.error();
    info.xbzrle = x;
  }
  if (ret.contains("socket-address")) {
    const auto& list = ret["socket-address"];
    if (!list.is_array()) return malformed("query-migrate.socket-address: expected an array");
    for (const auto& a : list) {
      if (!a.is_object() || !a.contains("type") || !a["type"].is_string())
        return malformed("query-migrate.socket-address: an entry without a type");
      if (a["type"] != "inet") continue;  // unix, vsock, fd: no port
      const json& port = a.contains("port") ? a["port"] : json();
      // QAPI's InetSocketAddress.port is a string (it may name a service).
      unsigned long v = 0;
      size_t used = 0;
      const std::string text = port.is_string() ? port.get<std::string>() : std::string();
      try {
        v = std::stoul(text, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (text.empty() || used != text.size() || v == 0 || v > 65535)
        return malformed("query-migrate.socket-address: port " + port.dump() + " is not a port number");
      info.listen_ports.push_back(static_cast<uint16_t>(v));
    }
  }
  return info;
}

proto::Result<json> capabilities_arguments(const MigrationCapabilities& c) {
  json caps = json::array();
  auto add = [&](const char* name, const std::optional<bool>& v) {
    if (v) caps.push_back(json{{"capability", name}, {"state", *v}});
  };
  add("events", c.events);
  add("xbzrle", c.xbzrle);
  add("pause-before-switchover", c.pause_before_switchover);
  if (caps.empty()) return Error{Errc::kInvalid, "migrate-set-capabilities: no capability to set"};
  return json{{"capabilities", std::move(caps)}};
}

proto::Result<json> parameters_arguments(const MigrationParameters& p) {
  json args = json::object();
  if (p.downtime_limit_ms) {
    if (*p.downtime_limit_ms < 1 || *p.downtime_limit_ms > kMaxDowntimeLimitMs)
      return Error{Errc::kInvalid, "downtime-limit: " + std::to_string(*p.downtime_limit_ms) +
                                      " ms is outside 1 .. 2000000 ms"};
    args["downtime-limit"] = *p.downtime_limit_ms;
  }
  if (p.max_bandwidth) {
    // QEMU keeps it in a size_t and multiplies by 1000 ms internally.
    if (*p.max_bandwidth == 0 || *p.max_bandwidth > (uint64_t{1} << 50))
      return Error{Errc::kInvalid, "max-bandwidth: " + std::to_string(*p.max_bandwidth) +
                                       " bytes/s is outside 1 .. 2^50"};
    args["max-bandwidth"] = *p.max_bandwidth;
  }
  if (p.xbzrle_cache_size) {
    const uint64_t v = *p.xbzrle_cache_size;
    if (v < 4096 || (v & (v - 1)) != 0)
      return Error{Errc::kInvalid, "xbzrle-cache-size: " + std::to_string(v) +
                                       " bytes is not a power of two of at least 4096"};
    args["xbzrle-cache-size"] = v;
  }
  if (args.empty()) return Error{Errc::kInvalid, "migrate-set-parameters: no parameter to set"};
  return args;
}

proto::Result<QemuEvent> parse_event(const std::string& name, const json& data) {
  QemuEvent e;
  e.name = name;
  if (name == "MIGRATION") {
    e.kind = QemuEventKind::kMigration;
    if (!data.is_object() || !data.contains("status") || !data["status"].is_string())
      return malformed("MIGRATION event: data.status: expected a string");
    auto st = parse_migration_status(data["status"].get<std::string>());
    if (!st) return st.error();
    e.status = st.value();
  } else if (name == "MIGRATION_PASS") {
    e.kind = QemuEventKind::kMigrationPass;
    if (!data.is_object() || !data.contains("pass") || !non_negative_integer(data["pass"]))
      return malformed("MIGRATION_PASS event: data.pass: expected a non-negative integer");
    e.pass = data["pass"].get<uint64_t>();
  } else if (name == "STOP") {
    e.kind = QemuEventKind::kStop;
  } else if (name == "RESUME") {
    e.kind = QemuEventKind::kResume;
  } else if (name == "SHUTDOWN") {
    e.kind = QemuEventKind::kShutdown;
    if (data.is_object() && data.contains("reason") && data["reason"].is_string())
      e.shutdown_reason = data["reason"].get<std::string>();
  }
  return e;
}

proto::Result<RunState> parse_query_status(const json& ret) {
  if (!ret.is_object() || !ret.contains("status") || !ret["status"].is_string() || !ret.contains("running") ||
      !ret["running"].is_boolean())
    return malformed("query-status: expected {\"status\": string, \"running\": bool}");
  return RunState{ret["status"].get<std::string>(), ret["running"].get<bool>()};
}

}  // namespace tideway::agent

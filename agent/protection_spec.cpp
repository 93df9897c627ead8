#include "agent/protection_spec.h"

#include "agent/holder_rules.h"
#include "proto/messages.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

const char* tap_name(TapKind t) { return t == TapKind::kFuse ? "fuse" : "nbd"; }

namespace {

Error invalid(const std::string& what) { return Error{Errc::kInvalid, what}; }

bool absolute(const std::string& p) { return !p.empty() && p[0] == '/'; }

}  // namespace

proto::Result<ProtectionSpec> spec_from_json(const nlohmann::json& j) {
  if (!j.is_object()) return invalid("protection: expected an object");
  ProtectionSpec s;
  auto str = [&](const char* key, std::string& out, bool required) -> bool {
    if (!j.contains(key) || j[key].is_null()) return !required;
    if (!j[key].is_string()) return false;
    out = j[key].get<std::string>();
    return true;
  };
  if (!str("name", s.name, true) || s.name.size() > 64 || !proto::valid_volume_name(s.name))
    return invalid("name: required, 1-64 characters of [A-Za-z0-9_.-]");
  if (!str("backup", s.backup, false)) return invalid("backup: expected a site name");
  if (!str("volume", s.volume, true) || !absolute(s.volume))
    return invalid("volume: required, an absolute path to a file or block device");
  if (j.contains("size")) {
    if (!j["size"].is_number_unsigned()) return invalid("size: expected bytes (a positive integer)");
    s.size = j["size"].get<uint64_t>();
    if (s.size % 512 != 0) return invalid("size: must be a multiple of 512 bytes");
  }
  std::string tap = "fuse", mode = "pipelined";
  if (!str("tap", tap, false)) return invalid("tap: expected \"fuse\" or \"nbd\"");
  if (tap == "fuse") {
    s.tap = TapKind::kFuse;
    if (!str("mount", s.mount, true) || !absolute(s.mount))
      return invalid("mount: the fuse tap needs an absolute mount point (an existing empty directory)");
  } else if (tap == "nbd") {
    s.tap = TapKind::kNbd;
    if (!str("nbd_socket", s.nbd_socket, true) || !absolute(s.nbd_socket))
      return invalid("nbd_socket: the nbd tap needs an absolute unix socket path");
  } else {
    return invalid("tap: \"" + tap + "\" is not a tap (fuse or nbd)");
  }
  if (!str("mode", mode, false)) return invalid("mode: expected pipelined, sync or async");
  auto m = parse_mode(mode);
  if (!m) return m.error();
  s.mode = m.value();
  if (!str("app_iface", s.app_iface, false) || (!s.app_iface.empty() && !valid_interface_name(s.app_iface)))
    return invalid("app_iface: an interface name of 1-15 characters [A-Za-z0-9_.-]");
  if (j.contains("queue")) {
    if (!j["queue"].is_number_unsigned() || j["queue"].get<uint64_t>() > 65535)
      return invalid("queue: an NFQUEUE number 0-65535");
    s.queue = j["queue"].get<uint16_t>();
  }
  if (j.contains("epoch")) {
    if (!j["epoch"].is_number_unsigned()) return invalid("epoch: expected a counter");
    s.epoch = j["epoch"].get<uint64_t>();
  }
  return s;
}

nlohmann::json spec_to_json(const ProtectionSpec& s) {
  nlohmann::json j{{"name", s.name},     {"backup", s.backup},        {"volume", s.volume},
                   {"size", s.size},     {"tap", tap_name(s.tap)},    {"mode", mode_name(s.mode)},
                   {"app_iface", s.app_iface}, {"queue", s.queue},    {"epoch", s.epoch}};
  if (s.tap == TapKind::kFuse) j["mount"] = s.mount;
  else j["nbd_socket"] = s.nbd_socket;
  return j;
}

}  // namespace tideway::agent

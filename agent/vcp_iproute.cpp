// Readers of iproute2's JSON output for the pool controller (vcp_pool.h).
// Defensive: any shape we do not expect is an error naming the command's
// output, never an exception or a crash.
#include <nlohmann/json.hpp>

#include "agent/vcp_pool.h"

namespace tideway::agent::vcp {
namespace {

using nlohmann::json;
using proto::Errc;

proto::Result<json> parse_array(std::string_view text, const char* what) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  // iproute2 prints nothing at all for an empty FDB listing.
  if (j.is_discarded() && text.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::array();
  if (j.is_discarded() || !j.is_array())
    return proto::Error{Errc::kSystem, std::string("unexpected output from ") + what + " (not a JSON array)"};
  return j;
}

std::string str(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

template <typename T>
T num(const json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number_unsigned() ? it->get<T>() : T{};
}

}  // namespace

proto::Result<std::vector<LinkInfo>> parse_links(std::string_view text) {
  auto arr = parse_array(text, "ip -j -d link show");
  if (!arr) return arr.error();
  std::vector<LinkInfo> links;
  for (const json& l : *arr) {
    if (!l.is_object()) return proto::Error{Errc::kSystem, "unexpected output from ip -j -d link show (not objects)"};
    LinkInfo info;
    info.name = str(l, "ifname");
    if (info.name.empty()) return proto::Error{Errc::kSystem, "unexpected output from ip -j -d link show (no ifname)"};
    info.alias = str(l, "ifalias");
    info.master = str(l, "master");
    info.mtu = num<int>(l, "mtu");
    if (auto f = l.find("flags"); f != l.end() && f->is_array())
      for (const json& flag : *f) info.up = info.up || (flag.is_string() && flag.get<std::string>() == "UP");
    if (auto li = l.find("linkinfo"); li != l.end() && li->is_object()) {
      info.kind = str(*li, "info_kind");
      if (auto d = li->find("info_data"); info.kind == "vxlan" && d != li->end() && d->is_object()) {
        info.vni = num<uint32_t>(*d, "id");
        info.local = str(*d, "local");
        info.underlay = str(*d, "link");
        info.port = num<uint16_t>(*d, "port");
      }
    }
    links.push_back(std::move(info));
  }
  return links;
}

proto::Result<std::vector<FdbEntry>> parse_fdb(std::string_view text) {
  auto arr = parse_array(text, "bridge -j fdb show");
  if (!arr) return arr.error();
  std::vector<FdbEntry> entries;
  for (const json& e : *arr) {
    if (!e.is_object()) return proto::Error{Errc::kSystem, "unexpected output from bridge -j fdb show (not objects)"};
    entries.push_back({str(e, "mac"), str(e, "dst"), str(e, "state")});
  }
  return entries;
}

proto::Result<std::vector<std::string>> parse_ipv4_addresses(std::string_view text) {
  auto arr = parse_array(text, "ip -j addr show");
  if (!arr) return arr.error();
  std::vector<std::string> out;
  for (const json& l : *arr) {
    if (!l.is_object()) continue;
    auto ai = l.find("addr_info");
    if (ai == l.end() || !ai->is_array()) continue;
    for (const json& a : *ai)
      if (a.is_object() && str(a, "family") == "inet") out.push_back(str(a, "local"));
  }
  return out;
}

}  // namespace tideway::agent::vcp

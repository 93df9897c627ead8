#include "agent/holder_rules.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "agent/holder_command.h"

namespace tideway::agent {
namespace {

using proto::Errc;

bool name_chars_ok(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// -C exits 1 when the rule is absent (iptables-legacy and -nft alike); any
// other non-zero code is an error (2: bad arguments, 4: kernel refused...).
constexpr int kIptablesAbsent = 1;
// Bounds remove's loop should the rule have been added many times by hand.
constexpr int kMaxCopies = 64;

proto::Result<bool> check_tools(const HolderRule& rule) {
  if (!find_in_path("iptables"))
    return proto::Error{Errc::kSystem, "iptables: not found in PATH (install the iptables package)"};
  if (!rule.netns.empty() && !find_in_path("ip"))
    return proto::Error{Errc::kSystem, "ip: not found in PATH (install the iproute2 package)"};
  return true;
}

}  // namespace

bool valid_interface_name(std::string_view name) {
  return !name.empty() && name.size() <= 15 && name != "." && name != ".." && name_chars_ok(name);
}

bool valid_netns_name(std::string_view name) {
  return !name.empty() && name.size() <= 64 && name != "." && name != ".." && name_chars_ok(name);
}

proto::Result<std::vector<std::string>> holder_rule_argv(const HolderRule& rule, const char* op) {
  if (!valid_interface_name(rule.app_if))
    return proto::Error{Errc::kInvalid, "bad application interface name '" + rule.app_if +
                                            "' (1-15 of A-Z a-z 0-9 _ . -)"};
  if (!rule.out_if.empty() && !valid_interface_name(rule.out_if))
    return proto::Error{Errc::kInvalid, "bad output interface name '" + rule.out_if +
                                            "' (1-15 of A-Z a-z 0-9 _ . -)"};
  if (!rule.netns.empty() && !valid_netns_name(rule.netns))
    return proto::Error{Errc::kInvalid, "bad network namespace name '" + rule.netns + "'"};
  std::vector<std::string> argv;
  if (!rule.netns.empty()) argv = {"ip", "netns", "exec", rule.netns};
  // -w 10: wait for the xtables lock (other tools may hold it), but boundedly.
  for (const char* a : {"iptables", "-w", "10", op, "FORWARD", "-i"}) argv.emplace_back(a);
  argv.push_back(rule.app_if);
  if (!rule.out_if.empty()) {
    argv.emplace_back("-o");
    argv.push_back(rule.out_if);
  }
  for (const char* a : {"-j", "NFQUEUE", "--queue-num"}) argv.emplace_back(a);
  argv.push_back(std::to_string(rule.queue_num));
  return argv;
}

proto::Result<bool> holder_rule_present(const HolderRule& rule) {
  auto argv = holder_rule_argv(rule, "-C");
  if (!argv) return argv.error();
  if (auto t = check_tools(rule); !t) return t.error();
  CommandResult r = run_command(*argv);
  if (r.exited(0)) return true;
  if (r.exited(kIptablesAbsent)) return false;
  return proto::Error{Errc::kSystem, r.describe(*argv)};
}

proto::Result<bool> install_holder_rule(const HolderRule& rule) {
  auto present = holder_rule_present(rule);
  if (!present) return present.error();
  if (*present) return false;
  auto argv = holder_rule_argv(rule, "-A");
  CommandResult r = run_command(*argv);
  if (!r.exited(0)) return proto::Error{Errc::kSystem, r.describe(*argv)};
  spdlog::info("holder: rule installed{}{}: FORWARD -i {} -> NFQUEUE {} (fail-closed, no bypass)",
               rule.netns.empty() ? "" : " in netns ", rule.netns, rule.app_if, rule.queue_num);
  return true;
}

proto::Result<bool> remove_holder_rule(const HolderRule& rule) {
  auto argv = holder_rule_argv(rule, "-D");
  if (!argv) return argv.error();
  bool removed = false;
  for (int i = 0; i < kMaxCopies; ++i) {
    auto present = holder_rule_present(rule);
    if (!present) return present.error();
    if (!*present) break;
    CommandResult r = run_command(*argv);
    if (!r.exited(0)) return proto::Error{Errc::kSystem, r.describe(*argv)};
    removed = true;
  }
  if (removed)
    spdlog::info("holder: rule removed{}{}: traffic from {} now flows unheld",
                 rule.netns.empty() ? "" : " in netns ", rule.netns, rule.app_if);
  return removed;
}

}  // namespace tideway::agent

// The iptables rule that sends a protected namespace's outbound packets to
// the holder's NFQUEUE, in the FORWARD chain of the router namespace in front
// of it (DESIGN 7: not the application's OUTPUT chain):
//
//   iptables -w 10 -A FORWARD -i APP_IF [-o OUT_IF] -j NFQUEUE --queue-num N
//
// Never --queue-bypass: with no holder listening the kernel drops matching
// packets, so a crashed agent stops client traffic instead of leaking it.
// Only forwarded packets arriving from APP_IF match; the agent's own
// replication and management traffic (local, OUTPUT) and traffic toward the
// application are never queued.
//
// Lifecycle: `unprotect` calls remove_holder_rule (traffic then flows
// unheld); a crash leaves the rule in place (fail-closed) until an operator
// or a restarted agent decides. Blocking; call from setup/teardown code.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace tideway::agent {

struct HolderRule {
  std::string app_if;   // interface toward the protected namespace (required)
  std::string out_if;   // optional: interface toward the clients
  uint16_t queue_num = 0;
  std::string netns;    // optional: a named namespace (`ip netns exec NAME`)
};

// Linux interface names: 1-15 of [A-Za-z0-9_.-].
bool valid_interface_name(std::string_view name);
// Namespace names as `ip netns` accepts them, restricted to the same set
// (1-64 characters, not "." or "..").
bool valid_netns_name(std::string_view name);

// The argv for `iptables <op> <rule>` (op: -A, -C, -D), with the
// `ip netns exec` prefix when rule.netns is set. Exposed for tests and logs.
proto::Result<std::vector<std::string>> holder_rule_argv(const HolderRule& rule, const char* op);

// Whether the rule is present.
proto::Result<bool> holder_rule_present(const HolderRule& rule);
// Adds the rule unless present (checked with -C first). true = added.
proto::Result<bool> install_holder_rule(const HolderRule& rule);
// Deletes every copy of the rule. true = at least one was removed.
proto::Result<bool> remove_holder_rule(const HolderRule& rule);

}  // namespace tideway::agent

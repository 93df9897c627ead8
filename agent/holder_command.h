// Runs an external command (iptables, ip) without a shell, so arguments are
// never re-parsed, and reports what went wrong in words an operator can act
// on. Used by holder_rules; blocking, for setup and teardown only.
#pragma once

#include <string>
#include <vector>

namespace tideway::agent {

struct CommandResult {
  int exit_code = -1;    // valid when spawned and exited normally
  int signal = 0;        // non-zero: killed by this signal
  int spawn_errno = 0;   // non-zero: could not start (ENOENT: not installed)
  std::string output;    // stdout and stderr together, capped (see .cpp)

  bool started() const { return spawn_errno == 0; }
  bool exited(int code) const { return started() && signal == 0 && exit_code == code; }
  // "iptables -C ...: exit 2: <output>" or "iptables: not found in PATH".
  std::string describe(const std::vector<std::string>& argv) const;
};

// argv[0] is looked up in PATH. stdin is /dev/null.
CommandResult run_command(const std::vector<std::string>& argv);

// True if `name` is an executable file in PATH (or a path to one).
bool find_in_path(const std::string& name);

}  // namespace tideway::agent

// The control socket's line protocol, as pure parsing and formatting.
//
// One command per line, one reply line per command ("ok ...", "error: ...",
// or a JSON object for `stats` and `config`):
//   partition on|off|toggle [ab|ba]   cut / restore the link (both ways, or one)
//   set KEY=VALUE ...                 change parameters; KEY may be prefixed
//                                     by `ab.` or `ba.` for one direction
//       delay_ms=25 jitter_ms=1 rate_mbit=100 (0 = unlimited)
//       loss=0.01 (or loss=1%) queue_kb=512 (0 = one BDP, min 2 ms, 64 KiB)
//   stats                             JSON counters per direction
//   config                            JSON of the current parameters
//   reset-stats                       zero the counters
//   help                              this list
// Direction "ab" is namespace A -> namespace B.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "wan/wanem/link_model.h"

namespace tideway::wanem {

enum Dir : uint8_t { kDirAB = 0, kDirBA = 1 };
inline constexpr uint8_t kMaskAB = 1, kMaskBA = 2, kMaskBoth = 3;
const char* dir_name(Dir d);  // "a_to_b" / "b_to_a"

struct Setting {
  uint8_t dirs = kMaskBoth;
  std::string key;  // one of the keys above, without the direction prefix
  double value = 0;
};

enum class PartitionMode : uint8_t { kOn, kOff, kToggle };

struct PartitionCmd { PartitionMode mode; uint8_t dirs; };
struct SetCmd { std::vector<Setting> settings; };
struct StatsCmd {};
struct ConfigCmd {};
struct ResetStatsCmd {};
struct HelpCmd {};
struct ParseError { std::string message; };

using Command = std::variant<PartitionCmd, SetCmd, StatsCmd, ConfigCmd, ResetStatsCmd, HelpCmd,
                             ParseError>;

Command parse_command(std::string_view line);

// Applies `settings` to copies of both directions' parameters and validates
// them; on success replaces `params` and returns "", else leaves `params`
// untouched and returns the reason.
std::string apply_settings(std::array<LinkParams, 2>& params, const std::vector<Setting>& settings);

// Parses one VALUE for KEY (used by the CLI too). Returns "" or the reason.
std::string parse_setting_value(std::string_view key, std::string_view text, double& out);

std::string help_text();  // one line
std::string config_json(const std::array<LinkParams, 2>& params);

}  // namespace tideway::wanem

#include "wan/wanem/control_protocol.h"

#include <charconv>
#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

namespace tideway::wanem {

namespace {

constexpr std::array<std::string_view, 5> kKeys = {"delay_ms", "jitter_ms", "rate_mbit", "loss",
                                                   "queue_kb"};

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ' && s[j] != '\t' && s[j] != '\r' && s[j] != '\n') ++j;
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

bool parse_double(std::string_view text, double& out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  return ec == std::errc{} && ptr == end && std::isfinite(out);
}

Nanos ms_to_nanos(double ms) { return Nanos{static_cast<int64_t>(std::llround(ms * 1e6))}; }

void apply_one(LinkParams& p, const Setting& s) {
  if (s.key == "delay_ms") p.delay = ms_to_nanos(s.value);
  else if (s.key == "jitter_ms") p.jitter = ms_to_nanos(s.value);
  else if (s.key == "rate_mbit") p.rate_bps = static_cast<uint64_t>(std::llround(s.value * 1e6));
  else if (s.key == "loss") p.loss = s.value;
  else if (s.key == "queue_kb") p.queue_bytes = static_cast<uint64_t>(std::llround(s.value * 1024));
}

nlohmann::json params_json(const LinkParams& p) {
  return {{"delay_ms", static_cast<double>(p.delay.count()) / 1e6},
          {"jitter_ms", static_cast<double>(p.jitter.count()) / 1e6},
          {"rate_mbit", static_cast<double>(p.rate_bps) / 1e6},
          {"loss", p.loss},
          {"queue_kb", static_cast<double>(p.queue_bytes) / 1024.0},
          {"effective_queue_kb", static_cast<double>(p.effective_queue_bytes()) / 1024.0},
          {"partitioned", p.partitioned}};
}

}  // namespace

const char* dir_name(Dir d) { return d == kDirAB ? "a_to_b" : "b_to_a"; }

std::string parse_setting_value(std::string_view key, std::string_view text, double& out) {
  bool known = false;
  for (auto k : kKeys) known = known || k == key;
  if (!known) {
    return "unknown key '" + std::string(key) +
           "' (keys: delay_ms jitter_ms rate_mbit loss queue_kb, optionally prefixed ab. or ba.)";
  }
  bool percent = false;
  if (key == "loss" && !text.empty() && text.back() == '%') {
    percent = true;
    text.remove_suffix(1);
  }
  double v = 0;
  if (!parse_double(text, v)) {
    return "value '" + std::string(text) + "' for " + std::string(key) + " is not a number";
  }
  if (percent) v /= 100.0;
  if (v < 0) return std::string(key) + " must be >= 0";
  out = v;
  return {};
}

Command parse_command(std::string_view line) {
  const auto words = split_words(line);
  if (words.empty()) return ParseError{"empty command (try: help)"};
  const std::string_view verb = words[0];
  if (verb == "partition") {
    if (words.size() < 2 || words.size() > 3) {
      return ParseError{"usage: partition on|off|toggle [ab|ba]"};
    }
    PartitionCmd cmd{PartitionMode::kOn, kMaskBoth};
    if (words[1] == "on") cmd.mode = PartitionMode::kOn;
    else if (words[1] == "off") cmd.mode = PartitionMode::kOff;
    else if (words[1] == "toggle") cmd.mode = PartitionMode::kToggle;
    else return ParseError{"partition: expected on, off or toggle, got '" + std::string(words[1]) + "'"};
    if (words.size() == 3) {
      if (words[2] == "ab") cmd.dirs = kMaskAB;
      else if (words[2] == "ba") cmd.dirs = kMaskBA;
      else if (words[2] == "both") cmd.dirs = kMaskBoth;
      else return ParseError{"partition: direction must be ab, ba or both"};
    }
    return cmd;
  }
  if (verb == "set") {
    if (words.size() < 2) return ParseError{"usage: set KEY=VALUE ... (try: help)"};
    SetCmd cmd;
    for (size_t i = 1; i < words.size(); ++i) {
      const std::string_view w = words[i];
      const size_t eq = w.find('=');
      if (eq == std::string_view::npos) {
        return ParseError{"set: '" + std::string(w) + "' is not KEY=VALUE"};
      }
      Setting s;
      std::string_view key = w.substr(0, eq);
      if (key.starts_with("ab.")) { s.dirs = kMaskAB; key.remove_prefix(3); }
      else if (key.starts_with("ba.")) { s.dirs = kMaskBA; key.remove_prefix(3); }
      if (auto err = parse_setting_value(key, w.substr(eq + 1), s.value); !err.empty()) {
        return ParseError{"set: " + err};
      }
      s.key = std::string(key);
      cmd.settings.push_back(std::move(s));
    }
    return cmd;
  }
  if (words.size() != 1) return ParseError{std::string(verb) + " takes no arguments"};
  if (verb == "stats") return StatsCmd{};
  if (verb == "config") return ConfigCmd{};
  if (verb == "reset-stats") return ResetStatsCmd{};
  if (verb == "help") return HelpCmd{};
  return ParseError{"unknown command '" + std::string(verb) + "' (try: help)"};
}

std::string apply_settings(std::array<LinkParams, 2>& params, const std::vector<Setting>& settings) {
  std::array<LinkParams, 2> next = params;
  for (const auto& s : settings) {
    for (int d = 0; d < 2; ++d) {
      if (s.dirs & (1u << d)) apply_one(next[static_cast<size_t>(d)], s);
    }
  }
  for (int d = 0; d < 2; ++d) {
    if (auto err = next[static_cast<size_t>(d)].validate(); !err.empty()) {
      return std::string(dir_name(static_cast<Dir>(d))) + ": " + err;
    }
  }
  params = next;
  return {};
}

std::string help_text() {
  return "commands: partition on|off|toggle [ab|ba] | set KEY=VALUE... (keys delay_ms jitter_ms "
         "rate_mbit loss queue_kb; prefix ab. or ba. for one direction; rate_mbit=0 unlimited; "
         "loss=0.01 or loss=1%; queue_kb=0 one BDP, min 2 ms and 64 KiB) | stats | config | reset-stats | help";
}

std::string config_json(const std::array<LinkParams, 2>& params) {
  nlohmann::json j = {{dir_name(kDirAB), params_json(params[0])},
                      {dir_name(kDirBA), params_json(params[1])}};
  return j.dump();
}

}  // namespace tideway::wanem

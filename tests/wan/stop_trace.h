// Recorded pre-copy traces (tests/data/migration_traces) as the per-
// iteration statistics a stop policy sees. Two CSV forms, told apart by the
// header line ('#' lines are comments):
//
// * migsim --trace-csv: one row per live iteration,
//   iteration,pages_sent,pages_skipped,pages_dirtied,pages_remaining,elapsed_ms,bytes_sent
//
// * record_qemu_traces.sh: one row per MIGRATION_PASS event, the raw
//   query-migrate counters read right after it,
//   t_ms,dirty_sync_count,transferred,remaining,total,duplicate,normal,...
//   Pass i runs between the rows of syncs i and i+1: it sent the change of
//   duplicate + normal pages and of transferred bytes. A pass sends exactly
//   the pages the sync before it found dirty, so what pass i left dirty is
//   what pass i+1 sent; "remaining" itself is read a little late (the next
//   pass has begun) and is used only for the last pass. The trace ends at
//   the first row that is not the next sync (events that came too close
//   together to be queried one by one).
#pragma once

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "wan/smart_stop.h"

namespace tideway::wan::testing {

inline std::vector<uint64_t> split_u64(const std::string& line) {
  std::vector<uint64_t> v;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) v.push_back(std::stoull(cell));  // "12.5" -> 12: only mbps has a fraction
  return v;
}

inline std::vector<IterationStats> load_trace(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::string line, header;
  std::vector<std::vector<uint64_t>> rows;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (header.empty()) {
      header = line;
      continue;
    }
    rows.push_back(split_u64(line));
  }
  std::vector<IterationStats> out;
  if (header.rfind("iteration,", 0) == 0) {
    for (const auto& r : rows) {
      if (r.size() != 7) throw std::runtime_error(path + ": a row without 7 fields");
      out.push_back({static_cast<uint32_t>(r[0]), r[1], r[3], r[4], std::chrono::milliseconds(r[5]), r[2], r[6]});
    }
    return out;
  }
  if (header.rfind("t_ms,dirty_sync_count,", 0) != 0) throw std::runtime_error(path + ": unknown header " + header);
  // Columns: 0 t_ms, 1 dirty_sync_count, 2 transferred, 3 remaining, 5 duplicate, 6 normal.
  size_t n = 1;
  while (n < rows.size() && rows[n][1] == rows[n - 1][1] + 1) ++n;
  auto pages = [&](size_t i) { return rows[i][5] + rows[i][6]; };
  for (size_t i = 0; i + 1 < n; ++i) {
    IterationStats s;
    s.iteration = static_cast<uint32_t>(i + 1);
    s.pages_sent = pages(i + 1) - pages(i);
    s.bytes_sent = rows[i + 1][2] - rows[i][2];
    s.pages_remaining = i + 2 < n ? pages(i + 2) - pages(i + 1) : rows[i + 1][3] / 4096;
    s.pages_dirtied = s.pages_remaining;  // unique pages dirtied during the pass, found by the next sync
    s.elapsed = std::chrono::milliseconds(rows[i + 1][0]);
    out.push_back(s);
  }
  return out;
}

struct Outcome {
  uint32_t stop_after = 0;  // live iterations before the stop-and-copy; 0 = never stopped in the trace
  uint64_t final_pages = 0;  // what the stop-and-copy must send
  uint64_t pages_sent = 0;   // in the live iterations
  std::string reason;
};

// Feeds the trace to a policy until it says stop.
inline Outcome replay(const std::vector<IterationStats>& trace, const StopPolicyConfig& config) {
  StopPolicy policy(config);
  Outcome o;
  for (const auto& s : trace) {
    const StopDecision d = policy.after_iteration(s);
    if (d.invalid_input) throw std::runtime_error("trace rejected: " + d.reason);
    o.pages_sent += s.pages_sent;
    if (d.stop) {
      o.stop_after = s.iteration;
      o.final_pages = s.pages_remaining;
      o.reason = d.reason;
      return o;
    }
  }
  return o;
}

}  // namespace tideway::wan::testing

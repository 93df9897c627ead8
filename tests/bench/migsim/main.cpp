// migsim: simulated pre-copy migration of a simulated guest over a WAN
// link, in virtual time, through the real codec (docs/migsim/README.md).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "tests/bench/migsim/migration_sim.h"

namespace {

using namespace tideway;
using nlohmann::json;

// "1GiB", "512MiB", "1G", "4096" (bytes) -> bytes; 0 on a bad value.
uint64_t parse_size(const std::string& s) {
  size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(s, &pos);
  } catch (...) {
    return 0;
  }
  const std::string unit = s.substr(pos);
  uint64_t mult = 1;
  if (unit == "K" || unit == "KiB") mult = 1ull << 10;
  else if (unit == "M" || unit == "MiB") mult = 1ull << 20;
  else if (unit == "G" || unit == "GiB") mult = 1ull << 30;
  else if (!unit.empty() && unit != "B") return 0;
  if (v > (1ull << 40) / mult) return 0;
  return v * mult;
}

json encodings(const migsim::EncodingBytes& e) {
  return {{"page_bytes", {{"zero", e.zero}, {"raw", e.raw}, {"literal", e.literal}, {"cbr_hit", e.cbr_hit},
                          {"delta", e.delta}, {"unchanged", e.unchanged}}},
          {"wire_bytes", {{"headers", e.wire_headers}, {"control", e.wire_control}, {"literal", e.wire_literal}}}};
}

json to_json(const migsim::SimConfig& c, const std::string& profile, const migsim::SimResult& r) {
  json its = json::array();
  for (const auto& i : r.iterations)
    its.push_back({{"iteration", i.iteration}, {"final", i.final}, {"start_s", i.start_s},
                   {"duration_s", i.duration_s}, {"pages_to_send", i.pages_to_send}, {"pages_sent", i.pages_sent},
                   {"pages_skipped", i.pages_skipped}, {"pages_dirtied", i.pages_dirtied},
                   {"pages_remaining", i.pages_remaining}, {"codec_bytes", i.codec_bytes},
                   {"data_bytes", i.channel_bytes}, {"batches", i.batches}, {"bytes_by_encoding", encodings(i.by_encoding)},
                   {"decision", i.decision}});
  json cfg = {{"profile", profile}, {"memory_bytes", c.guest.pages * sim::kSimPageSize}, {"seed", c.guest.seed},
              {"rule", wan::stop_rule_name(c.stop.rule)}, {"window", c.stop.window},
              {"max_iterations", c.stop.max_iterations}, {"codec", c.use_codec}, {"skip_redirtied", c.skip_redirtied},
              {"link_mbit", c.link.rate_bits_per_s / 1e6},
              {"rtt_ms", std::chrono::duration<double, std::milli>(c.link.rtt).count()}};
  if (c.use_codec)
    cfg["codec_config"] = {{"sub_blocks", c.codec.sub_blocks}, {"cache_bytes", c.codec.cache_bytes},
                           {"delta_store_bytes", c.codec.delta_store_bytes}, {"zstd_level", c.codec.zstd_level}};
  json totals = {{"data_bytes", r.channel_bytes}, {"codec_bytes", r.codec_bytes}, {"total_time_s", r.total_time_s},
                 {"pause_time_s", r.pause_time_s}, {"iterations", r.iterations.size()},
                 {"live_iterations", r.iterations.size() - 1}, {"stop_reason", r.stop_reason},
                 {"guest_writes", r.guest_writes}, {"bytes_by_encoding", encodings(r.by_encoding)},
                 {"data_iteration1_bytes", r.iterations.front().channel_bytes},
                 {"data_later_bytes", r.channel_bytes - r.iterations.front().channel_bytes}};
  if (r.verified) totals["mismatched_pages"] = r.mismatched_pages;
  if (c.use_codec)
    totals["codec"] = {{"records", r.codec.records}, {"zero", r.codec.zero_records}, {"raw", r.codec.raw_records},
                       {"cbr", r.codec.cbr_records}, {"delta", r.codec.delta_records},
                       {"mixed", r.codec.mixed_records}, {"hash_collisions", r.codec.hash_collisions},
                       {"cpu_s", static_cast<double>(r.codec.cpu_ns) * 1e-9}};
  return {{"config", cfg}, {"iterations", its}, {"totals", totals}};
}

void print_text(const migsim::SimResult& r) {
  std::printf("%4s %9s %8s %9s %9s %9s %9s %11s  %s\n", "iter", "start_s", "dur_s", "to_send", "sent", "skipped",
              "dirtied", "data_MB", "decision");
  for (const auto& i : r.iterations)
    std::printf("%4u %9.2f %8.3f %9llu %9llu %9llu %9llu %11.2f  %s\n", i.iteration, i.start_s, i.duration_s,
                static_cast<unsigned long long>(i.pages_to_send), static_cast<unsigned long long>(i.pages_sent),
                static_cast<unsigned long long>(i.pages_skipped), static_cast<unsigned long long>(i.pages_dirtied),
                static_cast<double>(i.channel_bytes) / 1e6, i.decision.c_str());
  std::printf("data %.1f MB, total time %.2f s, pause %.3f s, %zu iterations (%zu live); stop: %s\n",
              static_cast<double>(r.channel_bytes) / 1e6, r.total_time_s, r.pause_time_s, r.iterations.size(),
              r.iterations.size() - 1, r.stop_reason.c_str());
  if (r.verified) std::printf("destination check: %llu pages differ\n", static_cast<unsigned long long>(r.mismatched_pages));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "migsim: simulates a pre-copy live migration of a simulated guest (agent/sim_guest) over a WAN link in "
      "virtual time. Every iteration sends the dirty pages through the real WAN codec, the guest runs on for the "
      "transfer time, and the stop policy decides when to pause for the final stop-and-copy (the pause time). "
      "Defaults: the paper's setup (1 GiB, 100 Mbit/s, 20 ms RTT, Xen's deferral of re-dirtied pages)."};
  std::string profile = "tpcw", memory = "1GiB", rule = "smart", trace_csv;
  uint64_t seed = 1;
  double rate_mbit = 100, rtt_ms = 20;
  uint32_t window = 0, max_iterations = 0, sub_blocks = 4, downtime_ms = 300;
  uint64_t cache_mb = 100, delta_mb = 100;
  int zstd_level = 1;
  bool raw = false, no_cbr = false, no_delta = false, no_zstd = false, no_skip = false, verify = false, as_json = false;
  app.add_option("--profile", profile, "workload: tpcw, kernel, specjbb")->capture_default_str();
  app.add_option("--memory", memory, "guest memory, e.g. 1GiB, 512MiB")->capture_default_str();
  app.add_option("--rule", rule, "stop rule: smart, xen (30 iterations), xen410 (5), qemu (downtime limit)")
      ->capture_default_str();
  app.add_option("--window", window, "smart stop window in iterations (default: the rule's)");
  app.add_option("--max-iterations", max_iterations, "live iterations at most (default: the rule's)");
  app.add_option("--downtime-ms", downtime_ms, "qemu rule: downtime limit")->capture_default_str();
  app.add_flag("--raw", raw, "no codec: every page raw (4 KiB + 8 bytes), as the paper's Xen sent them");
  app.add_flag("--no-cbr", no_cbr, "codec without the CBR cache");
  app.add_flag("--no-delta", no_delta, "codec without page deltas");
  app.add_flag("--no-zstd", no_zstd, "codec without zstd");
  app.add_option("--cache-mb", cache_mb, "CBR cache (MiB)")->capture_default_str();
  app.add_option("--delta-mb", delta_mb, "delta store (MiB)")->capture_default_str();
  app.add_option("--sub-blocks", sub_blocks, "CBR sub-blocks per page: 1, 2, 4, 8")->capture_default_str();
  app.add_option("--zstd-level", zstd_level, "zstd level")->capture_default_str();
  app.add_option("--rate-mbit", rate_mbit, "link rate (Mbit/s)")->capture_default_str();
  app.add_option("--rtt-ms", rtt_ms, "link round-trip time (ms)")->capture_default_str();
  app.add_option("--seed", seed, "guest seed")->capture_default_str();
  app.add_flag("--no-skip", no_skip, "send re-dirtied pages anyway (QEMU's behaviour)");
  app.add_flag("--verify", verify, "decode at a simulated destination and check every page at the end");
  app.add_flag("--json", as_json, "print the per-iteration trace and totals as JSON");
  app.add_option("--trace-csv", trace_csv, "also write the per-iteration statistics the stop policy saw (CSV)");
  CLI11_PARSE(app, argc, argv);

  migsim::SimConfig c;
  auto prof = sim::find_profile(profile);
  if (!prof) {
    std::fprintf(stderr, "migsim: unknown profile '%s' (tpcw, kernel, specjbb)\n", profile.c_str());
    return 2;
  }
  const uint64_t bytes = parse_size(memory);
  if (bytes == 0 || bytes % sim::kSimPageSize != 0) {
    std::fprintf(stderr, "migsim: bad --memory '%s' (a multiple of 4 KiB, e.g. 1GiB)\n", memory.c_str());
    return 2;
  }
  auto r = wan::parse_stop_rule(rule);
  if (!r) {
    std::fprintf(stderr, "migsim: unknown rule '%s' (smart, xen, xen410, qemu)\n", rule.c_str());
    return 2;
  }
  c.guest = {*prof, bytes / sim::kSimPageSize, seed};
  c.stop = wan::preset(*r);
  if (window) c.stop.window = window;
  if (max_iterations) c.stop.max_iterations = max_iterations;
  c.stop.downtime_limit = std::chrono::milliseconds(downtime_ms);
  c.use_codec = !raw;
  c.codec.sub_blocks = sub_blocks;
  c.codec.cache_bytes = no_cbr ? 0 : cache_mb << 20;
  c.codec.delta_store_bytes = no_delta ? 0 : delta_mb << 20;
  c.codec.zstd_level = no_zstd ? 0 : zstd_level;
  c.link.rate_bits_per_s = rate_mbit * 1e6;
  c.link.rtt = std::chrono::nanoseconds(static_cast<int64_t>(rtt_ms * 1e6));
  c.skip_redirtied = !no_skip;
  c.verify = verify;

  auto res = migsim::run_migration(c);
  if (!res) {
    std::fprintf(stderr, "migsim: %s\n", res.error().detail.c_str());
    return 2;
  }
  if (!trace_csv.empty()) {
    std::ofstream f(trace_csv);
    f << "# migsim --profile " << profile << " --memory " << memory << " --rule " << rule << " --seed " << seed
      << (raw ? " --raw" : "") << (no_skip ? " --no-skip" : "") << " (" << rate_mbit << " Mbit/s, " << rtt_ms
      << " ms RTT)\n";
    f << "iteration,pages_sent,pages_skipped,pages_dirtied,pages_remaining,elapsed_ms,bytes_sent\n";
    for (const auto& i : res->iterations) {
      if (i.final) break;
      f << i.iteration << ',' << i.pages_sent << ',' << i.pages_skipped << ',' << i.pages_dirtied << ','
        << i.pages_remaining << ',' << static_cast<uint64_t>((i.start_s + i.duration_s) * 1000) << ','
        << i.channel_bytes << '\n';
    }
    if (!f) {
      std::fprintf(stderr, "migsim: cannot write %s\n", trace_csv.c_str());
      return 1;
    }
  }
  if (as_json)
    std::cout << to_json(c, profile, *res).dump(1) << '\n';
  else
    print_text(*res);
  if (res->verified && res->mismatched_pages != 0) {
    std::fprintf(stderr, "migsim: %llu pages differ at the destination\n",
                 static_cast<unsigned long long>(res->mismatched_pages));
    return 1;
  }
  return 0;
}

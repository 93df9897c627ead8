#include "agent/sim_guest/sim_profile.h"

#include <cmath>

namespace tideway::sim {

namespace {

// Calibration (seeds/004 section 6.5.6, 1 GB VMs, 100 Mbit/s, 20 ms RTT,
// Xen's default 30 iterations, which defers pages dirtied again before
// their turn). What each profile was fitted to:
//   Table 6.2: data of iteration 1 and of iterations 2-30 (with page
//     deltas) and what the deltas saved: TPC-W 954 / 315 / 172 MB, kernel
//     877 / 394 / 187, SPECjbb 932 / 163 / 127. So iteration 1 skipped ~70,
//     ~147 and ~92 MB (the sets dirtied faster than the link reaches them),
//     and deltas saved 35%, 32% and 44% of the later iterations' pages.
//   Table 6.1 pause times 3.7 / 5.9 / 7.8 s: the final copy, ~44, ~70 and
//     ~92 MB at ~94 Mbit/s of payload; iterations 2-30 send ~17, ~20, ~10
//     MB each (Fig. 6.10: TPC-W "over 20MB per iteration").
//   Figs. 6.4c / 6.11: SPECjbb's redundancy is mostly zero pages; kernel
//     compile ~13%, less than half of it zero pages; TPC-W in between (its
//     CloudNet data, 0.9 GB, leaves ~20% for CBR to find in iteration 1).
//   Fig. 6.5: kernel-compile pages mostly see very small changes; TPC-W
//     has small changes and pages rewritten almost entirely.
//   Fig. 6.4b and section 6.5.6: the kernel compile's dirtying rate varies.
// The resulting fit is in docs/migsim/README.md.
SimProfile tpcw() {
  SimProfile p;
  p.name = "tpcw";
  p.calibration = "TPC-W (Tomcat + MySQL, 600 clients): Tables 6.1, 6.2, Figs 6.5, 6.10";
  p.zero_fraction = 0.12;
  p.duplicate_fraction = 0.08;
  p.full_write_fraction = 0.55;
  p.write_bytes = 128;
  p.fields_per_page = 6;
  p.shared_subblock_fraction = 0.15;
  p.hot_fraction = 7000.0 / kPagesPerGiB;
  p.warm_fraction = 12000.0 / kPagesPerGiB;
  p.hot_writes_per_s = 40000;
  p.warm_writes_per_s = 3000;
  p.burst_period_s = 1.0;
  p.burst_spread = 0.3;
  return p;
}

SimProfile kernel_compile() {
  SimProfile p;
  p.name = "kernel";
  p.calibration = "Linux kernel compile: Tables 6.1, 6.2, Figs 6.4b, 6.5, 6.11";
  p.zero_fraction = 0.06;
  p.duplicate_fraction = 0.07;
  p.full_write_fraction = 0.4;
  p.write_bytes = 64;
  p.fields_per_page = 4;
  p.shared_subblock_fraction = 0.05;
  p.hot_fraction = 12000.0 / kPagesPerGiB;
  p.warm_fraction = 30000.0 / kPagesPerGiB;
  p.hot_writes_per_s = 60000;
  p.warm_writes_per_s = 2000;
  p.burst_period_s = 2.0;
  p.burst_spread = 0.7;
  return p;
}

SimProfile specjbb() {
  SimProfile p;
  p.name = "specjbb";
  p.calibration = "SPECjbb 2005: Tables 6.1, 6.2, Fig 6.11 (mostly zero pages)";
  p.zero_fraction = 0.62;
  p.duplicate_fraction = 0.04;
  p.full_write_fraction = 0.15;
  p.write_bytes = 64;
  p.fields_per_page = 8;
  p.shared_subblock_fraction = 0.1;
  p.hot_fraction = 20000.0 / kPagesPerGiB;
  p.warm_fraction = 3000.0 / kPagesPerGiB;
  p.hot_writes_per_s = 150000;
  p.warm_writes_per_s = 2500;
  p.burst_period_s = 1.0;
  p.burst_spread = 0.2;
  return p;
}

bool fraction(double v) { return std::isfinite(v) && v >= 0 && v <= 1; }

}  // namespace

std::optional<SimProfile> find_profile(std::string_view name) {
  if (name == "tpcw") return tpcw();
  if (name == "kernel") return kernel_compile();
  if (name == "specjbb") return specjbb();
  return std::nullopt;
}

std::vector<std::string> profile_names() { return {"tpcw", "kernel", "specjbb"}; }

proto::Result<void> validate(const SimProfile& p) {
  auto bad = [&](const std::string& why) {
    return proto::Result<void>(proto::Errc::kInvalid, "profile " + p.name + ": " + why);
  };
  if (!fraction(p.zero_fraction) || !fraction(p.duplicate_fraction) || !fraction(p.full_write_fraction) ||
      !fraction(p.shared_subblock_fraction) || !fraction(p.hot_fraction) || !fraction(p.warm_fraction))
    return bad("every fraction must be in [0, 1]");
  if (p.zero_fraction + p.duplicate_fraction > 1) return bad("zero + duplicate fractions exceed 1");
  if (p.hot_fraction + p.warm_fraction > 1 - p.zero_fraction)
    return bad("hot + warm sets exceed the non-zero pages");
  if (p.duplicate_patterns < 1 || p.duplicate_patterns > (1u << 20)) return bad("duplicate_patterns must be 1..2^20");
  // Fields live in the 3 KiB before a possible shared 1 KiB block.
  if (p.write_bytes < 1 || p.write_bytes > 3072) return bad("write_bytes must be 1..3072");
  if (p.fields_per_page < 1 || p.fields_per_page > 3072 / p.write_bytes)
    return bad("fields_per_page must be 1..(3072 / write_bytes)");
  for (double r : {p.hot_writes_per_s, p.warm_writes_per_s})
    if (!std::isfinite(r) || r < 0 || r > 1e8) return bad("write rates must be 0..1e8 per second");
  if (!std::isfinite(p.burst_period_s) || p.burst_period_s < 0.001 || p.burst_period_s > 3600)
    return bad("burst_period_s must be 0.001..3600");
  if (!fraction(p.burst_spread)) return bad("burst_spread must be in [0, 1]");
  return {};
}

}  // namespace tideway::sim

// When to stop pre-copying memory and pause the VM for the final
// stop-and-copy. A pure, deterministic policy over per-iteration
// statistics, shared by every hypervisor driver (QEMU, Xen, the simulated
// guest); docs/migsim/README.md has the rules and the traces they were
// tested on.
//
// Smart stop (seeds/004 section 6.4.2.1): phase 1 iterates while an
// iteration sends more pages than were dirtied while it ran (each pass
// still shrinks the pause; "sent" counts the skipped pages too, as they
// were part of the iteration's work). At the crossover (dirtied >= sent) phase 2
// begins: it stops at a local minimum, i.e. when the pages to send at the
// start of the next iteration are fewer than at the start of every
// iteration in a sliding window of recent ones. Hard caps (iterations,
// time, total data) and "few pages remain" stop it in any phase.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace tideway::wan {

struct IterationStats {
  uint32_t iteration = 0;        // 1-based; iteration 1 sends all pages
  uint64_t pages_sent = 0;       // pages sent in this iteration
  uint64_t pages_dirtied = 0;    // pages dirtied while it ran
  uint64_t pages_remaining = 0;  // dirty pages at its end = what the next iteration would send
  std::chrono::nanoseconds elapsed{};  // since the migration began
  // Optional (0 when the driver does not know; added after the fields above
  // so positional initialisers of those keep working):
  // Pages this iteration was to send but deferred because they were dirtied
  // again before their turn (Xen does this; QEMU does not: 0). sent +
  // skipped = the dirty pages the iteration started with.
  uint64_t pages_skipped = 0;
  // Bytes this iteration put on the wire (after the codec); 0 = unknown,
  // then pages_sent x page_size. Only the QEMU rule's bandwidth estimate uses it.
  uint64_t bytes_sent = 0;
};

enum class StopRule {
  kSmart,        // seeds/004 section 6.4.2.1, with the caps below
  kXenDefault,   // Xen 3.x-4.x xc_domain_save: 29 live iterations (30 with the
                 // stop-and-copy), an iteration that sent < 50 pages, or more than
                 // 3x memory sent
  kXen410,       // Xen >= 4.10 precopy policy: 5 live iterations or < 50 dirty pages
  kQemuDefault,  // QEMU: remaining bytes < bandwidth x downtime limit (no iteration cap)
};

// "smart", "xen", "xen410", "qemu" (what CLIs accept); nullopt otherwise.
std::optional<StopRule> parse_stop_rule(std::string_view name);
const char* stop_rule_name(StopRule rule);

struct StopPolicyConfig {
  StopRule rule = StopRule::kSmart;
  // Smart stop: previous iterations a new minimum must beat. The paper
  // gives no size; 4 keeps its 7-10 iterations on our traces (docs/migsim).
  uint32_t window = 4;
  // Live (pre-copy) iterations at most; the stop-and-copy is one more. Every
  // rule obeys it, so a guest that never converges still ends.
  uint32_t max_iterations = 29;
  // Stop after the first iteration that ends this long after the start.
  std::chrono::seconds max_time{600};
  // Stop once fewer dirty pages than this remain (the final copy is tiny).
  uint64_t min_remaining_pages = 50;
  // Guest memory in pages; with max_sent_factor > 0, stop once more than
  // factor x total_pages were sent (Xen's default is 3). 0 = no such cap.
  uint64_t total_pages = 0;
  double max_sent_factor = 0;
  // QEMU rule: link bandwidth (0 = estimate from the last iteration's bytes
  // and duration, as QEMU does) and the pause the operator accepts.
  double bandwidth_bytes_per_s = 0;
  std::chrono::milliseconds downtime_limit{300};
  uint32_t page_size = 4096;
};

// The defaults of each rule as the paper and the hypervisors define them.
StopPolicyConfig preset(StopRule rule);
// kInvalid with the reason for a value no policy can work with.
proto::Result<void> validate(const StopPolicyConfig& config);

struct StopDecision {
  bool stop = false;
  // Why, for logs and reports, e.g. "local minimum: 812 pages remain, fewer
  // than in each of the last 4 iterations (min 1040)".
  std::string reason;
  // The statistics were rejected (out of order, time going backwards): the
  // policy's state is unchanged and it says stop, the one safe answer.
  bool invalid_input = false;
};

class StopPolicy {
 public:
  // `config` must pass validate() (asserted).
  explicit StopPolicy(StopPolicyConfig config);

  // Feed iterations 1, 2, 3... in order, each exactly once.
  StopDecision after_iteration(const IterationStats& s);

  const StopPolicyConfig& config() const { return config_; }
  // Smart stop: true once dirtied >= sent was seen.
  bool in_phase2() const { return phase2_; }
  uint32_t iterations_seen() const { return last_iteration_; }

 private:
  std::optional<std::string> check(const IterationStats& s) const;
  std::optional<std::string> caps(const IterationStats& s) const;
  std::optional<std::string> smart(const IterationStats& s);
  std::optional<std::string> qemu(const IterationStats& s) const;

  StopPolicyConfig config_;
  uint32_t last_iteration_ = 0;
  std::chrono::nanoseconds last_elapsed_{};
  uint64_t total_sent_ = 0;
  bool phase2_ = false;
  uint32_t phase2_start_ = 0;  // the crossover iteration
  // pages_remaining of the last `window` iterations, oldest first.
  std::deque<uint64_t> recent_;
};

}  // namespace tideway::wan

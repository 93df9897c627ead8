#include "wan/smart_stop.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <string>

namespace tideway::wan {

namespace {

std::string n(uint64_t v) { return std::to_string(v); }

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

std::optional<StopRule> parse_stop_rule(std::string_view name) {
  if (name == "smart") return StopRule::kSmart;
  if (name == "xen") return StopRule::kXenDefault;
  if (name == "xen410") return StopRule::kXen410;
  if (name == "qemu") return StopRule::kQemuDefault;
  return std::nullopt;
}

const char* stop_rule_name(StopRule rule) {
  switch (rule) {
    case StopRule::kSmart: return "smart";
    case StopRule::kXenDefault: return "xen";
    case StopRule::kXen410: return "xen410";
    case StopRule::kQemuDefault: return "qemu";
  }
  return "?";
}

StopPolicyConfig preset(StopRule rule) {
  StopPolicyConfig c;
  c.rule = rule;
  switch (rule) {
    case StopRule::kSmart:
      break;  // the struct's defaults are smart stop's
    case StopRule::kXenDefault:
      // xc_domain_save: DEF_MAX_ITERS 29 ("30 times round loop" with the
      // last one), DEF_MAX_FACTOR 3; the caller sets total_pages.
      c.max_iterations = 29;
      c.max_sent_factor = 3;
      break;
    case StopRule::kXen410:
      c.max_iterations = 5;
      break;
    case StopRule::kQemuDefault:
      // QEMU iterates until the estimate fits the downtime limit, however
      // long that takes; this cap only bounds runs that never converge.
      c.max_iterations = 1000;
      c.max_time = std::chrono::seconds(3600);
      break;
  }
  return c;
}

proto::Result<void> validate(const StopPolicyConfig& c) {
  using proto::Errc;
  if (c.window < 1 || c.window > 64) return {Errc::kInvalid, "stop policy: window must be 1..64 iterations"};
  if (c.max_iterations < 1 || c.max_iterations > 100000)
    return {Errc::kInvalid, "stop policy: max_iterations must be 1..100000"};
  if (c.max_time.count() <= 0) return {Errc::kInvalid, "stop policy: max_time must be positive"};
  if (c.page_size < 512 || c.page_size > (1u << 21) || (c.page_size & (c.page_size - 1)) != 0)
    return {Errc::kInvalid, "stop policy: page_size must be a power of two in 512..2 MiB"};
  if (!std::isfinite(c.bandwidth_bytes_per_s) || c.bandwidth_bytes_per_s < 0)
    return {Errc::kInvalid, "stop policy: bandwidth must be >= 0 (0 = measure it)"};
  if (c.downtime_limit.count() < 1) return {Errc::kInvalid, "stop policy: downtime_limit must be >= 1 ms"};
  if (!std::isfinite(c.max_sent_factor) || c.max_sent_factor < 0)
    return {Errc::kInvalid, "stop policy: max_sent_factor must be >= 0"};
  if (c.max_sent_factor > 0 && c.total_pages == 0)
    return {Errc::kInvalid, "stop policy: max_sent_factor needs total_pages (the guest's memory in pages)"};
  return {};
}

StopPolicy::StopPolicy(StopPolicyConfig config) : config_(config) { assert(validate(config_).ok()); }

std::optional<std::string> StopPolicy::check(const IterationStats& s) const {
  if (s.iteration != last_iteration_ + 1)
    return "iteration " + n(s.iteration) + " after iteration " + n(last_iteration_) + " (expected " +
           n(last_iteration_ + 1) + ")";
  if (s.elapsed.count() < 0 || s.elapsed < last_elapsed_) return "elapsed time went backwards";
  return std::nullopt;
}

StopDecision StopPolicy::after_iteration(const IterationStats& s) {
  if (auto bad = check(s)) return {true, "invalid statistics, stopping: " + *bad, true};

  // Rules look at this iteration against the state before it.
  std::optional<std::string> why;
  if (config_.rule == StopRule::kXenDefault) {
    // Xen tests what the iteration just sent (with what it skipped).
    if (s.pages_sent + s.pages_skipped < config_.min_remaining_pages)
      why = "the iteration sent " + n(s.pages_sent + s.pages_skipped) + " pages, fewer than " +
            n(config_.min_remaining_pages);
  } else if (config_.rule != StopRule::kQemuDefault && s.pages_remaining < config_.min_remaining_pages) {
    why = "few pages remain: " + n(s.pages_remaining) + " < " + n(config_.min_remaining_pages);
  }
  total_sent_ += s.pages_sent;
  if (!why) why = caps(s);
  if (!why && config_.rule == StopRule::kSmart) why = smart(s);
  if (!why && config_.rule == StopRule::kQemuDefault) why = qemu(s);

  last_iteration_ = s.iteration;
  last_elapsed_ = s.elapsed;
  recent_.push_back(s.pages_remaining);
  while (recent_.size() > config_.window) recent_.pop_front();
  if (why) return {true, std::move(*why), false};
  if (config_.rule != StopRule::kSmart) return {false, "iterating", false};
  return {false, phase2_ ? "searching for a local minimum" : "iterating: more pages sent than dirtied", false};
}

std::optional<std::string> StopPolicy::caps(const IterationStats& s) const {
  if (s.iteration >= config_.max_iterations)
    return "iteration cap: " + n(s.iteration) + " live iterations (limit " + n(config_.max_iterations) + ")";
  if (s.elapsed >= config_.max_time)
    return "time cap: " + std::to_string(seconds(s.elapsed)) + " s (limit " + n(config_.max_time.count()) + " s)";
  if (config_.max_sent_factor > 0 &&
      static_cast<double>(total_sent_) > config_.max_sent_factor * static_cast<double>(config_.total_pages))
    return "data cap: " + n(total_sent_) + " pages sent, more than " + std::to_string(config_.max_sent_factor) +
           " x memory";
  return std::nullopt;
}

std::optional<std::string> StopPolicy::smart(const IterationStats& s) {
  if (!phase2_) {
    if (s.pages_dirtied >= s.pages_sent + s.pages_skipped) {
      phase2_ = true;
      phase2_start_ = s.iteration;
    }
    return std::nullopt;  // the search starts with the next iteration
  }
  if (recent_.empty()) return std::nullopt;
  const uint64_t low = *std::min_element(recent_.begin(), recent_.end());
  const std::string window = "the last " + n(recent_.size()) + " iterations (min " + n(low) + ")";
  if (s.pages_remaining < low)
    return "local minimum: " + n(s.pages_remaining) + " pages remain, fewer than in each of " + window;
  // Our addition to the paper's rule: once a whole window has passed in
  // phase 2 without a new minimum, a value that ties the window's low is as
  // good as waiting gets (a saturated hot set keeps the count flat, and a
  // strict minimum might never come).
  if (s.iteration - phase2_start_ > config_.window && s.pages_remaining <= low)
    return "flat minimum: " + n(s.pages_remaining) + " pages remain, no fewer in " + window + " after " +
           n(s.iteration - phase2_start_) + " iterations past the crossover";
  return std::nullopt;
}

std::optional<std::string> StopPolicy::qemu(const IterationStats& s) const {
  double bw = config_.bandwidth_bytes_per_s;
  if (bw <= 0) {
    const double dt = seconds(s.elapsed - last_elapsed_);
    const uint64_t bytes = s.bytes_sent ? s.bytes_sent : s.pages_sent * config_.page_size;
    if (dt <= 0) return std::nullopt;  // no estimate yet: iterate
    bw = static_cast<double>(bytes) / dt;
  }
  const double threshold = bw * std::chrono::duration<double>(config_.downtime_limit).count();
  const double pending = static_cast<double>(s.pages_remaining) * config_.page_size;
  if (s.pages_remaining == 0 || pending < threshold)
    return "fits the downtime limit: " + n(s.pages_remaining) + " pages (" + n(static_cast<uint64_t>(pending)) +
           " B) < " + n(static_cast<uint64_t>(threshold)) + " B = bandwidth x " +
           n(static_cast<uint64_t>(config_.downtime_limit.count())) + " ms";
  return std::nullopt;
}

}  // namespace tideway::wan

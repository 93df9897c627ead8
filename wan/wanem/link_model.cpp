#include "wan/wanem/link_model.h"

#include <algorithm>
#include <cmath>

namespace tideway::wanem {

namespace {
constexpr uint64_t kMinQueueBytes = 64 * 1024;
// Even at zero delay a router buffers a little: 2 ms at line rate (250 KB at
// 1 Gbit/s, four 64 KiB TSO bursts; with 64 KiB one flow got 66%).
constexpr double kMinQueueSeconds = 0.002;
constexpr double kNanosPerSecond = 1e9;

// Portable across standard libraries (std::*_distribution is not), so a
// printed seed reproduces the same drops everywhere.
double unit_interval(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
}
}  // namespace

uint64_t LinkParams::default_queue_bytes() const {
  if (rate_bps == 0) return kMinQueueBytes;
  const double rtt_s = 2.0 * static_cast<double>(delay.count()) / kNanosPerSecond;
  const auto bdp = static_cast<uint64_t>(static_cast<double>(rate_bps) * rtt_s / 8.0);
  const auto two_ms = static_cast<uint64_t>(static_cast<double>(rate_bps) * kMinQueueSeconds / 8.0);
  return std::max({bdp, two_ms, kMinQueueBytes});
}

std::string LinkParams::validate() const {
  if (delay < Nanos{0}) return "delay must be >= 0";
  if (delay > Nanos{std::chrono::seconds{10}}) return "delay must be <= 10 s";
  if (jitter < Nanos{0}) return "jitter must be >= 0";
  if (jitter > delay) return "jitter must be <= delay (delay - jitter would be negative)";
  if (!(loss >= 0.0 && loss <= 1.0)) return "loss must be a fraction in [0, 1] (0.01 = 1%)";
  if (rate_bps != 0 && rate_bps < 8000) return "rate must be >= 8 kbit/s (or 0 = unlimited)";
  if (rate_bps > 400'000'000'000ULL) return "rate must be <= 400 Gbit/s";
  if (queue_bytes > (uint64_t{1} << 32)) return "queue must be <= 4 GiB";
  return {};
}

const char* to_string(Verdict v) {
  switch (v) {
    case Verdict::kForward: return "forward";
    case Verdict::kDropPartition: return "drop_partition";
    case Verdict::kDropLoss: return "drop_loss";
    case Verdict::kDropQueue: return "drop_queue";
  }
  return "?";
}

LinkModel::LinkModel(const LinkParams& params, uint64_t seed)
    : params_(params),
      seed_(seed),
      loss_rng_(seed),
      jitter_rng_(seed ^ 0x9E3779B97F4A7C15ULL) {}

// Exact integer arithmetic (bytes * 8e9 and ns * rate overflow 64 bits).
__extension__ using U128 = unsigned __int128;

Nanos LinkModel::serialisation_time(uint64_t bytes) const {
  if (params_.rate_bps == 0) return Nanos{0};
  const U128 num = U128{bytes} * 8 * 1'000'000'000u;
  return Nanos{static_cast<int64_t>((num + params_.rate_bps / 2) / params_.rate_bps)};
}

uint64_t LinkModel::backlog_bytes(Nanos now) const {
  if (params_.rate_bps == 0 || busy_until_ <= now) return 0;
  const U128 bits_ns = U128{static_cast<uint64_t>((busy_until_ - now).count())} * params_.rate_bps;
  const U128 denom = U128{8} * 1'000'000'000u;
  return static_cast<uint64_t>((bits_ns + denom - 1) / denom);  // round up: a started packet counts
}

Decision LinkModel::offer(Nanos now, uint64_t wire_bytes) {
  if (params_.partitioned) return {Verdict::kDropPartition, {}};
  // Draw for every offered packet (even at loss 0), from a generator used
  // for nothing else, so the drop pattern for a seed does not depend on the
  // other settings.
  const double draw = unit_interval(loss_rng_);
  if (draw < params_.loss) return {Verdict::kDropLoss, {}};

  // Tail drop once the backlog has reached the cap. A packet that meets a
  // backlog just under the cap still gets in, so the queue may exceed the
  // cap by up to one packet: a GSO super-packet stands for many segments,
  // of which a real router would have taken the first few.
  if (backlog_bytes(now) >= params_.effective_queue_bytes()) return {Verdict::kDropQueue, {}};
  const Nanos start = std::max(now, busy_until_);
  const Nanos serialised = start + serialisation_time(wire_bytes);
  if (params_.rate_bps != 0) busy_until_ = serialised;

  Nanos wire = params_.delay;
  if (params_.jitter > Nanos{0}) {
    const uint64_t span = 2 * static_cast<uint64_t>(params_.jitter.count()) + 1;
    const auto offset = static_cast<int64_t>(jitter_rng_() % span) - params_.jitter.count();
    wire = std::max(Nanos{0}, wire + Nanos{offset});
  }
  const Nanos depart = std::max(serialised + wire, last_depart_);
  last_depart_ = depart;
  return {Verdict::kForward, depart};
}

}  // namespace tideway::wanem

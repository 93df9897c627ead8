#include "agent/sim_guest/sim_guest.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>

namespace tideway::sim {

namespace {
constexpr uint64_t kTagSet = 0x21, kTagBurst = 0x22, kTagHot = 0x23, kTagWarm = 0x24;
}  // namespace

proto::Result<std::unique_ptr<SimGuest>> SimGuest::create(const SimGuestConfig& config) {
  if (auto v = validate(config.profile); !v) return v.error();
  if (config.pages == 0 || config.pages > kMaxSimPages)
    return proto::Error{proto::Errc::kInvalid, "simulated guest: size must be 1.." + std::to_string(kMaxSimPages) +
                                                   " pages (4 KiB each)"};
  return std::unique_ptr<SimGuest>(new SimGuest(config));
}

SimGuest::SimGuest(const SimGuestConfig& config)
    : profile_(config.profile),
      seed_(config.seed),
      content_(config.profile, config.seed),
      period_ns_(static_cast<uint64_t>(std::llround(std::max(profile_.burst_period_s, 1e-3) * 1e9))),
      versions_(config.pages, 0),
      dirty_bits_((config.pages + 63) / 64, 0) {
  // Hot and warm sets: disjoint, drawn among the non-zero pages so that
  // their fractions of all memory are the profile's.
  const double nonzero = 1.0 - profile_.zero_fraction;
  const double hot = nonzero > 0 ? profile_.hot_fraction / nonzero : 0;
  const double warm = nonzero > 0 ? profile_.warm_fraction / nonzero : 0;
  for (uint64_t p = 0; p < config.pages; ++p) {
    if (content_.page_class(p) == PageClass::kZero) continue;
    const double u = unit(hash_words(seed_, p, kTagSet));
    if (u < hot)
      streams_[0].set.push_back(static_cast<uint32_t>(p));
    else if (u < hot + warm)
      streams_[1].set.push_back(static_cast<uint32_t>(p));
  }
  const double scale = static_cast<double>(config.pages) / static_cast<double>(kPagesPerGiB);
  streams_[0].rate = profile_.hot_writes_per_s * scale;
  streams_[0].tag = kTagHot;
  streams_[1].rate = profile_.warm_writes_per_s * scale;
  streams_[1].tag = kTagWarm;
  for (auto& s : streams_) s.count = period_writes(s, 0);
  dirty_list_.reserve(std::min<uint64_t>(config.pages, 1u << 16));
}

uint64_t SimGuest::period_writes(const Stream& s, uint64_t period) const {
  if (s.set.empty() || s.rate <= 0) return 0;
  const double m = 1.0 + profile_.burst_spread * (2.0 * unit(hash_words(seed_, period, kTagBurst)) - 1.0);
  return static_cast<uint64_t>(std::llround(s.rate * m * static_cast<double>(period_ns_) * 1e-9));
}

void SimGuest::run_stream(Stream& s, uint64_t until_ns) {
  for (;;) {
    if (s.next >= s.count) {
      if ((s.period + 1) * period_ns_ >= until_ns) return;
      ++s.period;
      s.next = 0;
      s.count = period_writes(s, s.period);
      continue;
    }
    // Evenly spaced in the period: write j at (j + 1/2) / count of it.
    const uint64_t t = s.period * period_ns_ + (2 * s.next + 1) * period_ns_ / (2 * s.count);
    if (t >= until_ns) return;
    write(s.set[hash_words(seed_, s.tag, s.period, s.next) % s.set.size()]);
    ++s.next;
  }
}

void SimGuest::write(uint32_t page) {
  if (versions_[page] < std::numeric_limits<uint32_t>::max()) ++versions_[page];
  ++writes_;
  uint64_t& word = dirty_bits_[page / 64];
  const uint64_t bit = uint64_t{1} << (page % 64);
  if (!(word & bit)) {
    word |= bit;
    dirty_list_.push_back(page);
  }
}

void SimGuest::advance(std::chrono::nanoseconds d) {
  assert(d.count() >= 0);
  if (d.count() <= 0) return;
  const uint64_t until = now_ns_ + static_cast<uint64_t>(d.count());
  for (auto& s : streams_) run_stream(s, until);
  now_ns_ = until;
}

void SimGuest::read_page(uint64_t page, std::span<uint8_t> out) const {
  assert(page < pages());
  content_.fill(page, versions_[page], out);
}

void SimGuest::read_page_version(uint64_t page, uint32_t version, std::span<uint8_t> out) const {
  assert(page < pages());
  content_.fill(page, version, out);
}

std::vector<uint32_t> SimGuest::take_dirty() {
  std::vector<uint32_t> out;
  out.swap(dirty_list_);
  for (uint32_t p : out) dirty_bits_[p / 64] &= ~(uint64_t{1} << (p % 64));
  std::sort(out.begin(), out.end());
  assert(out.size() <= pages());
  return out;
}

}  // namespace tideway::sim

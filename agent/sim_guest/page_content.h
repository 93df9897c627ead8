// The content of a simulated page: a pure function of (seed, page, version)
// and the profile. Nothing is stored, so a 2 GiB guest costs only its
// version counters; the same call always gives the same bytes.
#pragma once

#include <cstdint>
#include <span>

#include "agent/sim_guest/sim_profile.h"

namespace tideway::sim {

enum class PageClass : uint8_t {
  kZero,       // all zero, never written
  kDuplicate,  // one of the profile's shared whole-page patterns
  kPartial,    // random base; writes change one field each
  kFull,       // every version is fresh random bytes
};
const char* page_class_name(PageClass c);

// Mixing of several words into one (splitmix64 finaliser per step).
uint64_t mix64(uint64_t x);
inline uint64_t hash_words(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  return mix64(a ^ mix64(b ^ mix64(c ^ mix64(d + 0x9e3779b97f4a7c15ull))));
}
// A uniform double in [0, 1) from a hash.
inline double unit(uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

class PageContent {
 public:
  // `profile` must pass validate() (asserted).
  PageContent(const SimProfile& profile, uint64_t seed);

  PageClass page_class(uint64_t page) const;
  // Fills `out` (kSimPageSize bytes) with the page at `version` (0 = its
  // content when the guest starts; a write adds 1).
  void fill(uint64_t page, uint32_t version, std::span<uint8_t> out) const;
  // Byte range [offset, offset + write_bytes) that write `version` (>= 1)
  // of a kPartial page changed; for tests.
  uint32_t field_offset(uint64_t page, uint32_t version) const;

 private:
  void fill_partial(uint64_t page, uint32_t version, uint8_t* out) const;
  uint32_t field_slot(uint64_t page, uint32_t field) const;

  SimProfile p_;
  uint64_t seed_;
  uint32_t usable_shared_;  // bytes before the shared sub-block
  uint32_t slots_shared_;   // field slots in those bytes
  uint32_t slots_plain_;    // field slots in a page without one
};

}  // namespace tideway::sim

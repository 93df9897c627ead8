#include "agent/sim_guest/page_content.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace tideway::sim {

namespace {

// Domain tags, so the hashes for different purposes never coincide.
enum Tag : uint64_t {
  kTagClass = 0x11, kTagFull = 0x12, kTagShared = 0x13, kTagBase = 0x14, kTagSharedBlock = 0x15,
  kTagField = 0x16, kTagSlot = 0x17, kTagDup = 0x18, kTagPattern = 0x19, kTagFullVersion = 0x1a,
};
constexpr uint32_t kSharedBlockBytes = 1024;
constexpr uint32_t kSharedBlocks = 64;

// Pseudo-random bytes from a key (splitmix64 stream): fast, and the same
// key always gives the same bytes.
void fill_random(uint64_t key, uint8_t* out, size_t len) {
  uint64_t x = key;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    x += 0x9e3779b97f4a7c15ull;
    const uint64_t z = mix64(x);
    std::memcpy(out + i, &z, 8);
  }
  if (i < len) {
    x += 0x9e3779b97f4a7c15ull;
    const uint64_t z = mix64(x);
    std::memcpy(out + i, &z, len - i);
  }
}

}  // namespace

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

const char* page_class_name(PageClass c) {
  switch (c) {
    case PageClass::kZero: return "zero";
    case PageClass::kDuplicate: return "duplicate";
    case PageClass::kPartial: return "partial";
    case PageClass::kFull: return "full";
  }
  return "?";
}

PageContent::PageContent(const SimProfile& profile, uint64_t seed) : p_(profile), seed_(seed) {
  assert(validate(p_).ok());
  usable_shared_ = kSimPageSize - kSharedBlockBytes;
  slots_shared_ = usable_shared_ / p_.write_bytes;
  slots_plain_ = kSimPageSize / p_.write_bytes;
}

PageClass PageContent::page_class(uint64_t page) const {
  const double u = unit(hash_words(seed_, page, kTagClass));
  if (u < p_.zero_fraction) return PageClass::kZero;
  if (u < p_.zero_fraction + p_.duplicate_fraction) return PageClass::kDuplicate;
  return unit(hash_words(seed_, page, kTagFull)) < p_.full_write_fraction ? PageClass::kFull : PageClass::kPartial;
}

uint32_t PageContent::field_slot(uint64_t page, uint32_t field) const {
  const bool shared = unit(hash_words(seed_, page, kTagShared)) < p_.shared_subblock_fraction;
  const uint32_t slots = shared ? slots_shared_ : slots_plain_;
  const uint32_t step = std::max<uint32_t>(1, slots / p_.fields_per_page);
  const uint32_t start = static_cast<uint32_t>(hash_words(seed_, page, kTagSlot) % slots);
  return (start + field * step) % slots;
}

uint32_t PageContent::field_offset(uint64_t page, uint32_t version) const {
  assert(version >= 1);
  return field_slot(page, (version - 1) % p_.fields_per_page) * p_.write_bytes;
}

void PageContent::fill(uint64_t page, uint32_t version, std::span<uint8_t> out) const {
  assert(out.size() == kSimPageSize);
  switch (page_class(page)) {
    case PageClass::kZero:
      std::memset(out.data(), 0, kSimPageSize);
      return;
    case PageClass::kDuplicate: {
      const uint64_t h = version == 0 ? hash_words(seed_, page, kTagDup) : hash_words(seed_, page, version, kTagDup);
      fill_random(hash_words(seed_, h % p_.duplicate_patterns, kTagPattern), out.data(), kSimPageSize);
      return;
    }
    case PageClass::kFull:
      fill_random(version == 0 ? hash_words(seed_, page, kTagBase) : hash_words(seed_, page, version, kTagFullVersion),
                  out.data(), kSimPageSize);
      return;
    case PageClass::kPartial:
      fill_partial(page, version, out.data());
      return;
  }
}

void PageContent::fill_partial(uint64_t page, uint32_t version, uint8_t* out) const {
  fill_random(hash_words(seed_, page, kTagBase), out, kSimPageSize);
  if (unit(hash_words(seed_, page, kTagShared)) < p_.shared_subblock_fraction) {
    const uint64_t block = hash_words(seed_, page, kTagSharedBlock) % kSharedBlocks;
    fill_random(hash_words(seed_, block, kTagSharedBlock), out + usable_shared_, kSharedBlockBytes);
  }
  // Field j was last written by the latest version v <= `version` with
  // (v - 1) % F == j: no history is needed to know what it holds.
  const uint32_t f = p_.fields_per_page;
  for (uint32_t j = 0; j < f && j < version; ++j) {
    const uint32_t last = version - ((version - 1 - j) % f);
    fill_random(hash_words(seed_, page, last, kTagField + (uint64_t{j} << 8)), out + field_slot(page, j) * p_.write_bytes,
                p_.write_bytes);
  }
}

}  // namespace tideway::sim

#include "wan/codec/delta_store.h"

#include <cassert>
#include <cstring>

#include "wan/codec/page_ops.h"

namespace tideway::wan::codec {

DeltaStore::DeltaStore(uint32_t slots)
    : slots_(slots),
      index_(slots),
      pages_(size_t{slots} * kPageSize),
      slot_address_(slots, 0),
      live_(slots, 0) {}

// A fixed bijective 64-bit mix (the murmur3 finalizer; not the injectable
// hash: both ends must agree, and page addresses differ only in a few
// middle bits). Bijective, so distinct addresses never share a key.
uint64_t DeltaStore::key(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

const uint8_t* DeltaStore::find(uint64_t address) const {
  if (slots_ == 0) return nullptr;
  const int64_t slot = index_.find(key(address));
  return slot < 0 ? nullptr : page(static_cast<uint32_t>(slot));
}

void DeltaStore::put(uint64_t address, const uint8_t* data) {
  if (slots_ == 0) return;
  const uint64_t k = key(address);
  int64_t slot = index_.find(k);
  if (slot < 0) {
    slot = head_;
    if (live_[head_]) index_.erase_slot(head_);  // evicts the oldest address
    index_.insert(k, head_);
    slot_address_[head_] = address;
    live_[head_] = 1;
    head_ = (head_ + 1) % slots_;
    if (filled_ < slots_) ++filled_;
  }
  uint8_t* dst = page(static_cast<uint32_t>(slot));
  assert(reinterpret_cast<uintptr_t>(dst) % 16 == 0);
  copy_streaming(dst, data, kPageSize);
}

void DeltaStore::erase(uint64_t address) {
  if (slots_ == 0) return;
  const int64_t slot = index_.find(key(address));
  if (slot < 0) return;
  index_.erase_slot(static_cast<uint32_t>(slot));
  live_[static_cast<size_t>(slot)] = 0;
}

void DeltaStore::reset() {
  index_.reset();
  std::fill(live_.begin(), live_.end(), 0);
  head_ = 0;
  filled_ = 0;
}

}  // namespace tideway::wan::codec

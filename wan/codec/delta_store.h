// Delta store: the last sent version of recently sent pages, by address,
// identical at both ends. A ring of `slots` whole pages filled in FIFO
// order, like the CBR cache, with an address index (CbrIndex keyed by a
// bijective mix of the address, so every address has its own key):
//  * put() of a stored address updates its page in place (its place in the
//    ring does not move);
//  * put() of a new address takes the slot at the ring's head, evicting
//    whatever address was there, and advances the head;
//  * erase() forgets an address; its slot stays a hole until the head
//    comes round to it.
// So a working set that fits is never evicted (no conflict misses, unlike
// a set-associative store), and two stores fed the same put/erase sequence
// hold the same pages. Memory: slots pages, touched as they fill.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "wan/codec/big_buffer.h"
#include "wan/codec/cbr_index.h"
#include "wan/codec/codec_config.h"

namespace tideway::wan::codec {

class DeltaStore {
 public:
  explicit DeltaStore(uint32_t slots);

  bool enabled() const { return slots_ != 0; }
  uint32_t slots() const { return slots_; }
  // The stored page for `address`, or nullptr.
  const uint8_t* find(uint64_t address) const;
  // The same page, writable: a caller that changes only some sub-blocks of
  // a stored page patches them in place (same result as put()).
  uint8_t* find_mut(uint64_t address) { return const_cast<uint8_t*>(std::as_const(*this).find(address)); }
  // Cache hints for a lookup coming soon: the index entry, or (when that
  // is at hand) the whole stored page.
  void prefetch_index(uint64_t address) const {
    if (slots_ != 0) index_.prefetch(key(address));
  }
  void prefetch_page(uint64_t address) const {
    if (const uint8_t* p = find(address))
      for (size_t off = 0; off < kPageSize; off += 64) __builtin_prefetch(p + off);
  }
  // Stores `page` (kPageSize bytes) as the last version of `address`.
  void put(uint64_t address, const uint8_t* page);
  // Forgets `address` (its last version was a zero page).
  void erase(uint64_t address);
  void reset();
  size_t size() const { return index_.size(); }  // live entries
  // Visits live entries in slot order, then reports the head: for digests.
  template <typename F>
  void for_each(F&& f) const {
    for (uint32_t s = 0; s < filled_; ++s)
      if (live_[s]) f(slot_address_[s], page(s));
  }
  uint32_t head() const { return head_; }

 private:
  static uint64_t key(uint64_t address);
  const uint8_t* page(uint32_t slot) const { return pages_.data() + size_t{slot} * kPageSize; }
  uint8_t* page(uint32_t slot) { return pages_.data() + size_t{slot} * kPageSize; }

  uint32_t slots_;
  CbrIndex index_;
  BigBuffer pages_;
  std::vector<uint64_t> slot_address_;
  std::vector<uint8_t> live_;
  uint32_t head_ = 0;    // the slot the next new address takes
  uint32_t filled_ = 0;  // slots written at least once since reset
};

}  // namespace tideway::wan::codec

// The encoder's lookup index over the CBR slab: sub-block hash -> slot.
// Open addressing with linear probing, sized to a power of two at least
// twice the slot count (load <= 1/2), allocated once: no allocation per
// insert. At most one entry per hash value: a newer slot with the same hash
// (a collision the encoder detected by comparing bytes) replaces the older
// one. Deletion shifts entries back (no tombstones), so probe chains stay
// short however long the cache runs. The decoder has no index: it only
// follows slot numbers.
#pragma once

#include <cstdint>

#include "wan/codec/big_buffer.h"

namespace tideway::wan::codec {

class CbrIndex {
 public:
  explicit CbrIndex(uint32_t slots);

  // The slot last indexed under hash h, or -1.
  int64_t find(uint64_t h) const;
  // Indexes `slot` under h (replacing any slot with the same hash).
  void insert(uint64_t h, uint32_t slot);
  // Starts loading h's entry into the cache (the lookup comes later).
  void prefetch(uint64_t h) const {
    if (table_ != nullptr) __builtin_prefetch(table_ + home(h));
  }
  // Drops `slot` (about to be overwritten) if the index still points at it.
  void erase_slot(uint32_t slot);
  void reset();
  size_t size() const { return size_; }

 private:
  struct Entry {
    uint64_t hash;
    uint32_t slot_plus_one;  // 0 = free, so fresh (zero) memory is an empty table
    uint32_t pad;
  };
  size_t home(uint64_t h) const { return static_cast<size_t>(h) & mask_; }
  size_t probe(uint64_t h) const;  // entry with hash h, or the free entry ending its chain

  BigBuffer table_mem_;
  Entry* table_ = nullptr;
  size_t capacity_ = 0;
  size_t mask_ = 0;
  BigBuffer slot_hash_mem_;
  uint64_t* slot_hash_ = nullptr;  // hash of each filled slot, for erase_slot
  size_t size_ = 0;
};

}  // namespace tideway::wan::codec

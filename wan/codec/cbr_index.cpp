#include "wan/codec/cbr_index.h"

#include <bit>
#include <cassert>
#include <cstring>

namespace tideway::wan::codec {

CbrIndex::CbrIndex(uint32_t slots) {
  if (slots == 0) return;
  capacity_ = std::bit_ceil(size_t{slots} * 2);
  mask_ = capacity_ - 1;
  table_mem_ = BigBuffer(capacity_ * sizeof(Entry));
  table_ = reinterpret_cast<Entry*>(table_mem_.data());
  slot_hash_mem_ = BigBuffer(size_t{slots} * sizeof(uint64_t));
  slot_hash_ = reinterpret_cast<uint64_t*>(slot_hash_mem_.data());
}

size_t CbrIndex::probe(uint64_t h) const {
  size_t i = home(h);
  // Terminates: the load factor is at most 1/2, so a free entry exists.
  while (table_[i].slot_plus_one != 0 && table_[i].hash != h) i = (i + 1) & mask_;
  return i;
}

int64_t CbrIndex::find(uint64_t h) const {
  if (capacity_ == 0) return -1;
  const Entry& e = table_[probe(h)];
  return int64_t{e.slot_plus_one} - 1;
}

void CbrIndex::insert(uint64_t h, uint32_t slot) {
  assert(capacity_ != 0);
  Entry& e = table_[probe(h)];
  if (e.slot_plus_one == 0) {
    ++size_;
    assert(size_ * 2 <= capacity_);
  }
  e.hash = h;
  e.slot_plus_one = slot + 1;
  slot_hash_[slot] = h;
}

void CbrIndex::erase_slot(uint32_t slot) {
  size_t i = probe(slot_hash_[slot]);
  if (table_[i].slot_plus_one != slot + 1) return;  // a newer slot with the same hash took the entry
  --size_;
  // Backward-shift deletion: move later members of the probe run into the
  // hole when their home position does not lie in (hole, j].
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask_;
    if (table_[j].slot_plus_one == 0) break;
    const size_t k = home(table_[j].hash);
    const bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      table_[i] = table_[j];
      i = j;
    }
  }
  table_[i].slot_plus_one = 0;
}

void CbrIndex::reset() {
  if (capacity_ != 0) std::memset(static_cast<void*>(table_), 0, capacity_ * sizeof(Entry));
  size_ = 0;
}

}  // namespace tideway::wan::codec

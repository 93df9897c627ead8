// The CBR cache's storage, identical at both ends: a fixed ring of `slots`
// sub-block slots filled in FIFO order. Insert number k (counted from the
// start of the epoch) lands in slot k % slots, overwriting what was there,
// so the slot an index names is a pure function of the insert count.
// Memory is reserved once (BigBuffer: touched only as slots fill) and never
// cleared; a slot is readable once written (slot < filled()).
#pragma once

#include <cassert>
#include <cstdint>

#include "wan/codec/big_buffer.h"

namespace tideway::wan::codec {

class CbrSlab {
 public:
  CbrSlab(uint32_t slots, uint32_t slot_size)
      : slots_(slots),
        slot_size_(slot_size),
        mem_(size_t{slots} * slot_size) {}

  uint32_t slots() const { return slots_; }
  uint32_t slot_size() const { return slot_size_; }
  bool enabled() const { return slots_ != 0; }
  // Sub-blocks inserted since the epoch started.
  uint64_t inserts() const { return inserts_; }
  // The slot the next insert takes.
  uint32_t head() const { return slots_ ? static_cast<uint32_t>(inserts_ % slots_) : 0; }
  // Slots holding data: [0, filled()).
  uint32_t filled() const { return inserts_ < slots_ ? static_cast<uint32_t>(inserts_) : slots_; }

  const uint8_t* at(uint32_t slot) const {
    assert(slot < filled());
    return mem_.data() + size_t{slot} * slot_size_;
  }
  uint8_t* slot_ptr(uint32_t slot) {
    assert(slot < slots_);
    return mem_.data() + size_t{slot} * slot_size_;
  }
  // Records n inserts whose bytes the caller has written.
  void advance(uint64_t n) { inserts_ += n; }
  void reset() { inserts_ = 0; }

 private:
  uint32_t slots_;
  uint32_t slot_size_;
  BigBuffer mem_;
  uint64_t inserts_ = 0;
};

}  // namespace tideway::wan::codec

#include "proto/crc32c.h"

#include <isa-l/crc.h>

#include <climits>

namespace tideway::proto {

uint32_t crc32c_update(uint32_t state, std::span<const uint8_t> data) {
  // crc32_iscsi takes an int length: feed very large spans in pieces.
  const uint8_t* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    const size_t n = left > (size_t{1} << 30) ? (size_t{1} << 30) : left;
    state = crc32_iscsi(const_cast<unsigned char*>(p), static_cast<int>(n), state);
    p += n;
    left -= n;
  }
  return state;
}

uint32_t crc32c(std::span<const uint8_t> data) {
  return crc32c_finish(crc32c_update(kCrc32cInit, data));
}

}  // namespace tideway::proto

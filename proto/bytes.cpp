#include "proto/bytes.h"

#include <cassert>

namespace tideway::proto {

void ByteWriter::str16(std::string_view s) {
  assert(s.size() <= 0xFFFF);
  u16(static_cast<uint16_t>(s.size()));
  bytes(s.data(), s.size());
}

bool ByteReader::str16(std::string& s, size_t max_len) {
  uint16_t n = 0;
  std::span<const uint8_t> b;
  if (!u16(n) || n > max_len || !view(n, b)) return false;
  s.assign(reinterpret_cast<const char*>(b.data()), b.size());
  return true;
}

}  // namespace tideway::proto

// Bounded little-endian readers and writers for wire encodings.
// ByteReader never reads past its span: every get reports failure instead.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tideway::proto {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>& out) : out_(out) {}

  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put_le(v); }
  void u32(uint32_t v) { put_le(v); }
  void u64(uint64_t v) { put_le(v); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void bytes(const void* p, size_t n) {
    auto* b = static_cast<const uint8_t*>(p);
    out_.insert(out_.end(), b, b + n);
  }
  // u16 length, then the bytes. Caller guarantees s.size() <= 65535.
  void str16(std::string_view s);
  size_t size() const { return out_.size(); }

 private:
  template <typename T>
  void put_le(T v) {
    uint8_t b[sizeof(T)];
    for (size_t i = 0; i < sizeof(T); ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    out_.insert(out_.end(), b, b + sizeof(T));
  }
  std::vector<uint8_t>& out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> in) : in_(in) {}

  bool u8(uint8_t& v) { return get_le(v); }
  bool u16(uint16_t& v) { return get_le(v); }
  bool u32(uint32_t& v) { return get_le(v); }
  bool u64(uint64_t& v) { return get_le(v); }
  // A view of the next n bytes (no copy); fails if fewer remain.
  bool view(size_t n, std::span<const uint8_t>& out) {
    if (n > remaining()) return false;
    out = in_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool str16(std::string& s, size_t max_len);
  size_t remaining() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }

 private:
  template <typename T>
  bool get_le(T& v) {
    if (remaining() < sizeof(T)) return false;
    T r = 0;
    for (size_t i = 0; i < sizeof(T); ++i) r |= static_cast<T>(static_cast<T>(in_[pos_ + i]) << (8 * i));
    v = r;
    pos_ += sizeof(T);
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

}  // namespace tideway::proto

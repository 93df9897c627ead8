#include "agent/dirty_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "proto/bytes.h"
#include "proto/crc32c.h"
#include "wan/file_io.h"

namespace tideway::agent {

using proto::Errc;
using proto::Error;

namespace {
constexpr uint32_t kMagic = 0x54574442;  // "TWDB"
constexpr size_t kHeader = 4 + 8 + 8;    // magic, disk bytes, dirty count; CRC32C at the end
}  // namespace

DirtyMap::DirtyMap(uint64_t disk_bytes)
    : disk_bytes_(disk_bytes), blocks_((disk_bytes + kBlock - 1) / kBlock), words_((blocks_ + 63) / 64, 0) {}

void DirtyMap::mark(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  assert(offset <= disk_bytes_ && length <= disk_bytes_ - offset);
  for (uint64_t b = offset / kBlock, end = (offset + length + kBlock - 1) / kBlock; b < end; ++b) {
    uint64_t& w = words_[b / 64];
    const uint64_t bit = uint64_t{1} << (b % 64);
    if (!(w & bit)) {
      w |= bit;
      ++dirty_;
    }
  }
}

void DirtyMap::mark_all() {
  if (blocks_ == 0) return;
  std::fill(words_.begin(), words_.end(), ~uint64_t{0});
  if (blocks_ % 64) words_.back() = (uint64_t{1} << (blocks_ % 64)) - 1;
  dirty_ = blocks_;
}

void DirtyMap::clear() {
  std::fill(words_.begin(), words_.end(), 0);
  dirty_ = 0;
}

bool DirtyMap::test(uint64_t block) const {
  assert(block < blocks_);
  return words_[block / 64] >> (block % 64) & 1;
}

void DirtyMap::merge(const DirtyMap& other) {
  assert(other.blocks_ == blocks_);
  dirty_ = 0;
  for (size_t i = 0; i < words_.size(); ++i) {
    words_[i] |= other.words_[i];
    dirty_ += static_cast<uint64_t>(std::popcount(words_[i]));
  }
}

bool DirtyMap::take_run(uint64_t from, uint64_t max_blocks, uint64_t& offset, uint64_t& length) {
  assert(max_blocks > 0);
  uint64_t b = (from + kBlock - 1) / kBlock;
  // Find the first set bit at or after b, a word at a time.
  while (b < blocks_) {
    const uint64_t w = words_[b / 64] >> (b % 64);
    if (w) {
      b += static_cast<uint64_t>(std::countr_zero(w));
      break;
    }
    b = (b / 64 + 1) * 64;
  }
  if (b >= blocks_) return false;
  uint64_t n = 0;
  while (b + n < blocks_ && n < max_blocks && test(b + n)) {
    words_[(b + n) / 64] &= ~(uint64_t{1} << ((b + n) % 64));
    ++n;
  }
  dirty_ -= n;
  offset = b * kBlock;
  length = std::min(n * kBlock, disk_bytes_ - offset);
  return true;
}

proto::Result<void> DirtyMap::save(const std::string& path) const {
  std::vector<uint8_t> out;
  proto::ByteWriter w(out);
  w.u32(kMagic);
  w.u64(disk_bytes_);
  w.u64(dirty_);
  for (uint64_t word : words_) w.u64(word);
  w.u32(proto::crc32c(out));
  if (int e = wan::write_file_atomic(path, out); e != 0)
    return Error{Errc::kSystem, "write " + path + ": " + std::strerror(e)};
  return {};
}

proto::Result<DirtyMap> DirtyMap::load(const std::string& path, uint64_t disk_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{Errc::kSystem, "no dirty map " + path};
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto m = parse(bytes, disk_bytes);
  if (!m) return Error{m.error().code, path + ": " + m.error().detail};
  return m;
}

proto::Result<DirtyMap> DirtyMap::parse(std::span<const uint8_t> bytes, uint64_t disk_bytes) {
  const std::string path = "dirty map";
  DirtyMap m(disk_bytes);
  const size_t want = kHeader + 8 * m.words_.size() + 4;
  if (bytes.size() != want)
    return Error{Errc::kMalformed, path + ": " + std::to_string(bytes.size()) + " bytes, expected " +
                                     std::to_string(want) + " for a disk of " + std::to_string(disk_bytes)};
  proto::ByteReader r(std::span<const uint8_t>(bytes).first(bytes.size() - 4));
  uint32_t magic = 0, crc = 0;
  uint64_t size = 0, dirty = 0;
  r.u32(magic);
  r.u64(size);
  r.u64(dirty);
  for (auto& word : m.words_) r.u64(word);
  proto::ByteReader t(std::span<const uint8_t>(bytes).last(4));
  t.u32(crc);
  if (magic != kMagic) return Error{Errc::kMalformed, path + ": not a dirty map"};
  if (crc != proto::crc32c(std::span<const uint8_t>(bytes).first(bytes.size() - 4)))
    return Error{Errc::kMalformed, path + ": checksum mismatch"};
  if (size != disk_bytes)
    return Error{Errc::kMalformed, path + ": for a disk of " + std::to_string(size) + " bytes, not " +
                                     std::to_string(disk_bytes)};
  uint64_t count = 0;
  for (size_t i = 0; i < m.words_.size(); ++i) {
    if (i + 1 == m.words_.size() && m.blocks_ % 64 && (m.words_[i] >> (m.blocks_ % 64)))
      return Error{Errc::kMalformed, path + ": bits past the disk's end"};
    count += static_cast<uint64_t>(std::popcount(m.words_[i]));
  }
  if (count != dirty) return Error{Errc::kMalformed, path + ": dirty count does not match its bits"};
  m.dirty_ = count;
  return m;
}

}  // namespace tideway::agent

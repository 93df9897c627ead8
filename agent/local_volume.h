// The backing file (or block device) of a volume, with nothing on top: the
// raw baseline for the taps' overhead, and the local half of ProtectedVolume.
#pragma once

#include <memory>
#include <string>

#include "agent/block_target.h"
#include "proto/result.h"

namespace tideway::agent {

class LocalVolume final : public BlockTarget {
 public:
  // Opens `path` read-write. With create_size > 0 a missing file is created
  // sparse at that size; an existing file must have exactly that size.
  static proto::Result<std::unique_ptr<LocalVolume>> open(const std::string& path,
                                                           uint64_t create_size = 0);
  ~LocalVolume() override;
  LocalVolume(const LocalVolume&) = delete;
  LocalVolume& operator=(const LocalVolume&) = delete;

  uint64_t size() const override { return size_; }
  int read(uint64_t offset, std::span<uint8_t> out) override;
  void write(uint64_t offset, std::span<const uint8_t> data, bool fua, IoDone done) override;
  void flush(IoDone done) override;
  void discard(uint64_t offset, uint64_t length, IoDone done) override;

  // Synchronous forms (0 or errno), used by ProtectedVolume.
  int pwrite_all(uint64_t offset, std::span<const uint8_t> data);
  int sync();
  int punch(uint64_t offset, uint64_t length);
  // The next range holding data at or after `from` (SEEK_DATA/SEEK_HOLE;
  // a block device, or a file system that cannot tell, is all data).
  // False when only holes remain.
  bool next_data(uint64_t from, uint64_t& start, uint64_t& end) const;

  const std::string& path() const { return path_; }

 private:
  LocalVolume(std::string path, int fd, uint64_t size) : path_(std::move(path)), fd_(fd), size_(size) {}
  std::string path_;
  int fd_;
  uint64_t size_;
};

}  // namespace tideway::agent

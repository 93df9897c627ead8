// Which 4 KiB blocks of a disk changed: the bulk disk copy's working set and
// the record of what a VM wrote since its disk's last copy to another site
// (the incremental return of a migration, CloudNet's follow-the-sun run).
// One bit per block; a 2 GiB disk takes 64 KiB.
//
// Persisted (save/load) with its block count and a CRC32C, so a torn or
// foreign file is refused rather than trusted: a wrong map means a return
// migration that silently misses blocks.
//
// Not thread-safe: the agent's io thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/result.h"

namespace tideway::agent {

class DirtyMap {
 public:
  static constexpr uint64_t kBlock = 4096;

  explicit DirtyMap(uint64_t disk_bytes = 0);

  uint64_t disk_bytes() const { return disk_bytes_; }
  uint64_t blocks() const { return blocks_; }
  uint64_t dirty_blocks() const { return dirty_; }
  bool empty() const { return dirty_ == 0; }

  // Every block overlapping [offset, offset + length). Preconditions
  // (asserted): in range.
  void mark(uint64_t offset, uint64_t length);
  void mark_all();
  void clear();
  bool test(uint64_t block) const;
  // Sets every bit set in `other` (same size, asserted).
  void merge(const DirtyMap& other);

  // The first run of dirty blocks at or after byte `from` (block aligned),
  // at most `max_blocks` long, cleared from the map. False when none.
  bool take_run(uint64_t from, uint64_t max_blocks, uint64_t& offset, uint64_t& length);

  proto::Result<void> save(const std::string& path) const;  // atomic (rename)
  static proto::Result<DirtyMap> load(const std::string& path, uint64_t disk_bytes);
  // The file's bytes (what save() wrote); kMalformed for anything else.
  static proto::Result<DirtyMap> parse(std::span<const uint8_t> bytes, uint64_t disk_bytes);

 private:
  uint64_t disk_bytes_ = 0, blocks_ = 0, dirty_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace tideway::agent

// libFuzzer: DirtyMap::parse (the agent's record of blocks written since a
// disk's generation; a wrong map means a return migration that misses
// blocks). Input: 4 bytes of disk size (mod 64 MiB), a mode byte (odd:
// the target fixes the file's CRC32C, so the fuzzer gets past the checksum
// to the fields behind it), then the file. Oracle:
// parse never crashes; a map it accepts has exactly dirty_blocks() set bits
// and hands them all out through take_run().
#include <cstdint>
#include <cstring>

#include <vector>

#include "agent/dirty_map.h"
#include "proto/crc32c.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using tideway::agent::DirtyMap;
  if (size < 5) return 0;
  uint32_t disk = 0;
  std::memcpy(&disk, data, 4);
  const uint64_t disk_bytes = disk % (64u << 20);
  std::vector<uint8_t> file(data + 5, data + size);
  if ((data[4] & 1) && file.size() >= 4) {
    const uint32_t crc = tideway::proto::crc32c(std::span<const uint8_t>(file).first(file.size() - 4));
    for (int i = 0; i < 4; ++i) file[file.size() - 4 + i] = static_cast<uint8_t>(crc >> (8 * i));
  }
  auto m = DirtyMap::parse(file, disk_bytes);
  if (!m) return 0;
  uint64_t bits = 0;
  for (uint64_t b = 0; b < m->blocks(); ++b) bits += m->test(b);
  FUZZ_CHECK(bits == m->dirty_blocks(), tideway::proto::MessageType::kProbe);
  uint64_t taken = 0, off = 0, len = 0, from = 0;
  while (m->take_run(from, 256, off, len)) {
    FUZZ_CHECK(off >= from && off + len <= disk_bytes, tideway::proto::MessageType::kProbe);
    taken += (len + DirtyMap::kBlock - 1) / DirtyMap::kBlock;
    from = off + len;
  }
  FUZZ_CHECK(taken == bits && m->empty(), tideway::proto::MessageType::kProbe);
  return 0;
}

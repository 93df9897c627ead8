// CRC32C (Castagnoli), the checksum of every frame and journal record.
// Backed by ISA-L's hardware-accelerated crc32_iscsi (Debian libisal).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tideway::proto {

// Standard CRC32C: crc32c("123456789") == 0xE3069283.
uint32_t crc32c(std::span<const uint8_t> data);

// Incremental form: start with kCrc32cInit, feed pieces, finish.
inline constexpr uint32_t kCrc32cInit = 0xFFFFFFFFu;
uint32_t crc32c_update(uint32_t state, std::span<const uint8_t> data);
inline uint32_t crc32c_finish(uint32_t state) { return ~state; }

}  // namespace tideway::proto

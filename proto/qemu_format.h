// Facts about QEMU 7.2's migration stream (Debian 12's qemu-system-x86),
// the byte format that proto/qemu_stream.h splits. Big-endian throughout.
// DESIGN.md Appendix A and docs/qemu-stream.md describe it; every value here
// was checked against streams captured from the test guest.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tideway::proto::qemu {

inline constexpr uint32_t kFileMagic = 0x5145564D;  // "QEVM"
inline constexpr uint32_t kFileVersion = 3;
inline constexpr size_t kFileHeaderSize = 8;
// x86 target pages; a RAM PAGE record carries exactly this many bytes.
inline constexpr size_t kPageSize = 4096;
inline constexpr uint32_t kPageBits = 12;

// The byte that starts every top-level item of the stream.
enum SectionType : uint8_t {
  kSecEof = 0x00,
  kSecStart = 0x01,  // u8 type, be32 section_id, u8 len, idstr, be32 instance, be32 version
  kSecPart = 0x02,   // u8 type, be32 section_id
  kSecEnd = 0x03,    // u8 type, be32 section_id
  kSecFull = 0x04,   // like START; the payload is a device's vmstate (no length)
  kSecSubsection = 0x05,
  kSecVmDescription = 0x06,
  kSecConfiguration = 0x07,  // be32 len, machine type, then subsections
  kSecCommand = 0x08,        // be16 cmd, be16 len, data; no footer
  kSecFooter = 0x7E,         // be32 section_id, after every START/PART/END/FULL
};
const char* section_type_name(uint8_t type);

// RAM records: a be64 whose low 12 bits are flags and whose other bits are
// the page's offset in its RAMBlock. So an offset that is not page-aligned
// cannot be written: it reads as unknown flag bits.
inline constexpr uint64_t kFlagMask = (uint64_t{1} << kPageBits) - 1;
enum RamFlag : uint32_t {
  kRamZero = 0x02,          // u8 fill byte follows (QEMU sends 0)
  kRamMemSize = 0x04,       // START only: total | flag, then the block list
  kRamPage = 0x08,          // kPageSize raw bytes follow
  kRamEos = 0x10,           // end of this section's RAM payload
  kRamContinue = 0x20,      // same RAMBlock as the previous record: no idstr
  kRamXbzrle = 0x40,        // not supported (capability off)
  kRamHook = 0x80,          // RDMA only, not supported
  kRamCompressPage = 0x100, // not supported (capability off)
  kRamMultifdFlush = 0x200, // QEMU >= 8.1 with multifd, not supported
};

// Section payload version of "ram" (QEMU refuses others).
inline constexpr uint32_t kRamSectionVersion = 4;
inline constexpr char kRamIdstr[] = "ram";

// COMMAND numbers (be16). Only PING is accepted by the splitter: the others
// open a return path or belong to postcopy/COLO, which a one-way relay
// cannot carry.
enum Command : uint16_t {
  kCmdOpenReturnPath = 1,
  kCmdPing = 2,  // be32 value
  kCmdPostcopyAdvise = 3,
  kCmdPostcopyListen = 4,
  kCmdPostcopyRun = 5,
  kCmdPostcopyRamDiscard = 6,
  kCmdPostcopyResume = 7,
  kCmdPackaged = 8,
  kCmdRecvBitmap = 9,
  kCmdEnableColo = 10,
};
const char* command_name(uint16_t cmd);  // "?" for unknown numbers
inline constexpr uint16_t kPingLength = 4;

// Subsections of the CONFIGURATION section, in the order QEMU writes them.
// q35/TCG sends none of them; each is needed only with a special setting.
inline constexpr char kSubTargetPageBits[] = "configuration/target-page-bits";  // be32
inline constexpr char kSubCapabilities[] = "configuration/capabilities";       // x-ignore-shared: refused
inline constexpr char kSubUuid[] = "configuration/uuid";                       // 16 bytes

// Bounds (a stream beyond them is refused, never buffered).
inline constexpr size_t kMaxMachineType = 256;  // "pc-q35-7.2" is 10
inline constexpr size_t kMaxRamBlocks = 1024;   // q35 has 6
// page_key() keeps 48 bits for the offset.
inline constexpr uint64_t kMaxBlockBytes = uint64_t{1} << 48;

// The key the splitter gives a page: RAMBlock index (order of the block
// list in the RAM START section) and byte offset within the block.
inline uint64_t page_key(uint32_t block_index, uint64_t offset) {
  return (uint64_t{block_index} << 48) | offset;
}
inline uint32_t key_block(uint64_t key) { return static_cast<uint32_t>(key >> 48); }
inline uint64_t key_offset(uint64_t key) { return key & (kMaxBlockBytes - 1); }

}  // namespace tideway::proto::qemu

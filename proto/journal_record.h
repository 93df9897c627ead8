// The backup journal's on-disk record: one replicated write, checksummed so
// that recovery can tell a complete record from a torn or corrupt one.
//
//   u32 magic "TWJ1" | u32 total length | u32 writer | u32 volume | u64 seq
//   u8 op | u8 vector length | u16 zero | u32 flags | u64 offset | u32 length
//   vector (u32 each) | data (length bytes, op 1 only) | u32 CRC32C of all
//   bytes before it
//
// Pure code: the journal (replicator/) owns files and recovery policy.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "proto/messages.h"
#include "proto/result.h"

namespace tideway::proto {

inline constexpr uint32_t kJournalMagic = 0x314A5754;  // "TWJ1"
inline constexpr size_t kJournalHeaderSize = 44;
inline constexpr size_t kJournalMaxRecord =
    kJournalHeaderSize + 4 * kMaxVectorLen + kMaxWriteLen + 4;

// Size of the encoded record for `w`.
size_t journal_record_size(const ReplWrite& w);

// Appends the record to `out`. Preconditions (asserted): `w` is a valid
// REPL_WRITE (seq > 0, length bounds, data iff op is write).
void append_journal_record(const ReplWrite& w, std::vector<uint8_t>& out);

struct JournalRecord {
  ReplWrite write;   // data views into the decoded buffer
  size_t size = 0;   // bytes the record occupies
};

// Decodes the record at the start of `in`. kTruncated: `in` ends inside
// the record (a torn tail if it is the end of the journal); kBadMagic,
// kBadChecksum, kMalformed, kTooLarge: not a valid record.
Result<JournalRecord> decode_journal_record(std::span<const uint8_t> in);

}  // namespace tideway::proto

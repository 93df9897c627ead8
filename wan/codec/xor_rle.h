// Page deltas: XOR of the current bytes against the last sent version,
// run-length coded as a sequence of runs
//   {varint skip, varint len >= 1, len XOR bytes}
// where skip counts unchanged bytes since the end of the previous run and
// bytes after the last run are unchanged. Varints are LEB128, <= 2 bytes.
// One pass: equal regions are skipped 32 bytes at a time, and a run ends at
// the first all-equal aligned 8-byte word (gaps shorter than that travel as
// XOR zeros, which is cheaper than a new run header).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tideway::wan::codec {

inline constexpr size_t kNoDelta = SIZE_MAX;
// Bytes `out` must have beyond `limit` (word-wide stores may run past).
inline constexpr size_t kRleSlack = 16;

// Encodes XOR(cur, base) over n bytes (n a multiple of 8, <= 4096) into out
// (room for limit + kRleSlack bytes). Returns the encoded size (0 = equal),
// or kNoDelta as soon as it would exceed `limit` (heavily changed data
// costs about one pass up to the limit, no more).
size_t xor_rle_encode(const uint8_t* cur, const uint8_t* base, size_t n, uint8_t* out, size_t limit);

// XORs the runs in [runs, runs + len) onto dst (n bytes, holding the base).
// False if the runs are malformed or reach past n; dst may then be partly
// modified (callers decode into scratch).
bool xor_rle_apply(const uint8_t* runs, size_t len, uint8_t* dst, size_t n);

}  // namespace tideway::wan::codec

// Counters of one encoder or one decoder. Both ends count the same things
// (the decoder counts what it decoded), so the two can be compared.
#pragma once

#include <cstdint>
#include <string>

#include "wan/codec/batch_format.h"

namespace tideway::wan::codec {

struct CodecStats {
  uint64_t batches = 0;
  uint64_t records = 0;
  // Records by encoding. A "blocks" record is classed by its sub-blocks:
  // all cache hits -> cbr, all delta/unchanged -> delta, else mixed.
  uint64_t zero_records = 0;
  uint64_t raw_records = 0;
  uint64_t cbr_records = 0;
  uint64_t delta_records = 0;
  uint64_t mixed_records = 0;
  // Sub-blocks of non-zero, non-raw records, by how each was sent.
  uint64_t sub_literal = 0;
  uint64_t sub_hit = 0;        // CBR cache hit: a 32-bit index
  uint64_t sub_delta = 0;      // XOR against the last version, run-length coded
  uint64_t sub_unchanged = 0;  // identical to the last version: nothing sent
  uint64_t hash_collisions = 0;  // encoder: hash matched, bytes did not
  // Volume: page bytes (what the guest/disk has) and wire bytes (batches).
  uint64_t page_bytes = 0;
  uint64_t wire_bytes = 0;
  uint64_t literal_bytes = 0;     // literal section, before zstd
  uint64_t zstd_chunks = 0;       // literal chunks sent compressed
  uint64_t zstd_in = 0;           // ... their bytes before
  uint64_t zstd_out = 0;          // ... and after
  uint64_t zstd_skipped = 0;      // chunks the entropy sample judged random
  uint64_t zstd_not_smaller = 0;  // chunks zstd could not shrink
  uint64_t cpu_ns = 0;            // thread CPU time inside encode/decode
  uint64_t resets = 0;            // epochs started (encoder) or adopted (decoder)
  uint64_t rejected = 0;          // decoder: batches refused
};

// Counts one "blocks" record (not zero, not raw) of `sub_blocks`
// sub-blocks, from how many were sent with each SubCode (indexed by its
// value). Encoder and decoder both call it, so their counters agree.
inline void count_blocks_record(CodecStats& s, const uint32_t (&by_code)[4], uint32_t sub_blocks) {
  const uint32_t literal = by_code[static_cast<uint8_t>(SubCode::kLiteral)];
  const uint32_t hit = by_code[static_cast<uint8_t>(SubCode::kHit)];
  s.sub_literal += literal;
  s.sub_hit += hit;
  s.sub_delta += by_code[static_cast<uint8_t>(SubCode::kDelta)];
  s.sub_unchanged += by_code[static_cast<uint8_t>(SubCode::kUnchanged)];
  if (hit == sub_blocks)
    ++s.cbr_records;
  else if (hit == 0 && literal == 0)
    ++s.delta_records;
  else
    ++s.mixed_records;
}

// page_bytes / wire_bytes (1.0 when nothing was sent).
double reduction_ratio(const CodecStats& s);
// One line, for logs and the scan tool.
std::string to_string(const CodecStats& s);

// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), nanoseconds.
uint64_t thread_cpu_ns();

}  // namespace tideway::wan::codec

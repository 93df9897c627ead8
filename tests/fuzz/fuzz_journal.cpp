// fuzz_journal: the backup journal's record decoder, as recovery meets it
// (torn tails, bit rot, garbage). Oracles: a decoded record uses only bytes
// of the input, claims no more than it has, re-encodes to exactly the bytes
// it was decoded from (the format is canonical), and a valid record with a
// torn end or any flipped byte is rejected.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "proto/journal_record.h"

using namespace tideway::proto;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_journal oracle violated: %s\n", what);
  std::abort();
}
#define CHECK(c) \
  do {           \
    if (!(c)) fail(#c); \
  } while (0)

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  auto r = decode_journal_record(in);
  if (!r) {
    CHECK(!r.error().detail.empty());
    return 0;
  }
  CHECK(r->size <= size && r->size == journal_record_size(r->write));
  const auto& d = r->write.data;
  CHECK(d.empty() || (d.data() >= data && d.data() + d.size() <= data + r->size));
  std::vector<uint8_t> again;
  append_journal_record(r->write, again);
  CHECK(again.size() == r->size && std::equal(again.begin(), again.end(), data));
  // A torn copy never decodes.
  CHECK(!decode_journal_record(std::span(again).first(again.size() - 1)).ok());
  // Nor does one with a byte flipped (the CRC covers everything).
  again[size % again.size()] ^= 0x01;
  CHECK(!decode_journal_record(again).ok());
  return 0;
}

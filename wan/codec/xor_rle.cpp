#include "wan/codec/xor_rle.h"

#include <cassert>

#include "wan/codec/batch_format.h"
#include "wan/codec/page_ops.h"

namespace tideway::wan::codec {

namespace {

inline uint64_t xor_word(const uint8_t* a, const uint8_t* b, size_t i) { return load64(a + i) ^ load64(b + i); }
inline size_t varint_size(size_t v) { return v < 0x80 ? 1 : 2; }

}  // namespace

size_t xor_rle_encode(const uint8_t* cur, const uint8_t* base, size_t n, uint8_t* out, size_t limit) {
  assert(n % 8 == 0 && n <= kMaxVarint);
  size_t o = 0;
  size_t i = 0;
  size_t prev_end = 0;
  for (;;) {
    // Skip equal bytes: 32 at a time, then word by word.
    while (i + 32 <= n && (xor_word(cur, base, i) | xor_word(cur, base, i + 8) | xor_word(cur, base, i + 16) |
                           xor_word(cur, base, i + 24)) == 0)
      i += 32;
    uint64_t w = 0;
    while (i < n && (w = xor_word(cur, base, i)) == 0) i += 8;
    if (i >= n) break;
    // Little-endian: the first differing byte is the lowest non-zero byte.
    const size_t start = i + static_cast<size_t>(__builtin_ctzll(w)) / 8;
    uint64_t last = w;
    size_t j = i + 8;
    while (j < n) {
      const uint64_t x = xor_word(cur, base, j);
      if (x == 0) break;
      last = x;
      j += 8;
      if (o + (j - start) > limit) return kNoDelta;  // heavily changed: give up early
    }
    const size_t end = j - static_cast<size_t>(__builtin_clzll(last)) / 8;
    const size_t skip = start - prev_end;
    const size_t len = end - start;
    if (o + varint_size(skip) + varint_size(len) + len > limit) return kNoDelta;
    uint8_t* q = put_varint(put_varint(out + o, static_cast<uint32_t>(skip)), static_cast<uint32_t>(len));
    size_t k = start;
    for (; k + 8 <= end; k += 8, q += 8) store64(q, xor_word(cur, base, k));
    for (; k < end; ++k) *q++ = cur[k] ^ base[k];
    o = static_cast<size_t>(q - out);
    prev_end = end;
    i = j;
  }
  return o;
}

bool xor_rle_apply(const uint8_t* runs, size_t len, uint8_t* dst, size_t n) {
  const uint8_t* p = runs;
  const uint8_t* const end = runs + len;
  size_t pos = 0;
  while (p < end) {
    uint32_t skip = 0, run = 0;
    if (!get_varint(p, end, skip) || !get_varint(p, end, run)) return false;
    if (run == 0 || skip > n - pos) return false;
    pos += skip;
    if (run > n - pos || run > static_cast<size_t>(end - p)) return false;
    size_t k = 0;
    for (; k + 8 <= run; k += 8) store64(dst + pos + k, load64(dst + pos + k) ^ load64(p + k));
    for (; k < run; ++k) dst[pos + k] ^= p[k];
    p += run;
    pos += run;
  }
  return true;
}

}  // namespace tideway::wan::codec

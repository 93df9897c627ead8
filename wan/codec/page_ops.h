// Word-at-a-time helpers for the hot loops. Loads go through memcpy so any
// alignment is fine and the compiler emits plain (vectorizable) moves.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tideway::wan::codec {

inline uint64_t load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }

// True when n bytes (a multiple of 64) are all zero. Checks 64 bytes per
// step so random data exits after the first step.
inline bool is_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i += 64) {
    uint64_t acc = 0;
    for (size_t k = 0; k < 64; k += 8) acc |= load64(p + i + k);
    if (acc != 0) return false;
  }
  return true;
}

// Copies n bytes (a multiple of 64) to a 16-byte aligned destination with
// non-temporal stores: for the cache slab and the delta store, whose lines
// are read back (if ever) long after they are written, this skips reading
// each destination line first and keeps the working set in the cache.
// Callers issue store_fence() before the state is handed to another thread.
inline void copy_streaming(uint8_t* dst, const uint8_t* src, size_t n) {
#if defined(__SSE2__)
  for (size_t i = 0; i < n; i += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 48), d);
  }
#else
  std::memcpy(dst, src, n);
#endif
}
inline void store_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace tideway::wan::codec

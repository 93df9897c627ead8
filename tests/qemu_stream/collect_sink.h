// A StreamSink that rebuilds the stream (every span in call order) and
// records each page callback, plus helpers to feed a stream in pieces.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "proto/qemu_stream.h"

namespace tideway::testing::qemu {

struct CollectSink : proto::qemu::StreamSink {
  std::vector<uint8_t> out;        // opaque and page bytes, in call order
  std::vector<uint64_t> keys;      // page keys, in order
  std::vector<size_t> page_at;     // where each page's bytes start in `out`
  uint64_t opaque_calls = 0;
  bool empty_span = false;         // a callback with no bytes (never expected)

  void opaque(std::span<const uint8_t> b) override {
    empty_span |= b.empty();
    ++opaque_calls;
    out.insert(out.end(), b.begin(), b.end());
  }
  void page(uint64_t key, std::span<const uint8_t> d) override {
    empty_span |= d.size() != proto::qemu::kPageSize;
    keys.push_back(key);
    page_at.push_back(out.size());
    out.insert(out.end(), d.begin(), d.end());
  }
  std::vector<uint8_t> page_bytes(size_t k) const {
    return {out.begin() + static_cast<long>(page_at[k]),
            out.begin() + static_cast<long>(page_at[k] + proto::qemu::kPageSize)};
  }
};

// Feeds `in` cut at the given offsets (sorted, inside the input); stops at
// the first error and returns it.
inline proto::Result<void> feed_cut(proto::qemu::StreamSplitter& s, std::span<const uint8_t> in,
                                    const std::vector<size_t>& cuts, CollectSink& sink) {
  size_t at = 0;
  for (size_t c : cuts) {
    c = std::min(c, in.size());
    if (c < at) continue;
    if (auto r = s.feed(in.subspan(at, c - at), sink); !r.ok()) return r;
    at = c;
  }
  return s.feed(in.subspan(at), sink);
}

inline proto::Result<void> feed_bytewise(proto::qemu::StreamSplitter& s, std::span<const uint8_t> in,
                                         CollectSink& sink) {
  for (size_t i = 0; i < in.size(); ++i)
    if (auto r = s.feed(in.subspan(i, 1), sink); !r.ok()) return r;
  return {};
}

}  // namespace tideway::testing::qemu

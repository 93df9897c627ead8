// Oracles shared by the fuzz targets. Any violated check aborts, which
// libFuzzer reports as a crash with the input that caused it.
#pragma once

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <span>
#include <variant>
#include <vector>

#include "proto/messages.h"

namespace tideway::proto::fuzz {

[[noreturn]] inline void fail(const char* what, MessageType t) {
  std::fprintf(stderr, "fuzz oracle violated (%s): %s\n", type_name(t), what);
  std::abort();
}

#define FUZZ_CHECK(cond, type) \
  do {                         \
    if (!(cond)) ::tideway::proto::fuzz::fail(#cond, type); \
  } while (0)

inline bool inside(std::span<const uint8_t> view, std::span<const uint8_t> buf) {
  if (view.empty()) return true;
  return view.data() >= buf.data() && view.data() + view.size() <= buf.data() + buf.size();
}

// Decodes `payload` as `type`. A decode error is fine (that is the point);
// a decoded message must (1) have the type asked for, (2) only hold views
// into `payload`, (3) re-encode to exactly `payload` (the encoding is
// canonical), and (4) decode again from its re-encoding.
inline void check_payload(MessageType type, std::span<const uint8_t> payload) {
  auto m = decode_payload(type, payload);
  if (!m.ok()) {
    FUZZ_CHECK(!m.error().detail.empty(), type);
    return;
  }
  FUZZ_CHECK(message_type(*m) == type, type);
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, ReplWrite>) {
          FUZZ_CHECK(inside(x.data, payload), type);
          if (x.flags & kWriteEncoded)  // a codec batch: the replicator decodes and checks it
            FUZZ_CHECK(repl_encodable(x.op, x.volume, x.offset, x.length) && !x.data.empty() &&
                           x.data.size() <= kMaxEncodedWriteLen,
                       type);
          else
            FUZZ_CHECK(x.op == WriteOp::kWrite ? x.data.size() == x.length : x.data.empty(), type);
          FUZZ_CHECK(x.seq != 0 && x.length != 0 && x.length <= kMaxWriteLen, type);
        } else if constexpr (std::is_same_v<T, MigControl>) {
          FUZZ_CHECK(inside(x.detail, payload), type);
        } else if constexpr (std::is_same_v<T, MigPages>) {
          // Page cuts locate codec pages inside the opaque stream bytes: the
          // destination splices them back, so an out-of-order cut must not decode.
          FUZZ_CHECK(inside(x.opaque, payload) && inside(x.batch, payload), type);
          FUZZ_CHECK(x.page_cuts.size() <= kMaxRecordsPerBatch, type);
          FUZZ_CHECK(x.page_cuts.empty() == x.batch.empty(), type);
          FUZZ_CHECK(std::is_sorted(x.page_cuts.begin(), x.page_cuts.end()), type);
          for (uint32_t cut : x.page_cuts) FUZZ_CHECK(cut <= x.opaque.size(), type);
        } else if constexpr (std::is_same_v<T, DiskBlocks>) {
          FUZZ_CHECK(x.records.size() <= kMaxRecordsPerBatch, type);
          for (const auto& r : x.records) FUZZ_CHECK(inside(r.bytes, payload), type);
        } else if constexpr (std::is_same_v<T, Probe>) {
          FUZZ_CHECK(inside(x.padding, payload), type);
        } else if constexpr (std::is_same_v<T, Hello> || std::is_same_v<T, Welcome>) {
          FUZZ_CHECK(x.site.size() <= kMaxNameLen && x.received.size() <= kMaxStreams, type);
        } else if constexpr (std::is_same_v<T, StreamAck>) {
          FUZZ_CHECK(x.acked.size() <= kMaxStreams, type);
        }
      },
      *m);
  const std::vector<uint8_t> again = encode_payload(*m);
  FUZZ_CHECK(again.size() == payload.size(), type);
  FUZZ_CHECK(std::equal(again.begin(), again.end(), payload.begin()), type);
  auto m2 = decode_payload(type, again);
  FUZZ_CHECK(m2.ok(), type);
  FUZZ_CHECK(encode_payload(*m2) == again, type);
}

}  // namespace tideway::proto::fuzz

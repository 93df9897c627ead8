// Field-by-field equality of decoded messages for GoogleTest. Span fields are
// compared by content (the decoded view points into a different buffer).
#pragma once

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <variant>
#include <vector>

#include "proto/messages.h"

namespace tideway::proto::testing {

inline std::vector<uint8_t> to_vec(std::span<const uint8_t> s) { return {s.begin(), s.end()}; }

inline void expect_records_eq(const std::vector<Record>& a, const std::vector<Record>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    EXPECT_EQ(a[i].address, b[i].address);
    EXPECT_EQ(a[i].encoding, b[i].encoding);
    EXPECT_EQ(to_vec(a[i].bytes), to_vec(b[i].bytes));
  }
}

// Expects `got` to hold the same alternative as `want` with equal fields.
inline void expect_message_eq(const Message& want, const Message& got) {
  ASSERT_EQ(want.index(), got.index()) << "different message types";
  std::visit(
      [&](const auto& w) {
        using T = std::decay_t<decltype(w)>;
        const T& g = std::get<T>(got);
        if constexpr (std::is_same_v<T, ReplWrite>) {
          EXPECT_EQ(w.writer, g.writer);
          EXPECT_EQ(w.volume, g.volume);
          EXPECT_EQ(w.seq, g.seq);
          EXPECT_EQ(w.vector, g.vector);
          EXPECT_EQ(w.op, g.op);
          EXPECT_EQ(w.flags, g.flags);
          EXPECT_EQ(w.offset, g.offset);
          EXPECT_EQ(w.length, g.length);
          EXPECT_EQ(to_vec(w.data), to_vec(g.data));
        } else if constexpr (std::is_same_v<T, MigControl>) {
          EXPECT_EQ(w.migration, g.migration);
          EXPECT_EQ(w.op, g.op);
          EXPECT_EQ(w.iteration, g.iteration);
          EXPECT_EQ(w.pages_sent, g.pages_sent);
          EXPECT_EQ(w.pages_dirtied, g.pages_dirtied);
          EXPECT_EQ(w.pages_remaining, g.pages_remaining);
          EXPECT_EQ(to_vec(w.detail), to_vec(g.detail));
        } else if constexpr (std::is_same_v<T, MigPages>) {
          EXPECT_EQ(w.migration, g.migration);
          EXPECT_EQ(w.stream_offset, g.stream_offset);
          EXPECT_EQ(to_vec(w.opaque), to_vec(g.opaque));
          EXPECT_EQ(w.page_cuts, g.page_cuts);
          EXPECT_EQ(to_vec(w.batch), to_vec(g.batch));
        } else if constexpr (std::is_same_v<T, DiskBlocks>) {
          EXPECT_EQ(w.volume, g.volume);
          EXPECT_EQ(w.block_size, g.block_size);
          expect_records_eq(w.records, g.records);
        } else if constexpr (std::is_same_v<T, Probe>) {
          EXPECT_EQ(w.sent_ns, g.sent_ns);
          EXPECT_EQ(w.index, g.index);
          EXPECT_EQ(to_vec(w.padding), to_vec(g.padding));
        } else {
          // Plain structs with a defaulted operator==.
          EXPECT_TRUE(w == g);
        }
      },
      want);
}

}  // namespace tideway::proto::testing

// The literal section of a batch: every literal sub-block of the batch, in
// record order, cut into kLiteralChunk chunks that are each stored or
// compressed with zstd. The writer decides per chunk: a 4 KiB byte sample
// with an order-0 entropy of >= 7.9 bits/byte (random, encrypted or already
// compressed data) is stored without running zstd; otherwise zstd runs and
// its output is used only if it saves at least 1/64 of the chunk.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "proto/result.h"
#include "wan/codec/codec_stats.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace tideway::wan::codec {

// Encoder side: collects pointers to the literal sub-blocks (the pages are
// alive for the whole encode call), so stored chunks are copied once, into
// the batch.
class LiteralWriter {
 public:
  LiteralWriter(uint32_t sub_size, uint32_t max_subs, int zstd_level, bool entropy_check);
  ~LiteralWriter();
  LiteralWriter(const LiteralWriter&) = delete;
  LiteralWriter& operator=(const LiteralWriter&) = delete;

  void add(const uint8_t* sub) { refs_.push_back(sub); }
  uint32_t bytes() const { return static_cast<uint32_t>(refs_.size()) * sub_size_; }
  void clear() { refs_.clear(); }
  // Appends the chunks to `out`.
  void write(std::vector<uint8_t>& out, CodecStats& stats);

 private:
  bool looks_random(size_t first, size_t count) const;
  uint32_t sub_size_;
  int level_;
  bool entropy_check_;
  std::vector<const uint8_t*> refs_;
  std::unique_ptr<uint8_t[]> gather_;  // one chunk, contiguous, for zstd
  std::unique_ptr<uint8_t[]> packed_;  // zstd output
  size_t packed_cap_ = 0;
  ZSTD_CCtx_s* cctx_ = nullptr;
};

// Decoder side: parses the chunk headers, decompresses zstd chunks into
// scratch, and hands out sub-blocks in order (views into the batch for
// stored chunks: no copy).
class LiteralReader {
 public:
  explicit LiteralReader(uint32_t max_literal_bytes);
  ~LiteralReader();
  LiteralReader(const LiteralReader&) = delete;
  LiteralReader& operator=(const LiteralReader&) = delete;

  // `section` must be exactly the chunks of `literal_len` decoded bytes.
  proto::Result<void> open(std::span<const uint8_t> section, uint32_t literal_len);
  // The next n bytes if they lie in one chunk (n divides kLiteralChunk or is
  // a page), else nullptr (and nothing consumed) - also when exhausted.
  const uint8_t* next(uint32_t n);
  bool has(uint32_t n) const { return size_t{pos_} + n <= len_; }
  bool done() const { return pos_ == len_; }

 private:
  uint32_t max_;
  std::unique_ptr<uint8_t[]> scratch_;
  std::vector<const uint8_t*> chunks_;
  uint32_t len_ = 0;
  uint32_t pos_ = 0;
  ZSTD_DCtx_s* dctx_ = nullptr;
};

}  // namespace tideway::wan::codec

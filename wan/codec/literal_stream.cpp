#include "wan/codec/literal_stream.h"

#include <zstd.h>

#include <array>
#include <cassert>
#include <cmath>
#include <cstring>
#include <string>

#include "wan/codec/batch_format.h"

namespace tideway::wan::codec {

using proto::Errc;

namespace {

constexpr size_t kSampleBytes = 4096;
constexpr size_t kSamplePiece = 64;  // divides every sub-block size
constexpr double kRandomBits = 7.9;  // uniform bytes give ~7.955 on 4096 samples

// c * log2(c) for c in [0, kSampleBytes], built once.
const std::array<float, kSampleBytes + 1>& clog2c() {
  static const auto table = [] {
    std::array<float, kSampleBytes + 1> t{};
    for (size_t c = 1; c <= kSampleBytes; ++c)
      t[c] = static_cast<float>(static_cast<double>(c) * std::log2(static_cast<double>(c)));
    return t;
  }();
  return table;
}

}  // namespace

LiteralWriter::LiteralWriter(uint32_t sub_size, uint32_t max_subs, int zstd_level, bool entropy_check)
    : sub_size_(sub_size), level_(zstd_level), entropy_check_(entropy_check) {
  assert(kLiteralChunk % sub_size == 0 && sub_size % kSamplePiece == 0);
  refs_.reserve(max_subs);
  if (level_ != 0) {
    gather_ = std::make_unique_for_overwrite<uint8_t[]>(kLiteralChunk);
    packed_cap_ = ZSTD_compressBound(kLiteralChunk);
    packed_ = std::make_unique_for_overwrite<uint8_t[]>(packed_cap_);
    cctx_ = ZSTD_createCCtx();
  }
}

LiteralWriter::~LiteralWriter() { ZSTD_freeCCtx(cctx_); }

// Order-0 entropy of kSampleBytes taken as 64-byte pieces spread evenly
// over the chunk's sub-blocks [first, first + count).
bool LiteralWriter::looks_random(size_t first, size_t count) const {
  const size_t chunk_bytes = count * sub_size_;
  if (chunk_bytes < kSampleBytes) return false;  // small: just try zstd
  uint32_t hist[256] = {};
  const size_t pieces = kSampleBytes / kSamplePiece;
  const size_t stride = chunk_bytes / pieces / kSamplePiece * kSamplePiece;
  for (size_t i = 0; i < pieces; ++i) {
    const size_t off = i * stride;
    const uint8_t* p = refs_[first + off / sub_size_] + off % sub_size_;
    for (size_t k = 0; k < kSamplePiece; ++k) ++hist[p[k]];
  }
  const auto& t = clog2c();
  double sum = 0;
  for (uint32_t c : hist) sum += t[c];
  const double bits = std::log2(static_cast<double>(kSampleBytes)) - sum / kSampleBytes;
  return bits >= kRandomBits;
}

void LiteralWriter::write(std::vector<uint8_t>& out, CodecStats& stats) {
  const size_t per_chunk = kLiteralChunk / sub_size_;
  stats.literal_bytes += bytes();
  for (size_t first = 0; first < refs_.size(); first += per_chunk) {
    const size_t count = std::min(per_chunk, refs_.size() - first);
    const size_t raw = count * sub_size_;
    uint8_t head[kChunkHeaderSize];
    if (level_ != 0) {
      if (entropy_check_ && looks_random(first, count)) {
        ++stats.zstd_skipped;
      } else {
        for (size_t i = 0; i < count; ++i) std::memcpy(gather_.get() + i * sub_size_, refs_[first + i], sub_size_);
        const size_t n = ZSTD_compressCCtx(cctx_, packed_.get(), packed_cap_, gather_.get(), raw, level_);
        // Compression of a bounded buffer into compressBound cannot fail.
        assert(!ZSTD_isError(n));
        if (!ZSTD_isError(n) && n + raw / 64 < raw) {
          head[0] = static_cast<uint8_t>(ChunkMethod::kZstd);
          store_le32(head + 1, static_cast<uint32_t>(n));
          out.insert(out.end(), head, head + kChunkHeaderSize);
          out.insert(out.end(), packed_.get(), packed_.get() + n);
          ++stats.zstd_chunks;
          stats.zstd_in += raw;
          stats.zstd_out += n;
          continue;
        }
        ++stats.zstd_not_smaller;
      }
    }
    head[0] = static_cast<uint8_t>(ChunkMethod::kStored);
    store_le32(head + 1, static_cast<uint32_t>(raw));
    out.insert(out.end(), head, head + kChunkHeaderSize);
    for (size_t i = 0; i < count; ++i) out.insert(out.end(), refs_[first + i], refs_[first + i] + sub_size_);
  }
}

LiteralReader::LiteralReader(uint32_t max_literal_bytes) : max_(max_literal_bytes) {
  scratch_ = std::make_unique_for_overwrite<uint8_t[]>(max_literal_bytes);
  chunks_.reserve((max_literal_bytes + kLiteralChunk - 1) / kLiteralChunk);
  dctx_ = ZSTD_createDCtx();
  // Chunks are at most 128 KiB, so no legitimate frame needs a larger window.
  ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, 17);
}

LiteralReader::~LiteralReader() { ZSTD_freeDCtx(dctx_); }

proto::Result<void> LiteralReader::open(std::span<const uint8_t> section, uint32_t literal_len) {
  chunks_.clear();
  len_ = 0;
  pos_ = 0;
  if (literal_len > max_)
    return {Errc::kTooLarge, "literal section of " + std::to_string(literal_len) + " bytes exceeds " +
                                 std::to_string(max_)};
  size_t at = 0;
  for (uint32_t done = 0; done < literal_len; done += kLiteralChunk) {
    const uint32_t want = std::min(kLiteralChunk, literal_len - done);
    auto which = [&] { return "literal chunk " + std::to_string(chunks_.size()); };  // only on failure
    if (section.size() - at < kChunkHeaderSize) return {Errc::kTruncated, which() + ": header truncated"};
    const uint8_t method = section[at];
    const uint32_t stored = load_le32(section.data() + at + 1);
    at += kChunkHeaderSize;
    if (stored > section.size() - at)
      return {Errc::kTruncated, which() + ": " + std::to_string(stored) + " bytes announced, " +
                                    std::to_string(section.size() - at) + " present"};
    const uint8_t* src = section.data() + at;
    at += stored;
    if (method == static_cast<uint8_t>(ChunkMethod::kStored)) {
      if (stored != want)
        return {Errc::kMalformed, which() + ": stored length " + std::to_string(stored) + ", expected " +
                                      std::to_string(want)};
      chunks_.push_back(src);
    } else if (method == static_cast<uint8_t>(ChunkMethod::kZstd)) {
      if (stored == 0 || stored >= want)
        return {Errc::kMalformed, which() + ": zstd length " + std::to_string(stored) + " is not below " +
                                      std::to_string(want)};
      uint8_t* dst = scratch_.get() + done;
      const size_t n = ZSTD_decompressDCtx(dctx_, dst, want, src, stored);
      if (ZSTD_isError(n)) return {Errc::kMalformed, which() + ": zstd: " + ZSTD_getErrorName(n)};
      if (n != want)
        return {Errc::kMalformed, which() + ": zstd gave " + std::to_string(n) + " bytes, expected " +
                                      std::to_string(want)};
      chunks_.push_back(dst);
    } else {
      return {Errc::kMalformed, which() + ": unknown method " + std::to_string(method)};
    }
  }
  if (at != section.size())
    return {Errc::kTrailingBytes, std::to_string(section.size() - at) + " bytes after the last literal chunk"};
  len_ = literal_len;
  return {};
}

const uint8_t* LiteralReader::next(uint32_t n) {
  if (!has(n)) return nullptr;
  const uint32_t chunk = pos_ / kLiteralChunk;
  const uint32_t off = pos_ % kLiteralChunk;
  if (off + n > kLiteralChunk) return nullptr;
  pos_ += n;
  return chunks_[chunk] + off;
}

}  // namespace tideway::wan::codec

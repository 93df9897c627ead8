// A hypervisor's memory migration stream through the codec: the source
// cuts the stream into MIG_PAGES pieces (bytes between pages verbatim,
// pages as one codec batch), the destination rebuilds the identical byte
// stream from them. The splitting itself (which bytes are pages) is the
// hypervisor format's business (proto/qemu_stream for QEMU).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "proto/messages.h"
#include "proto/result.h"
#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace tideway::wan::codec {

// Bounds of one piece. The defaults keep the worst case (every page raw,
// plus the batch's headers, plus the opaque bytes) under the frame payload
// limit: 192 pages x 4 KiB + 128 KiB < 1 MiB.
struct PieceLimits {
  size_t max_pages = 192;
  size_t max_opaque = size_t{128} << 10;
};

class PageStreamEncoder {
 public:
  static proto::Result<std::unique_ptr<PageStreamEncoder>> create(const CodecConfig& config, uint32_t migration,
                                                                  PieceLimits limits = {});

  // Adds pass-through bytes; returns how many were taken (fewer than given
  // when the piece is full: take() it, then add the rest).
  size_t add_opaque(std::span<const uint8_t> bytes);
  // Adds one page (kPageSize bytes, copied). Precondition: !full().
  void add_page(uint64_t address, std::span<const uint8_t> page);
  bool full() const;
  bool empty() const { return opaque_.empty() && cuts_.empty(); }

  // Encodes the pending piece as one MIG_PAGES payload into `payload` and
  // starts the next piece. Precondition: !empty(). Encoding advances the
  // codec's state: the payload must reach the peer (the channel's streams
  // deliver exactly once, in order) or the migration must start over.
  proto::Result<void> take(std::vector<uint8_t>& payload);

  uint64_t stream_offset() const { return offset_; }  // bytes of the stream taken so far
  uint64_t pages() const { return pages_; }
  const CodecStats& stats() const { return encoder_->stats(); }

 private:
  PageStreamEncoder(std::unique_ptr<Encoder> e, uint32_t migration, PieceLimits limits);

  std::unique_ptr<Encoder> encoder_;
  uint32_t migration_;
  PieceLimits limits_;
  std::vector<uint8_t> opaque_;
  std::vector<uint32_t> cuts_;
  std::vector<uint8_t> page_bytes_;  // cuts_.size() pages
  std::vector<uint64_t> addresses_;
  std::vector<PageRef> refs_;
  std::vector<uint8_t> batch_;
  uint64_t offset_ = 0;
  uint64_t pages_ = 0;
};

class PageStreamDecoder {
 public:
  static proto::Result<std::unique_ptr<PageStreamDecoder>> create(const CodecConfig& config, uint32_t migration);

  // Appends the stream bytes of `piece` to `out`. On any error (wrong
  // migration or offset, a batch that does not decode or does not hold
  // exactly one page per cut) nothing is appended; the stream cannot go on
  // (a piece is missing from it) and the migration must be cancelled.
  proto::Result<void> decode(const proto::MigPages& piece, std::vector<uint8_t>& out);

  uint64_t stream_offset() const { return offset_; }
  uint64_t pages() const { return pages_; }
  const CodecStats& stats() const { return decoder_->stats(); }

 private:
  PageStreamDecoder(std::unique_ptr<Decoder> d, uint32_t migration) : decoder_(std::move(d)), migration_(migration) {}

  std::unique_ptr<Decoder> decoder_;
  uint32_t migration_;
  uint64_t offset_ = 0;
  uint64_t pages_ = 0;
};

}  // namespace tideway::wan::codec

#include "wan/codec/page_stream.h"

#include <cassert>
#include <cstring>
#include <string>

namespace tideway::wan::codec {

using proto::Errc;
using proto::Error;

proto::Result<std::unique_ptr<PageStreamEncoder>> PageStreamEncoder::create(const CodecConfig& config,
                                                                            uint32_t migration,
                                                                            PieceLimits limits) {
  if (limits.max_pages == 0 || limits.max_pages > config.max_records ||
      limits.max_pages > proto::kMaxRecordsPerBatch)
    return Error{Errc::kInvalid, "page stream: max_pages must be 1.." + std::to_string(config.max_records)};
  if (limits.max_opaque == 0 || limits.max_opaque + limits.max_pages * (proto::kPageSize + 64) > proto::kMaxPayload)
    return Error{Errc::kInvalid, "page stream: a full piece would not fit one frame"};
  auto e = Encoder::create(config);
  if (!e) return e.error();
  return std::unique_ptr<PageStreamEncoder>(new PageStreamEncoder(std::move(e).value(), migration, limits));
}

PageStreamEncoder::PageStreamEncoder(std::unique_ptr<Encoder> e, uint32_t migration, PieceLimits limits)
    : encoder_(std::move(e)), migration_(migration), limits_(limits) {
  opaque_.reserve(limits_.max_opaque);
  page_bytes_.reserve(limits_.max_pages * kPageSize);
}

bool PageStreamEncoder::full() const {
  return cuts_.size() >= limits_.max_pages || opaque_.size() >= limits_.max_opaque;
}

size_t PageStreamEncoder::add_opaque(std::span<const uint8_t> bytes) {
  size_t n = std::min(bytes.size(), limits_.max_opaque - std::min(limits_.max_opaque, opaque_.size()));
  opaque_.insert(opaque_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
  return n;
}

void PageStreamEncoder::add_page(uint64_t address, std::span<const uint8_t> page) {
  assert(!full());
  assert(page.size() == kPageSize);
  cuts_.push_back(static_cast<uint32_t>(opaque_.size()));
  addresses_.push_back(address);
  page_bytes_.insert(page_bytes_.end(), page.begin(), page.end());
}

proto::Result<void> PageStreamEncoder::take(std::vector<uint8_t>& payload) {
  assert(!empty());
  batch_.clear();
  if (!cuts_.empty()) {
    refs_.clear();
    for (size_t i = 0; i < cuts_.size(); ++i)
      refs_.push_back({addresses_[i], std::span<const uint8_t>(page_bytes_).subspan(i * kPageSize, kPageSize)});
    auto r = encoder_->encode(refs_, batch_);
    if (!r) return r.error();
  }
  proto::MigPages m;
  m.migration = migration_;
  m.stream_offset = offset_;
  m.opaque = opaque_;
  m.page_cuts = cuts_;
  m.batch = batch_;
  payload = proto::encode_payload(m);
  assert(payload.size() <= proto::kMaxPayload);
  offset_ += opaque_.size() + cuts_.size() * uint64_t{kPageSize};
  pages_ += cuts_.size();
  opaque_.clear();
  cuts_.clear();
  addresses_.clear();
  page_bytes_.clear();
  return {};
}

proto::Result<std::unique_ptr<PageStreamDecoder>> PageStreamDecoder::create(const CodecConfig& config,
                                                                            uint32_t migration) {
  auto d = Decoder::create(config);
  if (!d) return d.error();
  return std::unique_ptr<PageStreamDecoder>(new PageStreamDecoder(std::move(d).value(), migration));
}

proto::Result<void> PageStreamDecoder::decode(const proto::MigPages& piece, std::vector<uint8_t>& out) {
  if (piece.migration != migration_)
    return Error{Errc::kMalformed, "migration " + std::to_string(piece.migration) + " is not ours (" +
                                       std::to_string(migration_) + ")"};
  if (piece.stream_offset != offset_)
    return Error{Errc::kMalformed, "piece at stream offset " + std::to_string(piece.stream_offset) +
                                       ", expected " + std::to_string(offset_)};
  std::span<const DecodedRecord> pages;
  if (!piece.page_cuts.empty()) {
    auto d = decoder_->decode(piece.batch);
    if (!d) return d.error();
    pages = *d;
    // The codec has committed this batch; a count mismatch means the peer
    // is broken, and the migration ends here anyway.
    if (pages.size() != piece.page_cuts.size())
      return Error{Errc::kMalformed, "piece has " + std::to_string(piece.page_cuts.size()) +
                                         " cuts but its batch holds " + std::to_string(pages.size()) + " pages"};
  }
  size_t at = 0;
  for (size_t i = 0; i < pages.size(); ++i) {
    size_t cut = piece.page_cuts[i];
    assert(cut >= at && cut <= piece.opaque.size());  // proto checked order and bounds
    out.insert(out.end(), piece.opaque.begin() + static_cast<ptrdiff_t>(at),
               piece.opaque.begin() + static_cast<ptrdiff_t>(cut));
    out.insert(out.end(), pages[i].page.begin(), pages[i].page.end());
    at = cut;
  }
  out.insert(out.end(), piece.opaque.begin() + static_cast<ptrdiff_t>(at), piece.opaque.end());
  offset_ += piece.opaque.size() + pages.size() * uint64_t{kPageSize};
  pages_ += pages.size();
  return {};
}

}  // namespace tideway::wan::codec

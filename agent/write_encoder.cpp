#include "agent/write_encoder.h"

#include <cassert>

#include "wan/codec/cbr_scan_json.h"

namespace tideway::agent {

namespace codec = wan::codec;

proto::Result<std::unique_ptr<WriteEncoder>> WriteEncoder::create(const codec::CodecConfig& config) {
  // A whole write (up to kMaxWriteLen) must fit one batch.
  if (config.max_records < proto::kMaxWriteLen / proto::kPageSize)
    return proto::Error{proto::Errc::kInvalid, "codec: max_records must hold a whole write (256 pages)"};
  auto e = codec::Encoder::create(config);
  if (!e) return e.error();
  return std::unique_ptr<WriteEncoder>(new WriteEncoder(std::move(e).value()));
}

WriteEncoder::WriteEncoder(std::unique_ptr<codec::Encoder> e) : encoder_(std::move(e)) {
  pages_.reserve(proto::kMaxWriteLen / proto::kPageSize);
}

proto::Result<void> WriteEncoder::encode(const RetainedWrite& w, std::vector<uint8_t>& out) {
  assert(proto::repl_encodable(w.op, w.volume, w.offset, w.length));
  assert(w.data.size() == w.length);
  return encode(w.volume, w.offset, w.data, out);
}

proto::Result<void> WriteEncoder::encode(uint32_t volume, uint64_t offset, std::span<const uint8_t> data,
                                         std::vector<uint8_t>& out) {
  assert(proto::repl_encodable(proto::WriteOp::kWrite, volume, offset, static_cast<uint32_t>(data.size())));
  pages_.clear();
  for (size_t off = 0; off < data.size(); off += proto::kPageSize)
    pages_.push_back({proto::repl_page_address(volume, offset + off), data.subspan(off, proto::kPageSize)});
  // Fails only for too many pages or a short page (ruled out above), and
  // then consumes nothing: the caller may send the write raw.
  auto r = encoder_->encode(pages_, out);
  if (r) assert(out.size() <= proto::kMaxEncodedWriteLen);
  return r;
}

void WriteEncoder::reset() {
  if (encoder_->next_seq() != 0) encoder_->reset();
}

nlohmann::json WriteEncoder::status() const {
  nlohmann::json j = codec::to_json(encoder_->stats());
  const auto& s = encoder_->stats();
  j["encoded_writes"] = s.batches;
  j["raw_writes"] = raw_writes_;
  j["raw_bytes"] = raw_bytes_;
  j["discards_and_zeroes"] = other_ops_;
  j["held"] = held_;
  j["epoch"] = encoder_->epoch();
  j["bytes_saved"] = s.page_bytes > s.wire_bytes ? s.page_bytes - s.wire_bytes : 0;
  j["cpu_us_per_write"] = s.batches ? static_cast<double>(s.cpu_ns) / 1e3 / static_cast<double>(s.batches) : 0.0;
  return j;
}

}  // namespace tideway::agent

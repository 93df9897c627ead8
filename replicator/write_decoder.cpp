#include "replicator/write_decoder.h"

#include <cassert>
#include <cstring>

#include "wan/codec/batch_format.h"
#include "wan/codec/cbr_scan_json.h"

namespace tideway::replicator {

namespace codec = wan::codec;

namespace {

constexpr uint32_t kPagesPerWrite = proto::kMaxWriteLen / proto::kPageSize;
static_assert(proto::kPageSize == codec::kPageSize);

// Per-stream counters summed over the decoders a writer had.
void accumulate(codec::CodecStats& a, const codec::CodecStats& b) {
  a.batches += b.batches;
  a.records += b.records;
  a.zero_records += b.zero_records;
  a.raw_records += b.raw_records;
  a.cbr_records += b.cbr_records;
  a.delta_records += b.delta_records;
  a.mixed_records += b.mixed_records;
  a.sub_literal += b.sub_literal;
  a.sub_hit += b.sub_hit;
  a.sub_delta += b.sub_delta;
  a.sub_unchanged += b.sub_unchanged;
  a.hash_collisions += b.hash_collisions;
  a.page_bytes += b.page_bytes;
  a.wire_bytes += b.wire_bytes;
  a.literal_bytes += b.literal_bytes;
  a.zstd_chunks += b.zstd_chunks;
  a.zstd_in += b.zstd_in;
  a.zstd_out += b.zstd_out;
  a.zstd_skipped += b.zstd_skipped;
  a.zstd_not_smaller += b.zstd_not_smaller;
  a.cpu_ns += b.cpu_ns;
  a.resets += b.resets;
  a.rejected += b.rejected;
}

std::string mib(uint64_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }

}  // namespace

WriteDecoder::WriteDecoder() = default;

uint64_t WriteDecoder::memory_for(uint32_t sub_blocks, uint64_t cache_slots, uint64_t delta_slots) {
  assert(sub_blocks != 0);
  const uint64_t sub_block = proto::kPageSize / sub_blocks;
  // Delta store per page: the page, an index of <= 4 x 16 bytes per slot
  // (twice the slots, rounded up to a power of two), 17 bytes of slot data.
  constexpr uint64_t kDeltaSlotBytes = proto::kPageSize + 64 + 17;
  // Arena and literal buffer of max_records pages, maps, zstd context, out_.
  constexpr uint64_t kFixedBytes = 4ull << 20;
  return cache_slots * sub_block + delta_slots * kDeltaSlotBytes + kFixedBytes;
}

proto::Result<std::span<const uint8_t>> WriteDecoder::fail(WriteDecodeError e, std::string why) {
  last_error_ = e;
  ++failures_;
  if (e == WriteDecodeError::kOverBudget) ++over_budget_;
  last_failure_ = why;
  return proto::Error{proto::Errc::kIncompatible, std::move(why)};
}

void WriteDecoder::reset() {
  ++attaches_;
  pending_reset_ = true;
}

proto::Result<std::span<const uint8_t>> WriteDecoder::decode(const proto::ReplWrite& w, uint64_t budget) {
  assert(w.flags & proto::kWriteEncoded);
  last_error_ = WriteDecodeError::kNone;
  auto h = codec::parse_header(w.data);
  if (!h) return fail(WriteDecodeError::kBadBatch, "codec batch header: " + h.error().detail);
  const codec::CodecGeometry* geo = decoder_ ? &decoder_->geometry() : nullptr;
  const bool same = geo && geo->sub_blocks == h->sub_blocks && geo->cache_slots == h->cache_slots &&
                    geo->delta_slots == h->delta_slots;
  if (!same) {
    // New state parameters are only legitimate at the start of a stream
    // (the first batch after an ATTACH): the agent's encoder cannot change
    // them otherwise.
    if (decoder_ && !pending_reset_)
      return fail(WriteDecodeError::kBadBatch, "codec state parameters changed mid-stream");
    if (decoder_) accumulate(past_, decoder_->stats());
    decoder_.reset();  // free it before building the next
    memory_ = 0;
    const uint64_t need = memory_for(h->sub_blocks, h->cache_slots, h->delta_slots);
    if (need > budget)
      return fail(WriteDecodeError::kOverBudget,
                  "the agent's codec needs " + mib(need) + " of decoder memory at the backup (" +
                      std::to_string(h->cache_slots) + " cache slots of " +
                      std::to_string(proto::kPageSize / h->sub_blocks) + " bytes, " +
                      std::to_string(h->delta_slots) + " delta pages) and only " + mib(budget) +
                      " is left of the replicator's [codec] max_memory_mb; lower the agent's [codec] cache_mb / "
                      "delta_mb or raise max_memory_mb");
    codec::CodecConfig c;
    c.sub_blocks = h->sub_blocks;
    c.cache_bytes = uint64_t{h->cache_slots} * (proto::kPageSize / h->sub_blocks);
    c.delta_store_bytes = uint64_t{h->delta_slots} * proto::kPageSize;
    c.max_records = kPagesPerWrite;
    auto d = codec::Decoder::create(c);
    if (!d) return fail(WriteDecodeError::kBadBatch, "codec state parameters: " + d.error().detail);
    decoder_ = std::move(d).value();
    memory_ = need;
  } else if (pending_reset_) {
    decoder_->reset();  // a restarted encoder: any epoch, from seq 0
  }
  pending_reset_ = false;

  auto records = decoder_->decode(w.data);
  if (!records)
    return fail(WriteDecodeError::kBadBatch, std::string("codec batch refused (") +
                                                 codec::failure_name(decoder_->last_failure()) +
                                                 "): " + records.error().detail);
  // The batch decoded (and the decoder's state moved on); it must also be
  // exactly this write's pages, else the agent is broken.
  const uint32_t pages = w.length / proto::kPageSize;
  if (records->size() != pages)
    return fail(WriteDecodeError::kBadBatch, "codec batch holds " + std::to_string(records->size()) +
                                                 " pages, the write " + std::to_string(pages));
  out_.resize(w.length);
  for (uint32_t i = 0; i < pages; ++i) {
    const auto& r = (*records)[i];
    const uint64_t off = w.offset + uint64_t{i} * proto::kPageSize;
    if (r.address != proto::repl_page_address(w.volume, off))
      return fail(WriteDecodeError::kBadBatch, "codec batch page " + std::to_string(i) + " has address " +
                                                   std::to_string(r.address) + ", not the write's");
    assert(r.page.size() == proto::kPageSize);
    std::memcpy(out_.data() + size_t{i} * proto::kPageSize, r.page.data(), proto::kPageSize);
  }
  return std::span<const uint8_t>(out_.data(), w.length);
}

nlohmann::json WriteDecoder::status() const {
  codec::CodecStats s = past_;
  if (decoder_) accumulate(s, decoder_->stats());
  nlohmann::json j = codec::to_json(s);
  j["decoded_writes"] = s.batches;
  j["bytes_saved"] = s.page_bytes > s.wire_bytes ? s.page_bytes - s.wire_bytes : 0;
  j["cpu_us_per_write"] = s.batches ? static_cast<double>(s.cpu_ns) / 1e3 / static_cast<double>(s.batches) : 0.0;
  j["memory_bytes"] = memory_bytes();
  j["epoch"] = decoder_ ? decoder_->epoch() : 0;
  j["failures"] = failures_;
  j["over_budget"] = over_budget_;
  j["attaches"] = attaches_;
  j["last_failure"] = last_failure_;
  return j;
}

}  // namespace tideway::replicator

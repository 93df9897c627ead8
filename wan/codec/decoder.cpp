#include "wan/codec/decoder.h"

#include <xxhash.h>

#include <bit>
#include <cassert>
#include <cstring>
#include <string>

#include "wan/codec/batch_checksum.h"
#include "wan/codec/page_ops.h"
#include "wan/codec/state_digest.h"
#include "wan/codec/xor_rle.h"

namespace tideway::wan::codec {

using proto::Errc;

namespace {

alignas(64) const uint8_t kZeroPage[kPageSize] = {};

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

const char* failure_name(DecodeFailure f) {
  switch (f) {
    case DecodeFailure::kNone: return "none";
    case DecodeFailure::kCorrupt: return "corrupt";
    case DecodeFailure::kConfigMismatch: return "config mismatch";
    case DecodeFailure::kStaleEpoch: return "stale epoch";
    case DecodeFailure::kDuplicate: return "duplicate";
    case DecodeFailure::kGap: return "gap";
    case DecodeFailure::kDiverged: return "diverged";
  }
  return "unknown";
}

bool needs_reset(DecodeFailure f) {
  return f == DecodeFailure::kCorrupt || f == DecodeFailure::kGap || f == DecodeFailure::kDiverged;
}

proto::Result<std::unique_ptr<Decoder>> Decoder::create(const CodecConfig& config) {
  auto geo = make_geometry(config);
  if (!geo) return geo.error();
  return std::unique_ptr<Decoder>(new Decoder(config, *geo));
}

Decoder::Decoder(const CodecConfig& config, const CodecGeometry& geo)
    : config_(config),
      geo_(geo),
      slab_(geo.cache_slots, geo.sub_block_size),
      store_(geo.delta_slots),
      literal_(config.max_records * kPageSize),
      arena_(std::make_unique_for_overwrite<uint8_t[]>(size_t{config.max_records} * kPageSize)),
      changed_(config.max_records, 0),
      in_place_(config.max_records, 0),
      ahead_(config.max_records, 0),
      batch_map_(std::bit_ceil(size_t{config.max_records} * 2), MapEntry{0, 0, 0}) {
  map_shift_ = 64 - std::countr_zero(batch_map_.size());
  records_.reserve(config.max_records);
  pending_.reserve(size_t{config.max_records} * geo.sub_blocks);
}

void Decoder::reset() {
  slab_.reset();
  store_.reset();
  epoch_ = 0;
  next_seq_ = 0;
}

uint64_t Decoder::state_digest() const { return codec::state_digest(slab_, store_); }

proto::Result<void> Decoder::fail(DecodeFailure f, Errc code, std::string detail) {
  last_failure_ = f;
  return {code, std::move(detail)};
}

proto::Result<std::span<const DecodedRecord>> Decoder::decode(std::span<const uint8_t> batch) {
  const uint64_t cpu0 = thread_cpu_ns();
  last_failure_ = DecodeFailure::kNone;
  auto h = parse_header(batch);
  proto::Result<void> r = h ? check_header(*h) : fail(DecodeFailure::kCorrupt, h.error().code, h.error().detail);
  if (r) {
    auto lit = literal_.open(batch.subspan(kHeaderSize + h->control_len), h->literal_len);
    if (!lit) r = fail(DecodeFailure::kCorrupt, lit.error().code, lit.error().detail);
  }
  uint64_t checksum = 0;
  if (r) r = decode_records(batch.subspan(kHeaderSize, h->control_len), *h, checksum);
  if (r && checksum != h->checksum && !config_.skip_checksum_for_fuzzing)
    r = fail(DecodeFailure::kDiverged, Errc::kBadChecksum,
             "content checksum " + hex(checksum) + " differs from the encoder's " + hex(h->checksum) +
                 " (epoch " + std::to_string(h->epoch) + ", batch " + std::to_string(h->seq) +
                 "): state diverged or the batch was damaged");
  if (!r) {
    ++stats_.rejected;
    stats_.cpu_ns += thread_cpu_ns() - cpu0;
    return r.error();
  }
  commit(*h);
  stats_.cpu_ns += thread_cpu_ns() - cpu0;
  stats_.wire_bytes += batch.size();
  return std::span<const DecodedRecord>(records_);
}

proto::Result<void> Decoder::check_header(const BatchHeader& h) {
  if (h.sub_blocks != geo_.sub_blocks || h.cache_slots != geo_.cache_slots || h.delta_slots != geo_.delta_slots)
    return fail(DecodeFailure::kConfigMismatch, Errc::kIncompatible,
                "batch encoded with " + std::to_string(h.sub_blocks) + " sub-blocks, " +
                    std::to_string(h.cache_slots) + " cache slots, " + std::to_string(h.delta_slots) +
                    " delta slots; this decoder has " + std::to_string(geo_.sub_blocks) + ", " +
                    std::to_string(geo_.cache_slots) + ", " + std::to_string(geo_.delta_slots));
  if (h.record_count > config_.max_records)
    return fail(DecodeFailure::kCorrupt, Errc::kTooLarge,
                std::to_string(h.record_count) + " records exceed this decoder's limit of " +
                    std::to_string(config_.max_records));
  const std::string which = "batch " + std::to_string(h.seq) + " of epoch " + std::to_string(h.epoch);
  if (epoch_ == 0 || h.epoch > epoch_) {
    if (h.seq != 0)
      return fail(DecodeFailure::kGap, Errc::kIncompatible, which + " arrived without the epoch's first batch");
    fresh_ = true;
  } else if (h.epoch < epoch_) {
    return fail(DecodeFailure::kStaleEpoch, Errc::kIncompatible,
                which + " is older than the current epoch " + std::to_string(epoch_));
  } else {
    fresh_ = false;
    if (h.seq < next_seq_) return fail(DecodeFailure::kDuplicate, Errc::kIncompatible, which + " was decoded already");
    if (h.seq > next_seq_)
      return fail(DecodeFailure::kGap, Errc::kIncompatible,
                  which + " arrived, expected batch " + std::to_string(next_seq_) + ": batches are missing");
  }
  const uint64_t inserts = fresh_ ? 0 : slab_.inserts();
  if (h.cache_inserts != inserts)
    return fail(DecodeFailure::kDiverged, Errc::kIncompatible,
                which + ": the encoder has made " + std::to_string(h.cache_inserts) + " cache inserts, this decoder " +
                    std::to_string(inserts) + ": caches diverged");
  head0_ = fresh_ ? 0 : slab_.head();
  filled0_ = fresh_ ? 0 : slab_.filled();
  return {};
}

// The bytes slot `slot` holds at this point of the batch: the latest insert
// of this batch that landed there, else the committed slot, else nullptr.
const uint8_t* Decoder::cache_source(uint32_t slot) const {
  const uint64_t c = slab_.slots();
  if (slot >= c) return nullptr;
  const uint64_t n = pending_.size();
  const uint64_t d = (slot + c - head0_) % c;
  if (d < n) return pending_[d + c * ((n - 1 - d) / c)];
  return slot < filled0_ ? slab_.at(slot) : nullptr;
}

// The last version of `address` at this point of the batch, or nullptr;
// `committed` says it is the committed store's page (not this batch's).
const uint8_t* Decoder::base_of(uint64_t address, bool& committed) const {
  committed = false;
  if (!store_.enabled()) return nullptr;
  const size_t mask = batch_map_.size() - 1;
  // Terminates: at most max_records of the 2 * max_records entries are current.
  for (size_t i = map_slot(address);; i = (i + 1) & mask) {
    const MapEntry& e = batch_map_[i];
    if (e.generation != generation_) break;
    if (e.address == address) return records_[e.record].zero ? nullptr : records_[e.record].page.data();
  }
  if (fresh_) return nullptr;
  const uint8_t* p = store_.find(address);
  committed = p != nullptr;
  return p;
}

void Decoder::batch_map_set(uint64_t address, uint32_t record) {
  const size_t mask = batch_map_.size() - 1;
  for (size_t i = map_slot(address);; i = (i + 1) & mask) {
    MapEntry& e = batch_map_[i];
    if (e.generation != generation_ || e.address == address) {
      e = MapEntry{address, record, generation_};
      return;
    }
  }
}

proto::Result<void> Decoder::decode_records(std::span<const uint8_t> control, const BatchHeader& h,
                                            uint64_t& checksum) {
  const uint32_t n = geo_.sub_blocks;
  const uint32_t s = geo_.sub_block_size;
  const uint8_t* p = control.data();
  const uint8_t* const end = p + control.size();
  records_.clear();
  pending_.clear();
  arena_used_ = 0;
  batch_stats_ = CodecStats{};
  if (++generation_ == 0) {  // wrapped: old entries could look current
    for (auto& e : batch_map_) e.generation = 0;
    generation_ = 1;
  }
  uint64_t next_address = 0;
  uint64_t acc = checksum_start(h.epoch, h.seq);
  const bool prefetch = store_.enabled() && !fresh_;
  if (!fresh_ && (prefetch || slab_.enabled())) prescan(control, h.record_count);
  for (uint32_t i = 0; i < h.record_count; ++i) {
    if (prefetch) {
      // Stored versions are cold (streamed out long ago): start loading
      // the next record's while this one is decoded.
      if (i + 2 < h.record_count) store_.prefetch_index(ahead_[i + 2]);
      if (i + 1 < h.record_count) store_.prefetch_page(ahead_[i + 1]);
    }
    if (p == end) return fail(DecodeFailure::kCorrupt, Errc::kTruncated, "record section ends inside record " + std::to_string(i));
    const uint8_t kind = *p++;
    if ((kind & ~kRecordKnownBits) != 0 || (kind & kRecordTypeMask) > static_cast<uint8_t>(RecordType::kBlocks))
      return fail(DecodeFailure::kCorrupt, Errc::kMalformed,
                  "record " + std::to_string(i) + ": unknown kind byte " + hex(kind));
    uint64_t address = next_address;
    if (!(kind & kRecordSequential)) {
      if (end - p < 8) return fail(DecodeFailure::kCorrupt, Errc::kTruncated, "record section ends inside record " + std::to_string(i));
      address = load_le64(p);
      p += 8;
    }
    next_address = address + kPageSize;
    changed_[i] = static_cast<uint8_t>((1u << n) - 1);
    in_place_[i] = 0;
    const auto type = static_cast<RecordType>(kind & kRecordTypeMask);
    if (type == RecordType::kZero) {
      records_.push_back(DecodedRecord{address, true, std::span<const uint8_t>(kZeroPage, kPageSize)});
      acc = checksum_zero(acc, address);
      ++batch_stats_.zero_records;
      batch_map_set(address, i);
      continue;
    }
    const uint8_t* page = nullptr;
    if (type == RecordType::kRaw) {
      page = literal_.next(kPageSize);  // a view when the page lies in one chunk
      if (page == nullptr) {
        if (!literal_.has(kPageSize))
          return fail(DecodeFailure::kCorrupt, Errc::kMalformed,
                      "record " + std::to_string(i) + ": literal section too short for a raw page");
        uint8_t* dst = arena_.get() + size_t{arena_used_++} * kPageSize;
        for (uint32_t j = 0; j < n; ++j) std::memcpy(dst + size_t{j} * s, literal_.next(s), s);
        page = dst;
      }
      if (slab_.enabled())
        for (uint32_t j = 0; j < n; ++j) pending_.push_back(page + size_t{j} * s);
      ++batch_stats_.raw_records;
    } else {
      uint8_t* dst = arena_.get() + size_t{arena_used_++} * kPageSize;
      auto r = decode_blocks(p, end, i, address, dst);
      if (!r) return r;
      page = dst;
    }
    uint64_t hashes[kMaxSubBlocks];
    for (uint32_t j = 0; j < n; ++j) hashes[j] = XXH3_64bits(page + size_t{j} * s, s);
    acc = checksum_page(acc, address, hashes, n);
    records_.push_back(DecodedRecord{address, false, std::span<const uint8_t>(page, kPageSize)});
    batch_map_set(address, i);
  }
  if (p != end)
    return fail(DecodeFailure::kCorrupt, Errc::kTrailingBytes,
                std::to_string(end - p) + " bytes after the last record in the record section");
  if (!literal_.done())
    return fail(DecodeFailure::kCorrupt, Errc::kMalformed, "literal section has bytes no record uses");
  checksum = acc;
  return {};
}

proto::Result<void> Decoder::decode_blocks(const uint8_t*& p, const uint8_t* end, size_t record, uint64_t address,
                                           uint8_t* page) {
  const uint32_t n = geo_.sub_blocks;
  const uint32_t s = geo_.sub_block_size;
  // Built only on failure: no allocation per record.
  auto where = [&] { return "record " + std::to_string(record) + " (address " + hex(address) + ")"; };
  const size_t ncode = code_bytes(n);
  if (static_cast<size_t>(end - p) < ncode)
    return fail(DecodeFailure::kCorrupt, Errc::kTruncated, where() + ": code bytes truncated");
  const uint8_t* codes = p;
  p += ncode;
  if (n < 4 && (codes[0] >> (2 * n)) != 0)
    return fail(DecodeFailure::kCorrupt, Errc::kMalformed, where() + ": code bits set beyond the sub-blocks");
  auto code_of = [&](uint32_t j) { return static_cast<SubCode>((codes[j / 4] >> (2 * (j % 4))) & 3); };
  const uint8_t* base = nullptr;
  bool need_base = false;
  for (uint32_t j = 0; j < n; ++j)
    need_base |= code_of(j) == SubCode::kDelta || code_of(j) == SubCode::kUnchanged;
  bool committed = false;
  if (need_base && (base = base_of(address, committed)) == nullptr)
    return fail(DecodeFailure::kCorrupt, Errc::kMalformed, where() + ": delta against an address with no stored version");
  uint32_t count[4] = {};
  uint8_t changed = 0;
  for (uint32_t j = 0; j < n; ++j) {
    uint8_t* dst = page + size_t{j} * s;
    const SubCode code = code_of(j);
    ++count[static_cast<uint8_t>(code)];
    if (code != SubCode::kUnchanged) changed = static_cast<uint8_t>(changed | (1u << j));
    switch (code) {
      case SubCode::kLiteral: {
        const uint8_t* src = literal_.next(s);
        if (src == nullptr)
          return fail(DecodeFailure::kCorrupt, Errc::kMalformed, where() + ": literal section too short");
        std::memcpy(dst, src, s);
        if (slab_.enabled()) pending_.push_back(src);
        break;
      }
      case SubCode::kHit: {
        if (end - p < 4) return fail(DecodeFailure::kCorrupt, Errc::kTruncated, where() + ": cache index truncated");
        const uint32_t slot = load_le32(p);
        p += 4;
        const uint8_t* src = cache_source(slot);
        if (src == nullptr)
          return fail(DecodeFailure::kCorrupt, Errc::kMalformed,
                      where() + ": cache index " + std::to_string(slot) + " out of range (" +
                          std::to_string(slab_.slots()) + " slots, " +
                          std::to_string(std::min<uint64_t>(filled0_ + pending_.size(), slab_.slots())) +
                          " filled)");
        std::memcpy(dst, src, s);
        break;
      }
      case SubCode::kDelta: {
        if (end - p < 2) return fail(DecodeFailure::kCorrupt, Errc::kTruncated, where() + ": delta length truncated");
        const uint16_t len = load_le16(p);
        p += 2;
        if (len > end - p) return fail(DecodeFailure::kCorrupt, Errc::kTruncated, where() + ": delta runs truncated");
        if (len == 0 || len >= s)
          return fail(DecodeFailure::kCorrupt, Errc::kMalformed,
                      where() + ": delta of " + std::to_string(len) + " bytes for a " + std::to_string(s) +
                          "-byte sub-block");
        std::memcpy(dst, base + size_t{j} * s, s);
        if (!xor_rle_apply(p, len, dst, s))
          return fail(DecodeFailure::kCorrupt, Errc::kMalformed, where() + ": malformed delta runs");
        p += len;
        break;
      }
      case SubCode::kUnchanged:
        std::memcpy(dst, base + size_t{j} * s, s);
        break;
    }
  }
  changed_[record] = changed;
  in_place_[record] = committed;
  count_blocks_record(batch_stats_, count, n);
  return {};
}

// Walks the record section for addresses and cache slots only, without
// checking anything the real pass checks (it stops at the first
// inconsistency), so that pass finds the cold state it reads in the cache:
// each record's stored version and the slots of cache hits.
void Decoder::prescan(std::span<const uint8_t> control, uint32_t count) {
  const uint8_t* const c = control.data();
  const size_t size = control.size();
  const uint32_t n = geo_.sub_blocks;
  size_t at = 0;  // offsets, not pointers: a bad length must not form a wild pointer
  uint64_t next_address = 0;
  uint32_t i = 0;
  for (; i < count && at < size; ++i) {
    const uint8_t kind = c[at++];
    uint64_t address = next_address;
    if (!(kind & kRecordSequential)) {
      if (size - at < 8) break;
      address = load_le64(c + at);
      at += 8;
    }
    ahead_[i] = address;
    next_address = address + kPageSize;
    if ((kind & kRecordTypeMask) != static_cast<uint8_t>(RecordType::kBlocks)) continue;
    if (size - at < code_bytes(n)) break;
    const uint8_t* codes = c + at;
    at += code_bytes(n);
    for (uint32_t j = 0; j < n && at <= size; ++j) {
      const auto code = static_cast<SubCode>((codes[j / 4] >> (2 * (j % 4))) & 3);
      if (code == SubCode::kHit) {
        // Hits on committed slots read cold memory: start loading them now
        // (a batch's hits are a small fraction of its pages, so they stay
        // cached until used).
        if (size - at >= 4) {
          const uint32_t slot = load_le32(c + at);
          if (slot < filled0_)
            for (uint32_t off = 0; off < geo_.sub_block_size; off += 64) __builtin_prefetch(slab_.at(slot) + off);
        }
        at += 4;
      } else if (code == SubCode::kDelta) {
        if (size - at < 2) {
          at = size;
          break;
        }
        at += 2 + size_t{load_le16(c + at)};
      }
    }
  }
  for (; i < count; ++i) ahead_[i] = 0;
}

// Applies the batch's inserts in the order the encoder made them.
void Decoder::commit(const BatchHeader& h) {
  if (fresh_) {
    slab_.reset();
    store_.reset();
    epoch_ = h.epoch;
    ++stats_.resets;
  }
  assert(slab_.head() == head0_);
  if (slab_.enabled()) {
    const uint64_t c = slab_.slots();
    const uint64_t n = pending_.size();
    const uint32_t s = geo_.sub_block_size;
    // Only the last `c` inserts survive a batch that wraps the whole ring.
    for (uint64_t k = n > c ? n - c : 0; k < n; ++k)
      copy_streaming(slab_.slot_ptr(static_cast<uint32_t>((head0_ + k) % c)), pending_[k], s);
    slab_.advance(n);
  }
  if (store_.enabled()) {
    const uint32_t s = geo_.sub_block_size;
    for (size_t i = 0; i < records_.size(); ++i) {
      const DecodedRecord& r = records_[i];
      uint8_t* stored = nullptr;
      if (r.zero) {
        store_.erase(r.address);
      } else if (changed_[i] == 0) {
        // Identical to the stored version: nothing to write.
      } else if (in_place_[i] && (stored = store_.find_mut(r.address)) != nullptr) {
        // Still the page this record was decoded against (only a record with
        // the same address could have changed it, and then the base would
        // have come from this batch): write the changed sub-blocks only, as
        // the encoder does.
        for (uint32_t j = 0; j < geo_.sub_blocks; ++j)
          if (changed_[i] & (1u << j)) copy_streaming(stored + size_t{j} * s, r.page.data() + size_t{j} * s, s);
      } else {
        store_.put(r.address, r.page.data());
      }
    }
  }
  store_fence();  // the state's streaming stores, before another thread may use it
  next_seq_ = h.seq + 1;
  const CodecStats& b = batch_stats_;
  stats_.batches += 1;
  stats_.records += records_.size();
  stats_.zero_records += b.zero_records;
  stats_.raw_records += b.raw_records;
  stats_.cbr_records += b.cbr_records;
  stats_.delta_records += b.delta_records;
  stats_.mixed_records += b.mixed_records;
  stats_.sub_literal += b.sub_literal;
  stats_.sub_hit += b.sub_hit;
  stats_.sub_delta += b.sub_delta;
  stats_.sub_unchanged += b.sub_unchanged;
  stats_.page_bytes += records_.size() * kPageSize;
  stats_.literal_bytes += h.literal_len;
}

}  // namespace tideway::wan::codec

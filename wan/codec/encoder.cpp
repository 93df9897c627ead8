#include "wan/codec/encoder.h"

#include <xxhash.h>

#include <cassert>
#include <cstring>
#include <string>

#include "wan/codec/batch_checksum.h"
#include "wan/codec/batch_format.h"
#include "wan/codec/page_ops.h"
#include "wan/codec/state_digest.h"
#include "wan/codec/xor_rle.h"

namespace tideway::wan::codec {

using proto::Errc;

namespace {

uint64_t xxh3(const void* p, size_t n) { return XXH3_64bits(p, n); }

// Worst case of one record in the record section, plus room for a
// speculative delta (written before the encoder knows it will keep it).
constexpr size_t kMaxRecordControl = 1 + 8 + 2 + kPageSize + kRleSlack;

}  // namespace

proto::Result<std::unique_ptr<Encoder>> Encoder::create(const CodecConfig& config) {
  auto geo = make_geometry(config);
  if (!geo) return geo.error();
  return std::unique_ptr<Encoder>(new Encoder(config, *geo));
}

Encoder::Encoder(const CodecConfig& config, const CodecGeometry& geo)
    : config_(config),
      geo_(geo),
      xxh3_lookup_(config.hash == nullptr),
      slab_(geo.cache_slots, geo.sub_block_size),
      index_(geo.cache_slots),
      store_(geo.delta_slots),
      literal_(geo.sub_block_size, config.max_records * geo.sub_blocks, config.zstd_level,
               config.zstd_entropy_check),
      control_(std::make_unique_for_overwrite<uint8_t[]>(config.max_records * kMaxRecordControl)),
      epoch_(config.initial_epoch) {
  if (config_.hash == nullptr) config_.hash = xxh3;
}

void Encoder::reset() {
  ++epoch_;
  seq_ = 0;
  slab_.reset();
  index_.reset();
  store_.reset();
  ++stats_.resets;
}

proto::Result<void> Encoder::reset(uint64_t epoch) {
  if (epoch <= epoch_)
    return {Errc::kInvalid, "new epoch " + std::to_string(epoch) + " is not above the current " +
                                std::to_string(epoch_)};
  reset();
  epoch_ = epoch;
  return {};
}

uint64_t Encoder::state_digest() const { return codec::state_digest(slab_, store_); }

uint64_t Encoder::sub_hash(const uint8_t* sub) const { return config_.hash(sub, geo_.sub_block_size); }

// A slot whose bytes equal `sub`, or -1. A hash match with other bytes is a
// collision: counted and treated as a miss (the sub-block goes literal).
int64_t Encoder::cache_find(uint64_t h, const uint8_t* sub) {
  const int64_t slot = index_.find(h);
  if (slot < 0) return -1;
  if (std::memcmp(slab_.at(static_cast<uint32_t>(slot)), sub, geo_.sub_block_size) == 0) return slot;
  ++stats_.hash_collisions;
  return -1;
}

// FIFO insert at the head slot; the decoder makes the same insert when it
// meets this literal sub-block.
void Encoder::cache_insert(uint64_t h, const uint8_t* sub) {
  const uint32_t slot = slab_.head();
  if (slab_.inserts() >= slab_.slots()) index_.erase_slot(slot);
  copy_streaming(slab_.slot_ptr(slot), sub, geo_.sub_block_size);
  index_.insert(h, slot);
  slab_.advance(1);
}

proto::Result<void> Encoder::encode(std::span<const PageRef> pages, std::vector<uint8_t>& out) {
  if (pages.size() > config_.max_records)
    return {Errc::kInvalid, std::to_string(pages.size()) + " pages exceed the batch limit of " +
                                std::to_string(config_.max_records)};
  for (const auto& p : pages)
    if (p.data.size() != kPageSize)
      return {Errc::kInvalid, "page at address " + std::to_string(p.address) + " has " +
                                  std::to_string(p.data.size()) + " bytes, not " + std::to_string(kPageSize)};
  const uint64_t cpu0 = thread_cpu_ns();
  BatchHeader h;
  h.sub_blocks = static_cast<uint8_t>(geo_.sub_blocks);
  h.cache_slots = geo_.cache_slots;
  h.delta_slots = geo_.delta_slots;
  h.epoch = epoch_;
  h.seq = seq_;
  h.cache_inserts = slab_.inserts();
  h.record_count = static_cast<uint32_t>(pages.size());

  control_len_ = 0;
  literal_.clear();
  next_address_ = 0;
  checksum_ = checksum_start(epoch_, seq_);
  for (size_t i = 0; i < pages.size(); ++i) {
    // The last versions are cold (streamed out long ago): start loading the
    // next page's while this one is encoded.
    if (i + 2 < pages.size()) store_.prefetch_index(pages[i + 2].address);
    if (i + 1 < pages.size()) store_.prefetch_page(pages[i + 1].address);
    encode_page(pages[i].address, pages[i].data.data());
  }
  assert(control_len_ <= pages.size() * kMaxRecordControl);

  h.control_len = static_cast<uint32_t>(control_len_);
  h.literal_len = literal_.bytes();
  h.checksum = checksum_;
  uint8_t head[kHeaderSize];
  write_header(h, head);
  out.clear();
  out.reserve(max_batch_bytes(static_cast<uint32_t>(pages.size())));
  // Appends only (no resize): libFuzzer's runtime carries an uninstrumented
  // vector<uint8_t>::resize that trips the fuzz build's container checks.
  out.insert(out.end(), head, head + kHeaderSize);
  out.insert(out.end(), control_.get(), control_.get() + control_len_);
  literal_.write(out, stats_);
  literal_.clear();
  store_fence();  // the state's streaming stores, before another thread may use it
  assert(out.size() <= max_batch_bytes(static_cast<uint32_t>(pages.size())));

  ++seq_;
  ++stats_.batches;
  stats_.records += pages.size();
  stats_.page_bytes += pages.size() * kPageSize;
  stats_.wire_bytes += out.size();
  stats_.cpu_ns += thread_cpu_ns() - cpu0;
  return {};
}

void Encoder::encode_page(uint64_t address, const uint8_t* page) {
  const uint32_t n = geo_.sub_blocks;
  const uint32_t s = geo_.sub_block_size;
  uint8_t* const ctl = control_.get();
  uint8_t& kind = ctl[control_len_++];
  kind = 0;
  if (address == next_address_) {
    kind |= kRecordSequential;
  } else {
    store_le64(ctl + control_len_, address);
    control_len_ += 8;
  }
  next_address_ = address + kPageSize;

  if (is_zero(page, kPageSize)) {
    kind |= static_cast<uint8_t>(RecordType::kZero);
    store_.erase(address);
    checksum_ = checksum_zero(checksum_, address);
    ++stats_.zero_records;
    return;
  }

  uint8_t* const base = store_.find_mut(address);
  const size_t codes_at = control_len_;
  const size_t ncode = code_bytes(n);
  std::memset(ctl + codes_at, 0, ncode);
  control_len_ += ncode;
  uint64_t hashes[kMaxSubBlocks];
  // A page sent for the first time needs every lookup: hash all sub-blocks
  // first and prefetch their index entries, so the cache misses overlap.
  uint64_t lookup[kMaxSubBlocks];
  const bool prehashed = base == nullptr && slab_.enabled();
  if (prehashed) {
    for (uint32_t j = 0; j < n; ++j) {
      lookup[j] = sub_hash(page + size_t{j} * s);
      index_.prefetch(lookup[j]);
    }
    // Likely hits: start loading the slots their bytes are compared with.
    for (uint32_t j = 0; j < n; ++j) {
      const int64_t slot = index_.find(lookup[j]);
      if (slot >= 0 && static_cast<uint32_t>(slot) < slab_.filled())
        for (uint32_t off = 0; off < s; off += 64) __builtin_prefetch(slab_.at(static_cast<uint32_t>(slot)) + off);
    }
  }
  uint32_t count[4] = {};
  SubCode codes[kMaxSubBlocks];
  for (uint32_t j = 0; j < n; ++j) {
    const uint8_t* sub = page + size_t{j} * s;
    uint8_t* at = ctl + control_len_;
    SubCode code = SubCode::kLiteral;
    size_t runs = kNoDelta;
    if (base != nullptr) {
      // Speculatively after the u16 length; overwritten if not kept.
      runs = xor_rle_encode(sub, base + size_t{j} * s, s, at + 2, s - 3);
      if (runs == 0) {
        code = SubCode::kUnchanged;
      } else if (runs != kNoDelta && runs + 2 <= s / 16) {
        code = SubCode::kDelta;  // small edit: a lookup would cost more CPU than it could save
      }
    }
    bool hashed = false;
    uint64_t h = 0;
    int64_t slot = -1;
    if (code == SubCode::kLiteral && slab_.enabled()) {
      h = prehashed ? lookup[j] : sub_hash(sub);
      hashed = true;
      slot = cache_find(h, sub);
      // A hit costs 4 bytes; a delta at least 5 (length + one run).
      if (slot >= 0) code = SubCode::kHit;
    }
    if (code == SubCode::kLiteral && runs != kNoDelta) code = SubCode::kDelta;
    switch (code) {
      case SubCode::kHit:
        store_le32(at, static_cast<uint32_t>(slot));
        control_len_ += 4;
        break;
      case SubCode::kDelta:
        assert(runs + 2 < s);
        store_le16(at, static_cast<uint16_t>(runs));
        control_len_ += 2 + runs;
        break;
      case SubCode::kUnchanged:
        break;
      case SubCode::kLiteral:
        literal_.add(sub);
        if (slab_.enabled()) cache_insert(h, sub);
        break;
    }
    ctl[codes_at + j / 4] |= static_cast<uint8_t>(static_cast<uint8_t>(code) << (2 * (j % 4)));
    codes[j] = code;
    ++count[static_cast<uint8_t>(code)];
    hashes[j] = (hashed && xxh3_lookup_) ? h : XXH3_64bits(sub, s);
  }
  checksum_ = checksum_page(checksum_, address, hashes, n);

  if (count[static_cast<uint8_t>(SubCode::kLiteral)] == n) {
    // All literal: a raw record, no code bytes (nothing followed them).
    control_len_ = codes_at;
    kind |= static_cast<uint8_t>(RecordType::kRaw);
    ++stats_.raw_records;
  } else {
    kind |= static_cast<uint8_t>(RecordType::kBlocks);
    count_blocks_record(stats_, count, n);
  }
  // The new version becomes the stored one: patched in place when the
  // address is stored (only changed sub-blocks are written), else put.
  if (base == nullptr) {
    store_.put(address, page);
  } else {
    for (uint32_t j = 0; j < n; ++j)
      if (codes[j] != SubCode::kUnchanged) copy_streaming(base + size_t{j} * s, page + size_t{j} * s, s);
  }
}

}  // namespace tideway::wan::codec

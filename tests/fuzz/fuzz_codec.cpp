// fuzz_codec: the WAN codec's decoder on hostile input, and a round-trip
// oracle for the encoder/decoder pair. The first byte picks the mode:
//   0  the rest is one batch for a fresh decoder
//   1  the rest is one batch for a decoder warmed by kWarmBatches good
//      batches; afterwards the good batch that was due must still decode
//   2  the rest is a recipe of pages (zero, patterns, copies, edits, pool
//      sub-blocks, address jumps, batch ends) that is encoded and decoded
//      with a configuration picked by the next byte; pages must come back
//      byte-exact and both ends must end with equal state
//   3  the rest is up to 8 batches (u16 length-prefixed) for one decoder
//      that skips the content checksum, so mutated batches reach the
//      commit and later batches meet odd state
// Oracles for every decode: an error carries a reason and a failure kind
// and leaves the state (digest, epoch, next batch) unchanged; a success
// returns pages of kPageSize bytes, zero pages all zero.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/fuzz/codec_fuzz_samples.h"

using namespace tideway::wan::codec;
using fuzz::Page;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_codec oracle violated: %s\n", what);
  std::abort();
}
#define CHECK(c) \
  do {           \
    if (!(c)) fail(#c); \
  } while (0)

std::unique_ptr<Decoder> make_decoder(const CodecConfig& c) {
  auto d = Decoder::create(c);
  CHECK(d.ok());
  return std::move(*d);
}

// Decodes with the oracles above; returns whether it succeeded.
bool checked_decode(Decoder& d, std::span<const uint8_t> batch) {
  const uint64_t digest = d.state_digest();
  const uint64_t epoch = d.epoch();
  const uint64_t seq = d.next_seq();
  auto r = d.decode(batch);
  if (!r.ok()) {
    CHECK(!r.error().detail.empty());
    CHECK(d.last_failure() != DecodeFailure::kNone);
    CHECK(d.state_digest() == digest);
    CHECK(d.epoch() == epoch && d.next_seq() == seq);
    return false;
  }
  CHECK(d.last_failure() == DecodeFailure::kNone);
  for (const auto& rec : *r) {
    CHECK(rec.page.size() == kPageSize);
    if (rec.zero)
      for (size_t i = 0; i < kPageSize; i += 512) CHECK(rec.page[i] == 0);
  }
  CHECK(d.epoch() >= 1);
  return true;
}

// Decoders and encoders live across executions (creating them costs more
// than a run); reset() returns them to exactly the fresh state.
Decoder& fresh_decoder() {
  static auto d = make_decoder(fuzz::fuzz_config());
  d->reset();
  return *d;
}

void fresh_batch(std::span<const uint8_t> in) { checked_decode(fresh_decoder(), in); }

// The warm-up batches, the batch due after them, and the state digest the
// decoder must reach after decoding all of them.
struct Warm {
  std::vector<std::vector<uint8_t>> batches;
  std::vector<uint8_t> due;
  uint64_t digest = 0;
  Warm() {
    auto e = std::move(*Encoder::create(fuzz::fuzz_config()));
    for (int k = 0; k < fuzz::kWarmBatches; ++k) batches.push_back(fuzz::encode_warm(*e, k));
    due = fuzz::encode_warm(*e, fuzz::kWarmBatches);
    digest = e->state_digest();
  }
};

void warmed_batch(std::span<const uint8_t> in) {
  static const Warm warm;
  Decoder& d = fresh_decoder();
  for (const auto& b : warm.batches) CHECK(d.decode(b).ok());
  if (checked_decode(d, in)) return;
  // Bad input changed nothing: the batch that was due decodes, and the
  // two ends agree.
  CHECK(d.decode(warm.due).ok());
  CHECK(d.state_digest() == warm.digest);
}

// Mode 2: pages from a recipe, encoded and decoded.
class Recipe {
 public:
  explicit Recipe(std::span<const uint8_t> in) : in_(in) {}
  bool more() const { return pos_ < in_.size(); }
  uint8_t byte() { return pos_ < in_.size() ? in_[pos_++] : 0; }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

uint64_t constant_hash(const void*, size_t) { return 7; }

void round_trip(std::span<const uint8_t> in) {
  Recipe r(in);
  const uint8_t cfg = r.byte();
  CodecConfig c = fuzz::fuzz_config();
  c.sub_blocks = 1u << (cfg % 4);
  const uint32_t sub = kPageSize / c.sub_blocks;
  static constexpr uint32_t kSlots[] = {1, 3, 16, 256};
  c.cache_bytes = (cfg & 0x20) ? 0 : uint64_t{kSlots[(cfg >> 2) % 4]} * sub;
  c.delta_store_bytes = (cfg & 0x40) ? 0 : ((cfg & 0x10) ? 1 : 12) * uint64_t{kPageSize};
  c.zstd_level = (cfg & 0x80) ? 0 : 1;
  c.max_records = 32;
  CodecConfig ec = c;
  if (cfg & 0x08) ec.hash = constant_hash;  // every lookup collides (the decoder needs no hash)
  // One pair per configuration byte, reset for each execution (a new
  // epoch at the encoder; the reset decoder accepts any epoch's start).
  static std::unique_ptr<Encoder> encoders[256];
  static std::unique_ptr<Decoder> decoders[256];
  if (!encoders[cfg]) {
    encoders[cfg] = std::move(*Encoder::create(ec));
    decoders[cfg] = make_decoder(c);
  }
  Encoder* e = encoders[cfg].get();
  Decoder* d = decoders[cfg].get();
  e->reset();
  d->reset();

  std::vector<Page> pages;      // this batch
  std::vector<uint64_t> addrs;
  std::vector<Page> history;    // every page so far, for copies
  std::vector<std::vector<uint8_t>> pool;
  for (int i = 0; i < 4; ++i) pool.emplace_back(sub, static_cast<uint8_t>(i * 37));
  uint64_t addr = 0;
  std::vector<uint8_t> wire;
  auto flush = [&] {
    std::vector<PageRef> refs;
    for (size_t i = 0; i < pages.size(); ++i) refs.push_back(PageRef{addrs[i], pages[i]});
    CHECK(e->encode(refs, wire).ok());
    auto got = d->decode(wire);
    if (!got.ok()) {
      std::fprintf(stderr, "decode failed: %s\n", got.error().detail.c_str());
      fail("a batch the encoder made did not decode");
    }
    CHECK(got->size() == pages.size());
    for (size_t i = 0; i < pages.size(); ++i) {
      CHECK((*got)[i].address == addrs[i]);
      CHECK(std::memcmp((*got)[i].page.data(), pages[i].data(), kPageSize) == 0);
    }
    pages.clear();
    addrs.clear();
  };
  int budget = 256;  // pages per input, to keep executions fast
  while (r.more() && budget-- > 0) {
    const uint8_t op = r.byte();
    Page p(kPageSize, 0);
    switch (op % 8) {
      case 0: break;  // zero
      case 1: std::memset(p.data(), r.byte(), kPageSize); break;
      case 2:
        if (!history.empty()) p = history[r.byte() % history.size()];
        break;
      case 3: {  // the previous page with edits: deltas
        if (!history.empty()) p = history.back();
        const int edits = r.byte() % 8;
        for (int k = 0; k < edits; ++k) p[(r.byte() * 16 + r.byte()) % kPageSize] ^= static_cast<uint8_t>(r.byte() | 1);
        break;
      }
      case 4:  // sub-blocks from the pool, the pool refreshed sometimes
        for (size_t off = 0; off < kPageSize; off += sub) {
          const uint8_t k = r.byte();
          if (k & 0x80) std::memset(pool[k % 4].data(), r.byte(), sub / 2);
          std::memcpy(&p[off], pool[k % 4].data(), sub);
        }
        break;
      case 5: {  // 16 input bytes tiled with variation
        uint8_t tile[16];
        for (auto& t : tile) t = r.byte();
        for (size_t b = 0; b < kPageSize; ++b) p[b] = static_cast<uint8_t>(tile[b % 16] ^ (b >> 4));
        break;
      }
      case 6:
        if (op & 0x80) {  // the sender resets: a new epoch
          if (!pages.empty()) flush();
          e->reset();
        } else {
          addr = uint64_t{r.byte()} * kPageSize;  // jump (and re-send) to a small address
        }
        continue;
      default:
        if (!pages.empty()) flush();
        continue;
    }
    history.push_back(p);
    pages.push_back(std::move(p));
    addrs.push_back(addr);
    addr += kPageSize;
    if (pages.size() == c.max_records) flush();
  }
  if (!pages.empty()) flush();
  // Both ends hold the same state (checked once: it hashes the state),
  // unless the sender reset after the last batch the decoder saw.
  if (d->epoch() == e->epoch()) CHECK(d->state_digest() == e->state_digest());
}

void batch_sequence(std::span<const uint8_t> in) {
  static auto d = [] {
    CodecConfig c = fuzz::fuzz_config();
    c.skip_checksum_for_fuzzing = true;
    return make_decoder(c);
  }();
  d->reset();
  size_t pos = 0;
  for (int k = 0; k < 8 && pos + 2 <= in.size(); ++k) {
    const size_t len = std::min<size_t>(in[pos] | (in[pos + 1] << 8), in.size() - pos - 2);
    checked_decode(*d, in.subspan(pos + 2, len));
    pos += 2 + len;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> rest(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0: fresh_batch(rest); break;
    case 1: warmed_batch(rest); break;
    case 2: round_trip(rest); break;
    default: batch_sequence(rest); break;
  }
  return 0;
}

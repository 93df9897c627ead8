// Throughput of the WAN codec per core, encode and decode, on the four data
// sets of issue 4, with zstd level 1 alone on the same bytes side by side:
//   zero    all-zero pages
//   dup13   random pages in which 13% of the 1 KiB sub-blocks repeat an
//           earlier sub-block (the paper's kernel-compile redundancy)
//   edit24  pages re-sent with 24 bytes changed each (3 x 8 bytes)
//   random  random pages (nothing to find: the codec must fall back cheaply)
// A pass is 8192 pages (32 MiB) in batches of 256 with the default config
// (4 sub-blocks, 64 MiB cache, 64 MiB delta store, zstd 1). Bytes/s are
// page bytes per CPU second; "ratio" is page bytes / wire bytes.
// Run: build-codec-rel/tests/bench/codec_bench --benchmark_repetitions=3
#include <benchmark/benchmark.h>
#include <zstd.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "wan/codec/decoder.h"
#include "wan/codec/encoder.h"

namespace {

using namespace tideway::wan::codec;

constexpr size_t kPages = 8192;
constexpr size_t kBatch = 256;
constexpr size_t kSub = 1024;

enum class Data { kZero, kDup13, kEdit24, kRandom };

struct Dataset {
  std::vector<uint8_t> bytes;
  std::vector<uint32_t> edit_at;  // edit24: three offsets per page
  std::vector<PageRef> refs;
  explicit Dataset(Data d) : bytes(kPages * kPageSize) {
    std::mt19937_64 rng(42);
    if (d != Data::kZero)
      for (size_t i = 0; i < bytes.size(); i += 8) {
        const uint64_t v = rng();
        std::memcpy(bytes.data() + i, &v, 8);
      }
    if (d == Data::kDup13) {
      const size_t subs = bytes.size() / kSub;
      for (size_t s = 1; s < subs; ++s)
        if (rng() % 100 < 13) std::memcpy(&bytes[s * kSub], &bytes[(rng() % s) * kSub], kSub);
    }
    if (d == Data::kEdit24)
      for (size_t p = 0; p < kPages; ++p)
        for (int k = 0; k < 3; ++k) edit_at.push_back(static_cast<uint32_t>(rng() % (kPageSize / 8)) * 8);
    for (size_t p = 0; p < kPages; ++p)
      refs.push_back(PageRef{p * kPageSize, std::span<const uint8_t>(&bytes[p * kPageSize], kPageSize)});
  }
  // Changes 24 bytes of every page (edit24).
  void edit(uint64_t round) {
    for (size_t p = 0; p < kPages; ++p)
      for (int k = 0; k < 3; ++k) {
        const uint64_t v = (round + 1) * 0x9e3779b97f4a7c15ull ^ (p * 3 + k);
        std::memcpy(&bytes[p * kPageSize + edit_at[p * 3 + k]], &v, 8);
      }
  }
  std::span<const PageRef> batch(size_t i) const { return std::span(refs).subspan(i * kBatch, kBatch); }
};

CodecConfig bench_config(uint32_t sub_blocks = 4, bool entropy_check = true) {
  CodecConfig c;
  c.sub_blocks = sub_blocks;
  c.max_records = kBatch;
  c.zstd_entropy_check = entropy_check;
  return c;
}

void encode_pass(Encoder& e, const Dataset& d, std::vector<uint8_t>& out) {
  for (size_t b = 0; b < kPages / kBatch; ++b) {
    auto r = e.encode(d.batch(b), out);
    if (!r.ok()) std::abort();
  }
}

void report(benchmark::State& state, const CodecStats& s) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPages * kPageSize));
  state.counters["ratio"] = reduction_ratio(s);
}

void BM_Encode(benchmark::State& state, Data which, uint32_t sub_blocks, bool entropy_check) {
  Dataset d(which);
  auto enc = std::move(*Encoder::create(bench_config(sub_blocks, entropy_check)));
  std::vector<uint8_t> out;
  uint64_t round = 0;
  // Not timed: a first pass touches the state's memory (a long-lived
  // stream's steady state), and for edit24 is the first sending.
  encode_pass(*enc, d, out);
  CodecStats before = enc->stats();
  for (auto _ : state) {
    if (which == Data::kEdit24) {
      d.edit(round++);  // ~25 ns per page, inside the timing
    } else {
      enc->reset();  // every pass starts empty: the same work each time
    }
    encode_pass(*enc, d, out);
  }
  CodecStats s = enc->stats();
  s.page_bytes -= before.page_bytes;
  s.wire_bytes -= before.wire_bytes;
  report(state, s);
}

void BM_Decode(benchmark::State& state, Data which, uint32_t sub_blocks) {
  Dataset d(which);
  auto enc = std::move(*Encoder::create(bench_config(sub_blocks)));
  auto dec = std::move(*Decoder::create(bench_config(sub_blocks)));
  // Pre-encoded passes; edit24 has a first sending and 8 rounds of edits.
  std::vector<std::vector<uint8_t>> first(kPages / kBatch);
  for (size_t b = 0; b < first.size(); ++b) (void)enc->encode(d.batch(b), first[b]);
  constexpr size_t kRounds = 8;
  std::vector<std::vector<std::vector<uint8_t>>> rounds;
  if (which == Data::kEdit24) {
    for (size_t r = 0; r < kRounds; ++r) {
      d.edit(r);
      rounds.emplace_back(kPages / kBatch);
      for (size_t b = 0; b < kPages / kBatch; ++b) (void)enc->encode(d.batch(b), rounds.back()[b]);
    }
  }
  auto decode_all = [&](const std::vector<std::vector<uint8_t>>& pass) {
    for (const auto& w : pass) {
      auto r = dec->decode(w);
      if (!r.ok()) {
        state.SkipWithError(r.error().detail.c_str());
        return;
      }
      benchmark::DoNotOptimize(r->data());
    }
  };
  decode_all(first);  // not timed: touches the state's memory
  dec->reset();
  uint64_t wire = 0, pages = 0;
  size_t round = 0;
  for (auto _ : state) {
    if (which == Data::kEdit24) {
      if (round % kRounds == 0) {
        state.PauseTiming();
        dec->reset();
        decode_all(first);
        state.ResumeTiming();
      }
      decode_all(rounds[round++ % kRounds]);
      for (const auto& w : rounds[(round - 1) % kRounds]) wire += w.size();
    } else {
      dec->reset();
      decode_all(first);
      for (const auto& w : first) wire += w.size();
    }
    pages += kPages * kPageSize;
  }
  CodecStats s;
  s.page_bytes = pages;
  s.wire_bytes = wire;
  report(state, s);
}

// zstd level 1 alone: each 256-page batch compressed as one frame.
void BM_Zstd1Compress(benchmark::State& state, Data which) {
  Dataset d(which);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  std::vector<uint8_t> out(ZSTD_compressBound(kBatch * kPageSize));
  uint64_t wire = 0;
  uint64_t round = 0;
  for (auto _ : state) {
    if (which == Data::kEdit24) d.edit(round++);
    for (size_t b = 0; b < kPages / kBatch; ++b)
      wire += ZSTD_compressCCtx(cctx, out.data(), out.size(), &d.bytes[b * kBatch * kPageSize], kBatch * kPageSize, 1);
  }
  ZSTD_freeCCtx(cctx);
  CodecStats s;
  s.page_bytes = state.iterations() * kPages * kPageSize;
  s.wire_bytes = wire;
  report(state, s);
}

void BM_Zstd1Decompress(benchmark::State& state, Data which) {
  Dataset d(which);
  std::vector<std::vector<uint8_t>> frames(kPages / kBatch);
  for (size_t b = 0; b < frames.size(); ++b) {
    frames[b].resize(ZSTD_compressBound(kBatch * kPageSize));
    frames[b].resize(ZSTD_compress(frames[b].data(), frames[b].size(), &d.bytes[b * kBatch * kPageSize],
                                   kBatch * kPageSize, 1));
  }
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  std::vector<uint8_t> out(kBatch * kPageSize);
  uint64_t wire = 0;
  for (auto _ : state) {
    for (const auto& f : frames) {
      benchmark::DoNotOptimize(ZSTD_decompressDCtx(dctx, out.data(), out.size(), f.data(), f.size()));
      wire += f.size();
    }
  }
  ZSTD_freeDCtx(dctx);
  CodecStats s;
  s.page_bytes = state.iterations() * kPages * kPageSize;
  s.wire_bytes = wire;
  report(state, s);
}

#define CODEC_BENCH(name, data)                                                             \
  BENCHMARK_CAPTURE(BM_Encode, name, data, 4, true)->Unit(benchmark::kMillisecond);         \
  BENCHMARK_CAPTURE(BM_Decode, name, data, 4)->Unit(benchmark::kMillisecond);               \
  BENCHMARK_CAPTURE(BM_Zstd1Compress, name, data)->Unit(benchmark::kMillisecond);           \
  BENCHMARK_CAPTURE(BM_Zstd1Decompress, name, data)->Unit(benchmark::kMillisecond)

CODEC_BENCH(zero, Data::kZero);
CODEC_BENCH(dup13, Data::kDup13);
CODEC_BENCH(edit24, Data::kEdit24);
CODEC_BENCH(random, Data::kRandom);

// Sub-block counts on dup13, and random without the entropy sample.
BENCHMARK_CAPTURE(BM_Encode, dup13_n1, Data::kDup13, 1, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, dup13_n2, Data::kDup13, 2, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, dup13_n8, Data::kDup13, 8, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Encode, random_no_entropy_check, Data::kRandom, 4, false)->Unit(benchmark::kMillisecond);

}  // namespace

// Cost of the wire format on the data path: CRC32C, framing a write, and
// parsing + decoding it back. Run: build-rel/tests/bench/frame_bench
#include <benchmark/benchmark.h>

#include <vector>

#include "proto/crc32c.h"
#include "proto/frame.h"
#include "proto/messages.h"

namespace {

using namespace tideway::proto;

void BM_Crc32c(benchmark::State& state) {
  std::vector<uint8_t> buf(static_cast<size_t>(state.range(0)), 0xa5);
  for (auto _ : state) benchmark::DoNotOptimize(crc32c(buf));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32c)->Arg(4096)->Arg(65536);

ReplWrite make_write(const std::vector<uint8_t>& data) {
  ReplWrite w;
  w.writer = 1;
  w.volume = 1;
  w.seq = 42;
  w.vector = {42, 7};
  w.offset = 1 << 20;
  w.length = static_cast<uint32_t>(data.size());
  w.data = data;
  return w;
}

void BM_EncodeWrite(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)), 0x11);
  const ReplWrite w = make_write(data);
  for (auto _ : state) benchmark::DoNotOptimize(encode_message(w, 2, 42));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_EncodeWrite)->Arg(4096)->Arg(65536);

void BM_ParseAndDecodeWrite(benchmark::State& state) {
  std::vector<uint8_t> data(static_cast<size_t>(state.range(0)), 0x22);
  const auto frame = encode_message(make_write(data), 2, 42);
  for (auto _ : state) {
    FrameParser p;
    p.feed(frame);
    auto f = p.next();
    auto m = decode_payload(f.value()->header.type, f.value()->payload);
    benchmark::DoNotOptimize(m.ok());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_ParseAndDecodeWrite)->Arg(4096)->Arg(65536);

}  // namespace

// Writes the seed corpora for the fuzz targets from the proto test samples:
//   <dir>/frame/<name>    one encoded frame per sample, plus a few streams
//                          of several frames back to back
//   <dir>/payload/<name>  the type byte followed by the sample's payload
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/proto/samples.h"

namespace fs = std::filesystem;
using namespace tideway::proto;

static void write(const fs::path& p, const std::vector<uint8_t>& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", p.c_str());
    std::exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out / "frame");
  fs::create_directories(out / "payload");
  std::vector<uint8_t> all, small;
  for (const auto& s : testing::sample_messages()) {
    const auto frame = encode_message(s.msg, s.stream, s.seq);
    write(out / "frame" / s.name, frame);
    std::vector<uint8_t> p{static_cast<uint8_t>(message_type(s.msg))};
    const auto payload = encode_payload(s.msg);
    p.insert(p.end(), payload.begin(), payload.end());
    write(out / "payload" / s.name, p);
    all.insert(all.end(), frame.begin(), frame.end());
    if (frame.size() < 256) small.insert(small.end(), frame.begin(), frame.end());
  }
  // Streams: every sample, the small ones only, and a re-sent pair.
  write(out / "frame" / "stream_all", all);
  write(out / "frame" / "stream_small", small);
  auto resent = encode_message(ReplAck{1, 2, 3}, 7, 41, kFlagResent);
  const auto more = encode_message(Probe{9, 9, {}}, 7, 42, kFlagMore);
  resent.insert(resent.end(), more.begin(), more.end());
  write(out / "frame" / "stream_resent_more", resent);
  return 0;
}

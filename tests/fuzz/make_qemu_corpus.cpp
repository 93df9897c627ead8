// Writes the seed corpus of fuzz_qemu_stream into DIR: small QEMU 7.2
// streams built like the captured ones (tests/qemu_stream/stream_writer.h),
// each prefixed with the chunking seed byte the target expects.
#include <cstdio>
#include <string>
#include <vector>

#include "tests/qemu_stream/stream_writer.h"

namespace tq = tideway::testing::qemu;
namespace q = tideway::proto::qemu;

namespace {

bool write_seed(const std::string& dir, const std::string& name, uint8_t chunking, const std::vector<uint8_t>& s) {
  const std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  bool ok = std::fwrite(&chunking, 1, 1, f) == 1 && std::fwrite(s.data(), 1, s.size(), f) == s.size();
  ok = std::fclose(f) == 0 && ok;
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::vector<std::pair<std::string, std::vector<uint8_t>>> seeds;

  // A small whole migration: every kind of item once or twice.
  {
    tq::StreamWriter w;
    w.header().configuration();
    w.start(2, "ram", 0, 4).mem_size({{"pc.ram", 1 << 20}, {"pc.rom", 8192}}).eos().footer(2);
    w.part(2).page("pc.ram", 4096, std::vector<uint8_t>(4096, 0x11)).zero("pc.ram", 8192).eos().footer(2);
    w.command(q::kCmdPing, {0, 0, 0, 7});
    w.end(2).page("pc.rom", 0, std::vector<uint8_t>(4096, 0x22)).zero("pc.ram", 0).eos().footer(2);
    w.full(0, "timer", 0, 2).be64(1).footer(0).u8(q::kSecEof);
    w.u8(q::kSecVmDescription).be32(2).str("{}");
    seeds.emplace_back("small", std::move(w.bytes));
  }
  // With the CONFIGURATION subsections QEMU may send.
  {
    tq::StreamWriter w;
    w.header().configuration("pc-q35-7.2");
    w.subsection(q::kSubTargetPageBits, 1, {0, 0, 0, 12}).subsection(q::kSubUuid, 1, std::vector<uint8_t>(16, 1));
    w.start(7, "ram", 0, 4).mem_size({{"pc.ram", 16384}}).eos().footer(7);
    w.end(7).zero("pc.ram", 4096).eos().footer(7).u8(q::kSecEof);
    seeds.emplace_back("subsections", std::move(w.bytes));
  }
  // The q35 shape (six blocks, CONTINUE across sections, device state).
  seeds.emplace_back("q35", tq::q35_stream(1, 2, 2));
  // A stream cut inside the RAM sections.
  {
    auto s = tq::q35_stream(2, 1, 3);
    s.resize(s.size() / 2);
    seeds.emplace_back("q35-cut", std::move(s));
  }
  uint8_t chunking = 0;
  for (const auto& [name, bytes] : seeds) {
    if (!write_seed(dir, name, chunking, bytes)) {
      std::fprintf(stderr, "make_qemu_corpus: cannot write %s/%s\n", dir.c_str(), name.c_str());
      return 1;
    }
    chunking = static_cast<uint8_t>(chunking + 77);
  }
  return 0;
}

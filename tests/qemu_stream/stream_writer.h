// Builds QEMU 7.2 migration streams for the splitter's tests and the fuzz
// corpus: the same byte layout QEMU writes (proto/qemu_format.h), with a
// knob for every field so tests can also write what QEMU must not.
// q35_stream() mirrors the structure captured from the test guest
// (machine pc-q35-7.2, RAM section id 2, the six RAMBlocks of q35 with
// -m 524280K, CONTINUE across sections, device state from "timer" on).
// No gtest here: the fuzz corpus generator uses it too.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "proto/qemu_format.h"

namespace tideway::testing::qemu {

namespace q = tideway::proto::qemu;

class StreamWriter {
 public:
  std::vector<uint8_t> bytes;

  StreamWriter& u8(uint8_t v) {
    bytes.push_back(v);
    return *this;
  }
  StreamWriter& be16(uint16_t v) { return u8(static_cast<uint8_t>(v >> 8)).u8(static_cast<uint8_t>(v)); }
  StreamWriter& be32(uint32_t v) { return be16(static_cast<uint16_t>(v >> 16)).be16(static_cast<uint16_t>(v)); }
  StreamWriter& be64(uint64_t v) { return be32(static_cast<uint32_t>(v >> 32)).be32(static_cast<uint32_t>(v)); }
  StreamWriter& raw(const std::vector<uint8_t>& b) {
    bytes.insert(bytes.end(), b.begin(), b.end());
    return *this;
  }
  StreamWriter& str(const std::string& s) {
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  StreamWriter& str8(const std::string& s) { return u8(static_cast<uint8_t>(s.size())).str(s); }
  size_t size() const { return bytes.size(); }

  // File header and CONFIGURATION.
  StreamWriter& header(uint32_t magic = q::kFileMagic, uint32_t version = q::kFileVersion) {
    return be32(magic).be32(version);
  }
  StreamWriter& configuration(const std::string& machine = "pc-q35-7.2") {
    return u8(q::kSecConfiguration).be32(static_cast<uint32_t>(machine.size())).str(machine);
  }
  StreamWriter& subsection(const std::string& name, uint32_t version, const std::vector<uint8_t>& body) {
    return u8(q::kSecSubsection).str8(name).be32(version).raw(body);
  }

  // Section headers and footers.
  StreamWriter& start(uint32_t id, const std::string& idstr, uint32_t instance, uint32_t version) {
    return u8(q::kSecStart).be32(id).str8(idstr).be32(instance).be32(version);
  }
  StreamWriter& full(uint32_t id, const std::string& idstr, uint32_t instance, uint32_t version) {
    return u8(q::kSecFull).be32(id).str8(idstr).be32(instance).be32(version);
  }
  StreamWriter& part(uint32_t id) { return u8(q::kSecPart).be32(id); }
  StreamWriter& end(uint32_t id) { return u8(q::kSecEnd).be32(id); }
  StreamWriter& footer(uint32_t id) { return u8(q::kSecFooter).be32(id); }
  StreamWriter& command(uint16_t cmd, const std::vector<uint8_t>& data) {
    return u8(q::kSecCommand).be16(cmd).be16(static_cast<uint16_t>(data.size())).raw(data);
  }

  // RAM records. page()/zero() set CONTINUE when the block is the previous
  // record's, as QEMU does (the previous block survives across sections).
  StreamWriter& mem_size(const std::vector<std::pair<std::string, uint64_t>>& blocks) {
    uint64_t total = 0;
    for (const auto& b : blocks) total += b.second;
    be64(total | q::kRamMemSize);
    for (const auto& b : blocks) str8(b.first).be64(b.second);
    return *this;
  }
  StreamWriter& record(const std::string& block, uint64_t offset, uint64_t flags) {
    if (block == last_block_) return be64(offset | flags | q::kRamContinue);
    last_block_ = block;
    return be64(offset | flags).str8(block);
  }
  StreamWriter& page(const std::string& block, uint64_t offset, const std::vector<uint8_t>& data) {
    return record(block, offset, q::kRamPage).raw(data);
  }
  StreamWriter& zero(const std::string& block, uint64_t offset, uint8_t fill = 0) {
    return record(block, offset, q::kRamZero).u8(fill);
  }
  StreamWriter& eos() { return be64(q::kRamEos); }
  void forget_block() { last_block_.clear(); }

 private:
  std::string last_block_;
};

// The RAMBlocks q35 with -m 524280K reports (captured from QEMU 7.2).
inline std::vector<std::pair<std::string, uint64_t>> q35_blocks() {
  return {{"pc.ram", 536862720},       {"/rom@etc/acpi/tables", 131072}, {"pc.bios", 262144},
          {"pc.rom", 131072},          {"/rom@etc/table-loader", 4096},  {"/rom@etc/acpi/rsdp", 4096}};
}
inline constexpr uint32_t kQ35RamSection = 2;

// What a stream built by q35_stream() must split into.
struct Expected {
  std::vector<uint64_t> keys;             // page_key of every PAGE record, in order
  std::vector<std::vector<uint8_t>> pages;
  uint64_t zero_pages = 0;
  uint64_t ram_sections = 0;
  size_t device_state_at = 0;  // offset of the first FULL section
};

inline std::vector<uint8_t> random_page(std::mt19937_64& rng) {
  std::vector<uint8_t> p(q::kPageSize);
  const int kind = static_cast<int>(rng() % 3);
  for (size_t k = 0; k < p.size(); ++k) {
    // Mostly small values (like real memory), some runs, some noise.
    const uint64_t r = rng();
    p[k] = kind == 0 ? static_cast<uint8_t>(r) : kind == 1 ? static_cast<uint8_t>(k / 64) : static_cast<uint8_t>(r & 7);
  }
  return p;
}

// A q35-shaped stream: header, CONFIGURATION, RAM START with the block
// list, `parts` PART sections of up to `per_section` records (pages and
// zero pages of pc.ram), an END section that visits every block (ROM
// blocks named, then back to pc.ram), a few FULL device sections, EOF and
// a VMDESCRIPTION. Page offsets stay in each block.
inline std::vector<uint8_t> q35_stream(uint64_t seed, int parts, int per_section, Expected* expected = nullptr) {
  std::mt19937_64 rng(seed);
  Expected ex;
  StreamWriter w;
  const auto blocks = q35_blocks();
  w.header().configuration();
  w.start(kQ35RamSection, "ram", 0, q::kRamSectionVersion).mem_size(blocks).eos().footer(kQ35RamSection);
  ++ex.ram_sections;
  const auto emit = [&](uint32_t b, uint64_t offset, bool is_zero) {
    if (is_zero) {
      w.zero(blocks[b].first, offset);
      ++ex.zero_pages;
    } else {
      auto p = random_page(rng);
      w.page(blocks[b].first, offset, p);
      ex.keys.push_back(q::page_key(b, offset));
      ex.pages.push_back(std::move(p));
    }
  };
  const uint64_t ram_pages = blocks[0].second / q::kPageSize;
  uint64_t next = 0;  // a sweep over pc.ram, like the first pass
  for (int s = 0; s < parts; ++s) {
    w.part(kQ35RamSection);
    const int n = static_cast<int>(rng() % static_cast<uint64_t>(per_section + 1));
    for (int k = 0; k < n; ++k) {
      next = (next + 1 + rng() % 64) % ram_pages;
      emit(0, next * q::kPageSize, rng() % 4 == 0);
    }
    w.eos().footer(kQ35RamSection);
    ++ex.ram_sections;
  }
  w.end(kQ35RamSection);
  for (uint32_t b = 0; b < blocks.size(); ++b) {
    const uint64_t n = blocks[b].second / q::kPageSize;
    for (int k = 0; k < 2; ++k) emit(b, (rng() % n) * q::kPageSize, rng() % 3 == 0);
  }
  emit(0, (ram_pages - 1) * q::kPageSize, false);  // the last page of the block
  w.eos().footer(kQ35RamSection);
  ++ex.ram_sections;
  // Device state: no length fields, so anything may follow the FULL byte.
  ex.device_state_at = w.size();
  w.full(0, "timer", 0, 2).be64(rng()).be64(0).be64(rng()).footer(0);
  w.full(3, "cpu", 0, 12);
  for (int k = 0; k < 300; ++k) w.u8(static_cast<uint8_t>(rng()));
  w.footer(3);
  w.full(40, "globalstate", 0, 1).be32(8).str("running").u8(0).footer(40);
  w.u8(q::kSecEof);
  const std::string desc = R"({"page_size": 4096, "devices": []})";
  w.u8(q::kSecVmDescription).be32(static_cast<uint32_t>(desc.size())).str(desc);
  if (expected != nullptr) *expected = std::move(ex);
  return std::move(w.bytes);
}

}  // namespace tideway::testing::qemu

// What each item of a QEMU 7.2 migration stream must look like: its size
// (judged from its first bytes) and its checks. Facts: proto/qemu_format.h.
#include <cassert>
#include <cstdio>
#include <string_view>

#include "proto/qemu_stream.h"

namespace tideway::proto::qemu {

namespace {

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint64_t be64(const uint8_t* p) { return (uint64_t{be32(p)} << 32) | be32(p + 4); }

std::string_view text(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// A name from the stream, quoted and with unprintable bytes escaped, for
// error messages.
std::string quoted(std::string_view s) {
  std::string out = "'";
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\'' && c != '\\') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out + "'";
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// The subsections of CONFIGURATION in QEMU's order, with their body sizes.
struct SubsectionInfo {
  std::string_view name;
  size_t body;
};
constexpr SubsectionInfo kSubsections[] = {{kSubTargetPageBits, 4}, {kSubCapabilities, 0}, {kSubUuid, 16}};
constexpr int kSubsectionCount = 3;

int subsection_index(std::string_view name) {
  for (int k = 0; k < kSubsectionCount; ++k)
    if (kSubsections[k].name == name) return k;
  return -1;
}

constexpr uint32_t kUnsupportedRamFlags = kRamXbzrle | kRamHook | kRamCompressPage | kRamMultifdFlush;
constexpr uint32_t kKnownRamFlags =
    kRamZero | kRamMemSize | kRamPage | kRamEos | kRamContinue | kUnsupportedRamFlags;

const char* unsupported_flag_name(uint64_t f) {
  if (f & kRamXbzrle) return "XBZRLE (0x40): the xbzrle capability";
  if (f & kRamHook) return "HOOK (0x80): RDMA";
  if (f & kRamCompressPage) return "COMPRESS_PAGE (0x100): the compress capability";
  return "MULTIFD_FLUSH (0x200): multifd";
}

}  // namespace

// ---- sizes ---------------------------------------------------------------

size_t StreamSplitter::item_size(std::span<const uint8_t> item) const {
  switch (expect_) {
    case Expect::kFileHeader:
      return kFileHeaderSize;
    case Expect::kConfiguration: {
      if (item.size() < 5 || item[0] != kSecConfiguration) return 5;
      const uint32_t len = be32(item.data() + 1);
      return len <= kMaxMachineType ? 5 + len : 5;  // too long: refused after 5 bytes
    }
    case Expect::kSection:
      return section_item_size(item);
    case Expect::kRamRecord:
      return ram_record_size(item);
    case Expect::kBlockEntry:
      if (item.empty()) return 1;
      return 1 + size_t{item[0]} + 8;
    case Expect::kFooter:
      return 5;
    case Expect::kPagePayload:
    case Expect::kPassthrough:
    case Expect::kFailed:
      break;
  }
  assert(false && "no items in this state");
  return 1;
}

size_t StreamSplitter::section_item_size(std::span<const uint8_t> item) const {
  if (item.empty()) return 1;
  switch (item[0]) {
    case kSecStart:  // type, id, len, idstr, instance, version
      if (item.size() < 6) return 6;
      return 6 + size_t{item[5]} + 8;
    case kSecPart:
    case kSecEnd:
      return 5;
    case kSecSubsection: {  // type, len, name, version, body
      if (item.size() < 2) return 2;
      const size_t head = 2 + size_t{item[1]} + 4;
      if (item.size() < head) return head;
      const int k = subsection_index(text(item.data() + 2, item[1]));
      return head + (k < 0 ? 0 : kSubsections[k].body);
    }
    case kSecCommand: {  // type, cmd, len, data: only PING's data is read
      if (item.size() < 5) return 5;
      const bool ping = be16(item.data() + 1) == kCmdPing && be16(item.data() + 3) == kPingLength;
      return ping ? 5 + kPingLength : 5;
    }
    default:  // decided by the type byte alone (pass-through or refused)
      return 1;
  }
}

size_t StreamSplitter::ram_record_size(std::span<const uint8_t> item) const {
  if (item.size() < 8) return 8;
  const uint64_t flags = be64(item.data()) & kFlagMask;
  const uint64_t kind = flags & ~uint64_t{kRamContinue};
  if (kind != kRamZero && kind != kRamPage) return 8;  // MEM_SIZE, EOS, or refused
  const size_t fill = kind == kRamZero ? 1 : 0;
  if (flags & kRamContinue) return 8 + fill;
  if (item.size() < 9) return 9;
  return 9 + size_t{item[8]} + fill;
}

// ---- checks --------------------------------------------------------------

Result<void> StreamSplitter::apply(std::span<const uint8_t> item, uint64_t at) {
  switch (expect_) {
    case Expect::kFileHeader: {
      const uint32_t magic = be32(item.data());
      const uint32_t version = be32(item.data() + 4);
      if (magic != kFileMagic)
        return fail(Errc::kBadMagic, at, "file magic " + hex(magic) + ", expected 0x5145564d (QEVM)");
      if (version != kFileVersion)
        return fail(Errc::kBadVersion, at, "file version " + std::to_string(version) + ", expected 3");
      expect_ = Expect::kConfiguration;
      return {};
    }
    case Expect::kConfiguration:
      return apply_configuration(item, at);
    case Expect::kSection:
      return apply_section(item, at);
    case Expect::kRamRecord:
      return apply_ram_record(item, at);
    case Expect::kBlockEntry:
      return apply_block_entry(item, at);
    case Expect::kFooter:
      return apply_footer(item, at);
    default:
      break;
  }
  assert(false && "no items in this state");
  return fail(Errc::kInvalid, at, "internal: no item expected");
}

Result<void> StreamSplitter::apply_configuration(std::span<const uint8_t> item, uint64_t at) {
  if (item[0] != kSecConfiguration)
    return fail(Errc::kMalformed, at,
                std::string("expected the CONFIGURATION section after the file header, found section type ") +
                    hex(item[0]) + " (" + section_type_name(item[0]) + ")");
  const uint32_t len = be32(item.data() + 1);
  if (len == 0 || len > kMaxMachineType)
    return fail(Errc::kTooLarge, at,
                "CONFIGURATION machine type of " + std::to_string(len) + " bytes (1.." +
                    std::to_string(kMaxMachineType) + ")");
  machine_.assign(text(item.data() + 5, len));
  expect_ = Expect::kSection;
  subsections_ = 0;
  return {};
}

Result<void> StreamSplitter::apply_section(std::span<const uint8_t> item, uint64_t at) {
  const uint8_t type = item[0];
  if (type != kSecSubsection) subsections_ = -1;  // subsections only follow CONFIGURATION
  switch (type) {
    case kSecSubsection:
      return apply_subsection(item, at);
    case kSecCommand:
      return apply_command(item, at);
    case kSecStart:
      return apply_start(item, at);
    case kSecPart:
    case kSecEnd:
      return apply_part_end(item, at);
    case kSecFull:
      // Device state: no length, readable only with its vmstate. QEMU sends
      // it after the RAM END section; everything from here passes through.
      expect_ = Expect::kPassthrough;
      return {};
    case kSecEof:
      if (!stats_.ram_complete)
        return fail(Errc::kMalformed, at, "EOF before the RAM END section");
      expect_ = Expect::kPassthrough;  // then VMDESCRIPTION
      return {};
    case kSecVmDescription:
    case kSecConfiguration:
    case kSecFooter:
      return fail(Errc::kMalformed, at, std::string(section_type_name(type)) + " section out of place");
    default:
      return fail(Errc::kUnknownType, at, "unknown section type " + hex(type));
  }
}

Result<void> StreamSplitter::apply_subsection(std::span<const uint8_t> item, uint64_t at) {
  if (subsections_ < 0)
    return fail(Errc::kMalformed, at, "SUBSECTION outside the CONFIGURATION section");
  const std::string_view name = text(item.data() + 2, item[1]);
  const uint32_t version = be32(item.data() + 2 + item[1]);
  const int k = subsection_index(name);
  if (k < 0) return fail(Errc::kUnknownType, at, "unknown CONFIGURATION subsection " + quoted(name));
  if (k < subsections_)
    return fail(Errc::kMalformed, at, "CONFIGURATION subsection " + quoted(name) + " repeated or out of order");
  if (version != 1)
    return fail(Errc::kBadVersion, at,
                "CONFIGURATION subsection " + quoted(name) + " version " + std::to_string(version) + ", expected 1");
  const uint8_t* body = item.data() + 2 + item[1] + 4;
  if (name == kSubCapabilities)
    return fail(Errc::kIncompatible, at,
                "in-stream migration capabilities (x-ignore-shared) are not supported: they change the RAM format");
  if (name == kSubTargetPageBits && be32(body) != kPageBits)
    return fail(Errc::kIncompatible, at,
                "target page bits " + std::to_string(be32(body)) + ": only 4096-byte pages are supported");
  subsections_ = k + 1;
  return {};
}

Result<void> StreamSplitter::apply_command(std::span<const uint8_t> item, uint64_t at) {
  const uint16_t cmd = be16(item.data() + 1);
  const uint16_t len = be16(item.data() + 3);
  if (cmd == 0 || cmd > kCmdEnableColo) return fail(Errc::kUnknownType, at, "unknown COMMAND " + std::to_string(cmd));
  if (cmd != kCmdPing)
    return fail(Errc::kIncompatible, at,
                std::string("COMMAND ") + command_name(cmd) + " (" + std::to_string(cmd) +
                    "): return path, postcopy and COLO are not supported through the splitter");
  if (len != kPingLength)
    return fail(Errc::kMalformed, at, "COMMAND PING with " + std::to_string(len) + " data bytes, expected 4");
  ++stats_.commands;
  return {};
}

Result<void> StreamSplitter::apply_start(std::span<const uint8_t> item, uint64_t at) {
  const uint32_t id = be32(item.data() + 1);
  const uint8_t len = item[5];
  const std::string_view idstr = text(item.data() + 6, len);
  const uint32_t instance = be32(item.data() + 6 + len);
  const uint32_t version = be32(item.data() + 10 + len);
  if (idstr != kRamIdstr) {
    // An iterable device other than RAM (block migration, dirty bitmaps):
    // its payload cannot be read here, so the rest passes through whole.
    expect_ = Expect::kPassthrough;
    return {};
  }
  if (ram_started_) return fail(Errc::kMalformed, at, "second RAM START section");
  if (instance != 0)
    return fail(Errc::kMalformed, at, "RAM START section instance " + std::to_string(instance) + ", expected 0");
  if (version != kRamSectionVersion)
    return fail(Errc::kBadVersion, at, "RAM section version " + std::to_string(version) + ", expected 4");
  ram_started_ = true;
  ram_section_id_ = id;
  section_ = RamSection::kStart;
  want_mem_size_ = true;
  expect_ = Expect::kRamRecord;
  return {};
}

Result<void> StreamSplitter::apply_part_end(std::span<const uint8_t> item, uint64_t at) {
  const char* name = section_type_name(item[0]);
  const uint32_t id = be32(item.data() + 1);
  if (!ram_started_) return fail(Errc::kMalformed, at, std::string(name) + " section before the RAM START section");
  if (id != ram_section_id_)
    return fail(Errc::kMalformed, at,
                std::string(name) + " section of section id " + std::to_string(id) + ", but RAM is " +
                    std::to_string(ram_section_id_) + " (only RAM is iterable here)");
  if (stats_.ram_complete) return fail(Errc::kMalformed, at, std::string(name) + " section after the RAM END section");
  section_ = item[0] == kSecPart ? RamSection::kPart : RamSection::kEnd;
  expect_ = Expect::kRamRecord;
  return {};
}

Result<void> StreamSplitter::apply_ram_record(std::span<const uint8_t> item, uint64_t at) {
  const uint64_t v = be64(item.data());
  const uint64_t flags = v & kFlagMask;
  const uint64_t offset = v & ~kFlagMask;
  if (want_mem_size_) {
    if (flags != kRamMemSize)
      return fail(Errc::kMalformed, at, "the RAM START section must begin with MEM_SIZE, found flags " + hex(flags));
    if (offset == 0) return fail(Errc::kMalformed, at, "MEM_SIZE of 0 bytes");
    want_mem_size_ = false;
    blocks_remaining_ = offset;
    expect_ = Expect::kBlockEntry;
    return {};
  }
  if (flags & kRamMemSize) return fail(Errc::kMalformed, at, "MEM_SIZE record after the start of the RAM START section");
  if (flags & kRamEos) {
    if (v != kRamEos) return fail(Errc::kMalformed, at, "EOS record " + hex(v) + " with other flags or an offset");
    expect_ = Expect::kFooter;
    return {};
  }
  if (flags & kUnsupportedRamFlags)
    return fail(Errc::kIncompatible, at, std::string("RAM flag ") + unsupported_flag_name(flags) + " is not supported");
  if (flags & ~uint64_t{kKnownRamFlags})
    return fail(Errc::kUnknownFlags, at,
                "unknown RAM flags " + hex(flags & ~uint64_t{kKnownRamFlags}) + " (or an offset not page-aligned)");
  const uint64_t kind = flags & ~uint64_t{kRamContinue};
  if (kind != kRamZero && kind != kRamPage)
    return fail(Errc::kMalformed, at, "RAM record with flag combination " + hex(flags));

  size_t block = 0;
  if (flags & kRamContinue) {
    if (last_block_ < 0) return fail(Errc::kMalformed, at, "CONTINUE with no previous RAMBlock");
    block = static_cast<size_t>(last_block_);
  } else {
    const std::string_view name = text(item.data() + 9, item[8]);
    while (block < blocks_.size() && blocks_[block].idstr != name) ++block;
    if (block == blocks_.size()) return fail(Errc::kMalformed, at, "unknown RAMBlock " + quoted(name));
  }
  const RamBlock& b = blocks_[block];
  if (offset >= b.used_length)
    return fail(Errc::kMalformed, at,
                "page offset " + hex(offset) + " beyond RAMBlock " + quoted(b.idstr) + " (used_length " +
                    hex(b.used_length) + ")");
  if (kind == kRamZero && item.back() != 0)
    return fail(Errc::kMalformed, at, "ZERO page with fill byte " + hex(item.back()) + " (QEMU sends 0)");
  last_block_ = static_cast<int64_t>(block);
  if (kind == kRamZero) {
    ++stats_.zero_pages;
  } else {
    page_key_ = page_key(static_cast<uint32_t>(block), offset);
    expect_ = Expect::kPagePayload;
  }
  return {};
}

Result<void> StreamSplitter::apply_block_entry(std::span<const uint8_t> item, uint64_t at) {
  const uint8_t len = item[0];
  const std::string_view name = text(item.data() + 1, len);
  const uint64_t length = be64(item.data() + 1 + len);
  if (len == 0) return fail(Errc::kMalformed, at, "RAMBlock with an empty idstr");
  for (const auto& b : blocks_)
    if (b.idstr == name) return fail(Errc::kMalformed, at, "RAMBlock " + quoted(name) + " listed twice");
  if (blocks_.size() == kMaxRamBlocks)
    return fail(Errc::kTooLarge, at, "more than " + std::to_string(kMaxRamBlocks) + " RAMBlocks");
  if (length == 0 || (length & kFlagMask) != 0 || length > kMaxBlockBytes)
    return fail(Errc::kTooLarge, at,
                "RAMBlock " + quoted(name) + " used_length " + hex(length) +
                    " (must be a non-zero multiple of 4096, at most 2^48)");
  if (length > blocks_remaining_)
    return fail(Errc::kMalformed, at,
                "RAMBlock " + quoted(name) + " used_length " + hex(length) + " exceeds what MEM_SIZE leaves (" +
                    hex(blocks_remaining_) + ")");
  blocks_.push_back(RamBlock{std::string(name), length});
  blocks_remaining_ -= length;
  if (blocks_remaining_ == 0) expect_ = Expect::kRamRecord;
  return {};
}

Result<void> StreamSplitter::apply_footer(std::span<const uint8_t> item, uint64_t at) {
  if (item[0] != kSecFooter)
    return fail(Errc::kMalformed, at, "expected the section FOOTER after EOS, found byte " + hex(item[0]));
  const uint32_t id = be32(item.data() + 1);
  if (id != ram_section_id_)
    return fail(Errc::kMalformed, at,
                "FOOTER of section id " + std::to_string(id) + " closes RAM section " + std::to_string(ram_section_id_));
  ++stats_.ram_sections;
  if (section_ == RamSection::kEnd) stats_.ram_complete = true;
  section_ = RamSection::kNone;
  expect_ = Expect::kSection;
  return {};
}

}  // namespace tideway::proto::qemu

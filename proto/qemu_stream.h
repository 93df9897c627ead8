// Splits QEMU 7.2's precopy migration stream into pass-through bytes and
// RAM pages, so the pages can travel through the WAN codec and the
// destination can rebuild the identical stream (docs/qemu-stream.md).
//
// Incremental and strict: bytes may arrive in any chunking; what QEMU 7.2
// does not send in our configuration (XBZRLE, compression, multifd,
// postcopy, return path, RDMA hooks, in-stream capabilities) is refused
// with the reason and the stream offset. Only the header, the CONFIGURATION
// section and the "ram" START/PART/END sections are parsed; from the first
// section of any other device on, everything passes through untouched
// (device sections carry no length and can only be read with the device's
// own state description).
//
// Output rule: concatenating every opaque() and page() span, in call order,
// gives exactly the bytes accepted so far. A record is handed out only once
// it is complete and valid, so after an error the output is the input up to
// the start of the bad record, and nothing of that record.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/qemu_format.h"
#include "proto/result.h"

namespace tideway::proto::qemu {

struct RamBlock {
  std::string idstr;
  uint64_t used_length = 0;
};

enum class Phase {
  kHeader,       // before the RAM START section
  kRam,          // RAM sections (and COMMANDs between them)
  kPassthrough,  // from the first non-RAM section on: nothing is parsed
  kFailed,
};
const char* phase_name(Phase p);

// The RAM section being parsed (kNone between sections). kEnd means the
// source has stopped the VM: this is the final stop-and-copy.
enum class RamSection { kNone, kStart, kPart, kEnd };

// Callbacks, in stream order. They must not call back into the splitter.
class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Bytes to pass through verbatim (record headers, sections, device state).
  virtual void opaque(std::span<const uint8_t> bytes) = 0;
  // The kPageSize payload bytes of one RAM PAGE record; its header went to
  // opaque() just before. `key` is page_key(block index, offset).
  virtual void page(uint64_t key, std::span<const uint8_t> data) = 0;
};

class StreamSplitter {
 public:
  struct Stats {
    uint64_t pages = 0;         // PAGE records (payloads handed to page())
    uint64_t zero_pages = 0;    // ZERO records (in the opaque bytes)
    uint64_t opaque_bytes = 0;  // bytes handed to opaque()
    uint64_t ram_sections = 0;  // RAM START/PART/END sections completed
    uint64_t commands = 0;      // COMMAND sections (PING)
    // The RAM END section completed before pass-through began: every page
    // of the migration went through page(). False at pass-through means a
    // device section came first (pages would then be in the opaque bytes).
    bool ram_complete = false;
  };

  // Feeds the next bytes of the stream (any chunking, empty is fine). On
  // error nothing of the bad record is handed out, the splitter stays
  // failed, and every later call returns the same error.
  Result<void> feed(std::span<const uint8_t> bytes, StreamSink& sink);
  // The source closed the stream: an error unless it ended in pass-through
  // (a stream cut inside the RAM sections is an incomplete migration).
  Result<void> finish() const;

  Phase phase() const;
  RamSection ram_section() const { return section_; }
  const std::vector<RamBlock>& ram_blocks() const { return blocks_; }
  const std::string& machine_type() const { return machine_; }
  Stats stats() const { return stats_; }
  // Bytes fed and accepted (handed out, or held in buffered()).
  uint64_t offset() const { return offset_; }
  // Accepted bytes not handed out yet: part of a record header (at most
  // kMaxItem) or of a page payload (less than kPageSize).
  size_t buffered() const { return held_ + page_have_; }

  // Largest record header the splitter holds while waiting for its end.
  static constexpr size_t kMaxItem = 320;

 private:
  enum class Expect : uint8_t {
    kFileHeader,
    kConfiguration,
    kSection,  // a top-level item: section header, COMMAND, SUBSECTION
    kRamRecord,
    kBlockEntry,
    kFooter,
    kPagePayload,
    kPassthrough,
    kFailed,
  };

  // Bytes the item starting at `item` needs in total, judged from the bytes
  // present; >= item.size() when it is complete. Never above kMaxItem.
  size_t item_size(std::span<const uint8_t> item) const;
  size_t section_item_size(std::span<const uint8_t> item) const;
  size_t ram_record_size(std::span<const uint8_t> item) const;
  // Checks a complete item and advances the state (`at`: its stream offset).
  Result<void> apply(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_section(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_configuration(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_subsection(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_command(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_start(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_part_end(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_ram_record(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_block_entry(std::span<const uint8_t> item, uint64_t at);
  Result<void> apply_footer(std::span<const uint8_t> item, uint64_t at);
  Result<void> fail(Errc code, uint64_t at, const std::string& what);

  // Emission helpers (feed's chunk and the range of it not yet handed out).
  void emit_opaque(std::span<const uint8_t> bytes, StreamSink& sink);

  Expect expect_ = Expect::kFileHeader;
  Error error_{};
  uint64_t offset_ = 0;  // stream offset of the next byte fed

  // A record header that straddles feed() calls.
  std::array<uint8_t, kMaxItem> held_buf_{};
  size_t held_ = 0;
  uint64_t held_at_ = 0;

  // A page payload that straddles feed() calls.
  std::array<uint8_t, kPageSize> page_buf_{};
  size_t page_have_ = 0;
  uint64_t page_key_ = 0;

  // Header and configuration.
  std::string machine_;
  int subsections_ = 0;  // index of the next subsection QEMU may send (0..3); -1 once sections begin

  // RAM state.
  std::vector<RamBlock> blocks_;
  bool ram_started_ = false;
  uint32_t ram_section_id_ = 0;
  RamSection section_ = RamSection::kNone;
  bool want_mem_size_ = false;     // the START section's first record is due
  uint64_t blocks_remaining_ = 0;  // MEM_SIZE total not yet covered by block entries
  int64_t last_block_ = -1;        // block of the previous page record (any section)

  Stats stats_;
};

}  // namespace tideway::proto::qemu

#include "proto/journal_record.h"

#include <cassert>
#include <string>

#include "proto/bytes.h"
#include "proto/crc32c.h"

namespace tideway::proto {

namespace {

size_t data_bytes(const ReplWrite& w) { return w.op == WriteOp::kWrite ? w.length : 0; }

Error bad(Errc code, const std::string& what) { return Error{code, "journal record: " + what}; }

}  // namespace

size_t journal_record_size(const ReplWrite& w) {
  return kJournalHeaderSize + 4 * w.vector.size() + data_bytes(w) + 4;
}

void append_journal_record(const ReplWrite& w, std::vector<uint8_t>& out) {
  assert(w.seq > 0 && w.length > 0 && w.length <= kMaxWriteLen);
  assert(w.vector.size() <= kMaxVectorLen);
  assert(w.data.size() == data_bytes(w));
  assert((w.flags & kWriteEncoded) == 0);  // the replicator journals decoded bytes
  const size_t start = out.size();
  const size_t total = journal_record_size(w);
  out.reserve(start + total);
  ByteWriter b(out);
  b.u32(kJournalMagic);
  b.u32(static_cast<uint32_t>(total));
  b.u32(w.writer);
  b.u32(w.volume);
  b.u64(w.seq);
  b.u8(static_cast<uint8_t>(w.op));
  b.u8(static_cast<uint8_t>(w.vector.size()));
  b.u16(0);
  b.u32(w.flags);
  b.u64(w.offset);
  b.u32(w.length);
  for (uint32_t v : w.vector) b.u32(v);
  b.bytes(w.data);
  b.u32(crc32c({out.data() + start, out.size() - start}));
  assert(out.size() - start == total);
}

Result<JournalRecord> decode_journal_record(std::span<const uint8_t> in) {
  ByteReader r(in);
  uint32_t magic = 0, total = 0;
  if (!r.u32(magic)) return bad(Errc::kTruncated, "header truncated");
  if (magic != kJournalMagic) return bad(Errc::kBadMagic, "bad magic");
  if (!r.u32(total)) return bad(Errc::kTruncated, "header truncated");
  if (total < kJournalHeaderSize + 4 || total > kJournalMaxRecord)
    return bad(Errc::kTooLarge, "length " + std::to_string(total) + " out of bounds");
  if (in.size() < total) return bad(Errc::kTruncated, "record truncated");
  // Check the CRC before trusting any other field.
  const auto body = in.first(total - 4);
  ByteReader tail(in.subspan(total - 4, 4));
  uint32_t crc = 0;
  tail.u32(crc);
  if (crc32c(body) != crc) return bad(Errc::kBadChecksum, "CRC mismatch");

  JournalRecord rec;
  rec.size = total;
  ReplWrite& w = rec.write;
  uint8_t op = 0, vlen = 0;
  uint16_t zero = 0;
  ByteReader h(body.subspan(8));
  if (!h.u32(w.writer) || !h.u32(w.volume) || !h.u64(w.seq) || !h.u8(op) || !h.u8(vlen) ||
      !h.u16(zero) || !h.u32(w.flags) || !h.u64(w.offset) || !h.u32(w.length))
    return bad(Errc::kMalformed, "header inconsistent with its length");
  if (zero != 0) return bad(Errc::kMalformed, "reserved bits set");
  if (op < 1 || op > 3) return bad(Errc::kMalformed, "unknown op " + std::to_string(op));
  w.op = static_cast<WriteOp>(op);
  if (w.flags & ~uint32_t{kWriteFua}) return bad(Errc::kMalformed, "unknown flags");
  if (w.seq == 0) return bad(Errc::kMalformed, "seq 0");
  if (vlen > kMaxVectorLen) return bad(Errc::kTooLarge, "count vector too long");
  if (w.length == 0 || w.length > kMaxWriteLen) return bad(Errc::kTooLarge, "bad write length");
  if (w.offset > UINT64_MAX - w.length) return bad(Errc::kMalformed, "offset overflows");
  if (total != journal_record_size(w) + 4 * vlen)
    return bad(Errc::kMalformed, "length disagrees with its fields");
  w.vector.resize(vlen);
  for (auto& v : w.vector)
    if (!h.u32(v)) return bad(Errc::kMalformed, "vector truncated");
  if (w.op == WriteOp::kWrite && !h.view(w.length, w.data)) return bad(Errc::kMalformed, "data truncated");
  if (h.remaining() != 0) return bad(Errc::kMalformed, "trailing bytes");
  return rec;
}

}  // namespace tideway::proto

#include "proto/messages.h"

#include <cassert>
#include <string>
#include <type_traits>

#include "proto/bytes.h"

namespace tideway::proto {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
// clang 14 has no CTAD for aggregates yet (P1816): spell the guide out.
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

Error malformed(std::string what) { return Error{Errc::kMalformed, std::move(what)}; }
Error truncated(const char* msg) { return Error{Errc::kTruncated, std::string(msg) + " truncated"}; }

void put_positions(ByteWriter& w, const std::vector<StreamPosition>& v) {
  assert(v.size() <= kMaxStreams);
  w.u32(static_cast<uint32_t>(v.size()));
  for (const auto& p : v) {
    w.u32(p.stream);
    w.u64(p.seq);
  }
}

// Stream positions: at most kMaxStreams, each for a sequenced stream (not
// the control stream 0), each stream at most once (otherwise "what we have"
// would be ambiguous).
Result<std::vector<StreamPosition>> get_positions(ByteReader& r, const char* what) {
  uint32_t n = 0;
  if (!r.u32(n)) return truncated(what);
  if (n > kMaxStreams)
    return Error{Errc::kTooLarge, std::string(what) + ": " + std::to_string(n) + " stream positions"};
  std::vector<StreamPosition> v(n);
  for (size_t i = 0; i < v.size(); ++i) {
    if (!r.u32(v[i].stream) || !r.u64(v[i].seq)) return truncated(what);
    if (v[i].stream == kControlStream)
      return malformed(std::string(what) + ": position for the control stream");
    for (size_t j = 0; j < i; ++j)
      if (v[j].stream == v[i].stream)
        return malformed(std::string(what) + ": stream " + std::to_string(v[i].stream) +
                         " listed twice");
  }
  return v;
}

// A u16-length string: truncation and an over-long length are told apart.
Result<std::string> get_str16(ByteReader& r, size_t max_len, const char* what) {
  uint16_t n = 0;
  std::span<const uint8_t> b;
  if (!r.u16(n)) return truncated(what);
  if (n > max_len)
    return Error{Errc::kTooLarge, std::string(what) + ": string of " + std::to_string(n) + " bytes"};
  if (!r.view(n, b)) return truncated(what);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

bool is_zero(const SessionId& s) {
  for (uint8_t b : s)
    if (b != 0) return false;
  return true;
}

void put_records(ByteWriter& w, const std::vector<Record>& recs) {
  assert(recs.size() <= kMaxRecordsPerBatch);
  w.u32(static_cast<uint32_t>(recs.size()));
  for (const auto& rec : recs) {
    w.u64(rec.address);
    w.u8(static_cast<uint8_t>(rec.encoding));
    w.u32(static_cast<uint32_t>(rec.bytes.size()));
    w.bytes(rec.bytes);
  }
}

// Checks the invariants the protocol layer owns; codec encodings are opaque
// here but still bounded by the block size (an encoding never grows a block
// by more than a small header, so 2x is a generous bound).
Result<std::vector<Record>> get_records(ByteReader& r, uint32_t block_size, const char* what) {
  uint32_t n = 0;
  if (!r.u32(n)) return truncated(what);
  if (n > kMaxRecordsPerBatch)
    return Error{Errc::kTooLarge, std::string(what) + ": " + std::to_string(n) + " records"};
  std::vector<Record> recs(n);
  for (auto& rec : recs) {
    uint8_t enc = 0;
    uint32_t len = 0;
    if (!r.u64(rec.address) || !r.u8(enc) || !r.u32(len)) return truncated(what);
    if (enc > static_cast<uint8_t>(RecordEncoding::kZstd))
      return malformed(std::string(what) + ": unknown record encoding " + std::to_string(enc));
    rec.encoding = static_cast<RecordEncoding>(enc);
    if (rec.encoding == RecordEncoding::kRaw && len != block_size)
      return malformed(std::string(what) + ": raw record of " + std::to_string(len) + " bytes");
    if (rec.encoding == RecordEncoding::kZero && len != 0)
      return malformed(std::string(what) + ": zero record carries bytes");
    if (len > 2 * block_size) return Error{Errc::kTooLarge, std::string(what) + ": record too large"};
    if (rec.address > UINT64_MAX - block_size)
      return malformed(std::string(what) + ": record address overflows");
    if (!r.view(len, rec.bytes)) return truncated(what);
  }
  return recs;
}

std::string hex(uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  do {
    s.insert(s.begin(), digits[v & 15]);
    v >>= 4;
  } while (v != 0);
  return s;
}

bool valid_block_size(uint32_t bs) { return bs >= 512 && bs <= 65536 && (bs & (bs - 1)) == 0; }

}  // namespace

bool valid_volume_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLen || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

MessageType message_type(const Message& m) {
  return std::visit(
      Overloaded{
          [](const Hello&) { return MessageType::kHello; },
          [](const Welcome&) { return MessageType::kWelcome; },
          [](const ErrorMsg&) { return MessageType::kError; },
          [](const Heartbeat&) { return MessageType::kHeartbeat; },
          [](const StreamAck&) { return MessageType::kStreamAck; },
          [](const ReplWrite&) { return MessageType::kReplWrite; },
          [](const ReplFlush&) { return MessageType::kReplFlush; },
          [](const ReplAck&) { return MessageType::kReplAck; },
          [](const ReplAttach&) { return MessageType::kReplAttach; },
          [](const ReplAttached&) { return MessageType::kReplAttached; },
          [](const MigControl&) { return MessageType::kMigControl; },
          [](const MigPages&) { return MessageType::kMigPages; },
          [](const DiskBlocks&) { return MessageType::kDiskBlocks; },
          [](const Probe&) { return MessageType::kProbe; },
      },
      m);
}

std::vector<uint8_t> encode_payload(const Message& m) {
  std::vector<uint8_t> out;
  ByteWriter w(out);
  std::visit(
      Overloaded{
          [&](const Hello& h) {
            assert(h.site.size() <= kMaxNameLen);
            w.u16(h.min_version);
            w.u16(h.max_version);
            w.u64(h.features);
            w.bytes(h.session.data(), h.session.size());
            w.str16(h.site);
            put_positions(w, h.received);
          },
          [&](const Welcome& h) {
            assert(h.site.size() <= kMaxNameLen);
            w.u16(h.version);
            w.u64(h.features);
            w.bytes(h.session.data(), h.session.size());
            w.u8(h.resumed ? 1 : 0);
            w.str16(h.site);
            put_positions(w, h.received);
          },
          [&](const ErrorMsg& e) {
            w.u32(static_cast<uint32_t>(e.code));
            w.str16(e.reason.size() <= kMaxReasonLen ? e.reason : e.reason.substr(0, kMaxReasonLen));
          },
          [&](const Heartbeat& h) {
            w.u64(h.sent_ns);
            w.u64(h.echo_ns);
          },
          [&](const StreamAck& a) { put_positions(w, a.acked); },
          [&](const ReplWrite& x) {
            const bool encoded = (x.flags & kWriteEncoded) != 0;
            assert(x.vector.size() <= kMaxVectorLen);
            assert(x.length <= kMaxWriteLen);
            assert(!encoded || repl_encodable(x.op, x.volume, x.offset, x.length));
            assert(encoded ? !x.data.empty() && x.data.size() <= kMaxEncodedWriteLen
                           : x.op == WriteOp::kWrite ? x.data.size() == x.length : x.data.empty());
            w.u32(x.writer);
            w.u32(x.volume);
            w.u64(x.seq);
            w.u8(static_cast<uint8_t>(x.vector.size()));
            for (uint32_t v : x.vector) w.u32(v);
            w.u8(static_cast<uint8_t>(x.op));
            w.u32(x.flags);
            w.u64(x.offset);
            w.u32(x.length);
            if (encoded) w.u32(static_cast<uint32_t>(x.data.size()));
            w.bytes(x.data);
          },
          [&](const ReplFlush& f) {
            w.u32(f.writer);
            w.u32(f.volume);
            w.u64(f.seq);
          },
          [&](const ReplAck& a) {
            w.u32(a.writer);
            w.u32(a.volume);
            w.u64(a.seq);
          },
          [&](const ReplAttach& a) {
            assert(a.size > 0 && valid_volume_name(a.name));
            w.u32(a.writer);
            w.u32(a.volume);
            w.u64(a.size);
            w.str16(a.name);
          },
          [&](const ReplAttached& a) {
            assert(a.reason.size() <= kMaxReasonLen);
            w.u32(a.writer);
            w.u32(a.volume);
            w.u8(static_cast<uint8_t>(a.status));
            w.u64(a.durable_seq);
            w.str16(a.reason);
          },
          [&](const MigControl& c) {
            w.u32(c.migration);
            w.u8(static_cast<uint8_t>(c.op));
            w.u32(c.iteration);
            w.u64(c.pages_sent);
            w.u64(c.pages_dirtied);
            w.u64(c.pages_remaining);
            w.u32(static_cast<uint32_t>(c.detail.size()));
            w.bytes(c.detail);
          },
          [&](const MigPages& p) {
            assert(p.page_cuts.size() <= kMaxRecordsPerBatch);
            assert(p.page_cuts.empty() == p.batch.empty());
            w.u32(p.migration);
            w.u64(p.stream_offset);
            w.u32(static_cast<uint32_t>(p.opaque.size()));
            w.bytes(p.opaque);
            w.u32(static_cast<uint32_t>(p.page_cuts.size()));
            for (uint32_t c : p.page_cuts) w.u32(c);
            w.u32(static_cast<uint32_t>(p.batch.size()));
            w.bytes(p.batch);
          },
          [&](const DiskBlocks& d) {
            assert(valid_block_size(d.block_size));
            w.u32(d.volume);
            w.u32(d.block_size);
            put_records(w, d.records);
          },
          [&](const Probe& p) {
            w.u64(p.sent_ns);
            w.u64(p.index);
            w.bytes(p.padding);
          },
      },
      m);
  assert(out.size() <= kMaxPayload);
  return out;
}

namespace {

Result<Message> decode_body(MessageType type, ByteReader& r) {
  switch (type) {
    case MessageType::kHello: {
      Hello h;
      std::span<const uint8_t> sid;
      if (!r.u16(h.min_version) || !r.u16(h.max_version) || !r.u64(h.features) ||
          !r.view(h.session.size(), sid))
        return truncated("HELLO");
      std::copy(sid.begin(), sid.end(), h.session.begin());
      auto site = get_str16(r, kMaxNameLen, "HELLO site");
      if (!site) return site.error();
      h.site = std::move(site).value();
      auto pos = get_positions(r, "HELLO");
      if (!pos) return pos.error();
      h.received = std::move(pos).value();
      if (h.min_version > h.max_version) return malformed("HELLO: min_version > max_version");
      if (is_zero(h.session) && !h.received.empty())
        return malformed("HELLO: new session with stream positions");
      return Message{std::move(h)};
    }
    case MessageType::kWelcome: {
      Welcome h;
      std::span<const uint8_t> sid;
      uint8_t resumed = 0;
      if (!r.u16(h.version) || !r.u64(h.features) || !r.view(h.session.size(), sid) ||
          !r.u8(resumed))
        return truncated("WELCOME");
      if (resumed > 1) return malformed("WELCOME: resumed flag not 0/1");
      h.resumed = resumed == 1;
      std::copy(sid.begin(), sid.end(), h.session.begin());
      auto site = get_str16(r, kMaxNameLen, "WELCOME site");
      if (!site) return site.error();
      h.site = std::move(site).value();
      auto pos = get_positions(r, "WELCOME");
      if (!pos) return pos.error();
      h.received = std::move(pos).value();
      if (h.resumed && is_zero(h.session)) return malformed("WELCOME: resumed the zero session");
      if (!h.resumed && !h.received.empty())
        return malformed("WELCOME: new session with stream positions");
      return Message{std::move(h)};
    }
    case MessageType::kError: {
      ErrorMsg e;
      uint32_t code = 0;
      if (!r.u32(code)) return truncated("ERROR");
      if (code < 1 || code > static_cast<uint32_t>(ErrorCode::kShuttingDown))
        return malformed("ERROR: unknown code " + std::to_string(code));
      e.code = static_cast<ErrorCode>(code);
      auto reason = get_str16(r, kMaxReasonLen, "ERROR reason");
      if (!reason) return reason.error();
      e.reason = std::move(reason).value();
      return Message{std::move(e)};
    }
    case MessageType::kHeartbeat: {
      Heartbeat h;
      if (!r.u64(h.sent_ns) || !r.u64(h.echo_ns)) return truncated("HEARTBEAT");
      return Message{h};
    }
    case MessageType::kStreamAck: {
      StreamAck a;
      auto pos = get_positions(r, "STREAM_ACK");
      if (!pos) return pos.error();
      a.acked = std::move(pos).value();
      return Message{std::move(a)};
    }
    case MessageType::kReplWrite: {
      ReplWrite x;
      uint8_t vlen = 0, op = 0;
      if (!r.u32(x.writer) || !r.u32(x.volume) || !r.u64(x.seq) || !r.u8(vlen))
        return truncated("REPL_WRITE");
      if (vlen > kMaxVectorLen) return Error{Errc::kTooLarge, "REPL_WRITE: count vector too long"};
      x.vector.resize(vlen);
      for (auto& v : x.vector)
        if (!r.u32(v)) return truncated("REPL_WRITE");
      if (!r.u8(op) || !r.u32(x.flags) || !r.u64(x.offset) || !r.u32(x.length))
        return truncated("REPL_WRITE");
      if (op < 1 || op > 3) return malformed("REPL_WRITE: unknown op " + std::to_string(op));
      x.op = static_cast<WriteOp>(op);
      if (x.flags & ~kKnownWriteFlags) return malformed("REPL_WRITE: unknown flags");
      if (x.seq == 0) return malformed("REPL_WRITE: seq 0");
      if (x.length == 0 || x.length > kMaxWriteLen)
        return Error{Errc::kTooLarge, "REPL_WRITE: length " + std::to_string(x.length)};
      if (x.offset > UINT64_MAX - x.length) return malformed("REPL_WRITE: offset overflows");
      if (x.flags & kWriteEncoded) {
        if (!repl_encodable(x.op, x.volume, x.offset, x.length))
          return malformed("REPL_WRITE: encoded, but not a page-aligned write within the codec's address range");
        uint32_t elen = 0;
        if (!r.u32(elen)) return truncated("REPL_WRITE");
        if (elen == 0) return malformed("REPL_WRITE: empty codec batch");
        if (elen > kMaxEncodedWriteLen)
          return Error{Errc::kTooLarge, "REPL_WRITE: codec batch of " + std::to_string(elen) + " bytes"};
        if (!r.view(elen, x.data)) return truncated("REPL_WRITE batch");
      } else if (x.op == WriteOp::kWrite && !r.view(x.length, x.data)) {
        return truncated("REPL_WRITE data");
      }
      return Message{std::move(x)};
    }
    case MessageType::kReplFlush: {
      ReplFlush f;
      if (!r.u32(f.writer) || !r.u32(f.volume) || !r.u64(f.seq)) return truncated("REPL_FLUSH");
      return Message{f};
    }
    case MessageType::kReplAck: {
      ReplAck a;
      if (!r.u32(a.writer) || !r.u32(a.volume) || !r.u64(a.seq)) return truncated("REPL_ACK");
      return Message{a};
    }
    case MessageType::kReplAttach: {
      ReplAttach a;
      if (!r.u32(a.writer) || !r.u32(a.volume) || !r.u64(a.size)) return truncated("REPL_ATTACH");
      auto name = get_str16(r, kMaxNameLen, "REPL_ATTACH name");
      if (!name) return name.error();
      a.name = std::move(name).value();
      if (a.size == 0) return malformed("REPL_ATTACH: size 0");
      if (!valid_volume_name(a.name)) return malformed("REPL_ATTACH: bad volume name");
      return Message{std::move(a)};
    }
    case MessageType::kReplAttached: {
      ReplAttached a;
      uint8_t status = 0;
      if (!r.u32(a.writer) || !r.u32(a.volume) || !r.u8(status) || !r.u64(a.durable_seq))
        return truncated("REPL_ATTACHED");
      if (status > static_cast<uint8_t>(AttachStatus::kReattach))
        return malformed("REPL_ATTACHED: unknown status " + std::to_string(status));
      a.status = static_cast<AttachStatus>(status);
      auto reason = get_str16(r, kMaxReasonLen, "REPL_ATTACHED reason");
      if (!reason) return reason.error();
      a.reason = std::move(reason).value();
      if (a.status == AttachStatus::kOk && !a.reason.empty())
        return malformed("REPL_ATTACHED: reason on success");
      return Message{std::move(a)};
    }
    case MessageType::kMigControl: {
      MigControl c;
      uint8_t op = 0;
      uint32_t dlen = 0;
      if (!r.u32(c.migration) || !r.u8(op) || !r.u32(c.iteration) || !r.u64(c.pages_sent) ||
          !r.u64(c.pages_dirtied) || !r.u64(c.pages_remaining) || !r.u32(dlen))
        return truncated("MIG_CONTROL");
      if (op < 1 || op > kMaxMigOp)
        return malformed("MIG_CONTROL: unknown op " + std::to_string(op));
      c.op = static_cast<MigOp>(op);
      if (dlen > kMaxPayload) return Error{Errc::kTooLarge, "MIG_CONTROL: detail too large"};
      if (!r.view(dlen, c.detail)) return truncated("MIG_CONTROL detail");
      return Message{c};
    }
    case MessageType::kMigPages: {
      MigPages p;
      uint32_t olen = 0, ncuts = 0;
      if (!r.u32(p.migration) || !r.u64(p.stream_offset) || !r.u32(olen)) return truncated("MIG_PAGES");
      if (olen > kMaxPayload) return Error{Errc::kTooLarge, "MIG_PAGES: opaque bytes too large"};
      if (!r.view(olen, p.opaque) || !r.u32(ncuts)) return truncated("MIG_PAGES");
      if (ncuts > kMaxRecordsPerBatch)
        return Error{Errc::kTooLarge, "MIG_PAGES: " + std::to_string(ncuts) + " pages"};
      p.page_cuts.resize(ncuts);
      for (uint32_t& c : p.page_cuts) {
        if (!r.u32(c)) return truncated("MIG_PAGES cuts");
        if (c > olen) return malformed("MIG_PAGES: page cut past the opaque bytes");
        if (&c != p.page_cuts.data() && c < (&c)[-1]) return malformed("MIG_PAGES: page cuts out of order");
      }
      uint32_t blen = 0;
      if (!r.u32(blen)) return truncated("MIG_PAGES");
      if (blen > kMaxPayload) return Error{Errc::kTooLarge, "MIG_PAGES: batch too large"};
      if (!r.view(blen, p.batch)) return truncated("MIG_PAGES batch");
      if (p.page_cuts.empty() != p.batch.empty())
        return malformed(ncuts ? "MIG_PAGES: pages without a batch" : "MIG_PAGES: batch without pages");
      if (p.stream_offset > UINT64_MAX - olen - uint64_t{ncuts} * kPageSize)
        return malformed("MIG_PAGES: stream offset overflows");
      return Message{std::move(p)};
    }
    case MessageType::kDiskBlocks: {
      DiskBlocks d;
      if (!r.u32(d.volume) || !r.u32(d.block_size)) return truncated("DISK_BLOCKS");
      if (!valid_block_size(d.block_size))
        return malformed("DISK_BLOCKS: block size " + std::to_string(d.block_size));
      auto recs = get_records(r, d.block_size, "DISK_BLOCKS");
      if (!recs) return recs.error();
      d.records = std::move(recs).value();
      return Message{std::move(d)};
    }
    case MessageType::kProbe: {
      Probe p;
      if (!r.u64(p.sent_ns) || !r.u64(p.index)) return truncated("PROBE");
      r.view(r.remaining(), p.padding);
      return Message{p};
    }
  }
  return Error{Errc::kUnknownType, "message type " + std::to_string(static_cast<int>(type))};
}

}  // namespace

Result<Message> decode_payload(MessageType type, std::span<const uint8_t> payload) {
  if (payload.size() > kMaxPayload) return Error{Errc::kTooLarge, "payload too large"};
  ByteReader r(payload);
  auto m = decode_body(type, r);
  if (!m) return m;
  if (r.remaining() != 0)
    return Error{Errc::kTrailingBytes,
                 std::string(type_name(type)) + ": " + std::to_string(r.remaining()) + " trailing bytes"};
  return m;
}

std::vector<uint8_t> encode_message(const Message& m, uint32_t stream, uint64_t seq, uint16_t flags) {
  FrameHeader h;
  h.type = message_type(m);
  h.stream = stream;
  h.seq = seq;
  h.flags = flags;
  return encode_frame(h, encode_payload(m));
}

Result<Agreement> negotiate(uint16_t our_min, uint16_t our_max, uint64_t our_features,
                            const Hello& theirs, uint64_t required_features) {
  const uint16_t lo = std::max(our_min, theirs.min_version);
  const uint16_t hi = std::min(our_max, theirs.max_version);
  if (lo > hi)
    return Error{Errc::kIncompatible, "no common protocol version: we speak " + std::to_string(our_min) +
                                          ".." + std::to_string(our_max) + ", peer speaks " +
                                          std::to_string(theirs.min_version) + ".." +
                                          std::to_string(theirs.max_version)};
  const uint64_t common = our_features & theirs.features;
  const uint64_t missing = required_features & ~common;
  if (missing != 0)
    return Error{Errc::kIncompatible, "peer lacks required features (bits 0x" +
                                          hex(missing) + ")"};
  return Agreement{hi, common};
}

}  // namespace tideway::proto

#include "proto/nbd.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdio>

namespace tideway::proto::nbd {
namespace {

// Big-endian counterparts of ByteWriter/ByteReader: NBD is network order.
class BeWriter {
 public:
  explicit BeWriter(std::vector<uint8_t>& out) : out_(out) {}
  void u16(uint16_t v) { put(v); }
  void u32(uint32_t v) { put(v); }
  void u64(uint64_t v) { put(v); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str(std::string_view s) { out_.insert(out_.end(), s.begin(), s.end()); }

 private:
  template <typename T>
  void put(T v) {
    for (size_t i = sizeof(T); i-- > 0;) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t>& out_;
};

// Never reads past its span: a short read is a failed read.
class BeReader {
 public:
  explicit BeReader(std::span<const uint8_t> in) : in_(in) {}
  bool u16(uint16_t& v) { return get(v); }
  bool u32(uint32_t& v) { return get(v); }
  bool u64(uint64_t& v) { return get(v); }
  bool str(size_t n, std::string& s) {
    if (n > remaining()) return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  template <typename T>
  bool get(T& v) {
    if (remaining() < sizeof(T)) return false;
    T r = 0;
    for (size_t i = 0; i < sizeof(T); ++i) r = static_cast<T>((r << 8) | in_[pos_ + i]);
    v = r;
    pos_ += sizeof(T);
    return true;
  }
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

template <size_t N>
std::array<uint8_t, N> to_array(const std::vector<uint8_t>& v) {
  assert(v.size() == N);  // encoders build exactly N bytes
  std::array<uint8_t, N> a{};
  std::copy_n(v.begin(), std::min(N, v.size()), a.begin());
  return a;
}

Error exact_size(std::span<const uint8_t> in, size_t want, const char* what) {
  return {in.size() < want ? Errc::kTruncated : Errc::kTrailingBytes,
          std::string(what) + ": " + std::to_string(in.size()) + " bytes, want " + std::to_string(want)};
}

std::string hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

// Export names and messages: bounded, no NUL (the spec's string rules; UTF-8
// validity is not checked, a name only has to compare equal).
bool valid_string(std::string_view s) {
  return s.size() <= kMaxStringLen && s.find('\0') == std::string_view::npos;
}

}  // namespace

Err errno_to_nbd(int err) {
  switch (err) {
    case 0: return Err::kOk;
    case EPERM:
    case EROFS: return Err::kPerm;
    case ENOMEM: return Err::kNoMem;
    case EINVAL: return Err::kInval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return Err::kNoSpc;
    case EOVERFLOW: return Err::kOverflow;
    case ENOTSUP: return Err::kNotSup;
    case ESHUTDOWN: return Err::kShutdown;
    default: return Err::kIo;
  }
}

// Handshake -----------------------------------------------------------------

std::array<uint8_t, kGreetingSize> encode_greeting(uint16_t handshake_flags) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u64(kNbdMagic);
  w.u64(kOptMagic);
  w.u16(handshake_flags);
  return to_array<kGreetingSize>(out);
}

Result<uint16_t> decode_greeting(std::span<const uint8_t> in) {
  if (in.size() != kGreetingSize) return exact_size(in, kGreetingSize, "greeting");
  BeReader r(in);
  uint64_t m1 = 0, m2 = 0;
  uint16_t flags = 0;
  r.u64(m1);
  r.u64(m2);
  r.u16(flags);
  if (m1 != kNbdMagic || m2 != kOptMagic) return Error{Errc::kBadMagic, "greeting: not a newstyle NBD server"};
  return flags;
}

std::array<uint8_t, kClientFlagsSize> encode_client_flags(uint32_t flags) {
  std::vector<uint8_t> out;
  BeWriter(out).u32(flags);
  return to_array<kClientFlagsSize>(out);
}

Result<uint32_t> decode_client_flags(std::span<const uint8_t> in, uint16_t server_flags) {
  if (in.size() != kClientFlagsSize) return exact_size(in, kClientFlagsSize, "client flags");
  uint32_t flags = 0;
  BeReader(in).u32(flags);
  const uint32_t known = kClientFixedNewstyle | kClientNoZeroes;
  if ((flags & ~known) != 0)
    return Error{Errc::kUnknownFlags, "client flags: unknown bits " + hex(flags & ~known)};
  if ((flags & kClientNoZeroes) != 0 && (server_flags & kFlagNoZeroes) == 0)
    return Error{Errc::kUnknownFlags, "client flags: NO_ZEROES without the server offering it"};
  return flags;
}

std::array<uint8_t, kOptionHeaderSize> encode_option_header(const OptionHeader& h) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u64(kOptMagic);
  w.u32(h.option);
  w.u32(h.length);
  return to_array<kOptionHeaderSize>(out);
}

Result<OptionHeader> decode_option_header(std::span<const uint8_t> in) {
  if (in.size() != kOptionHeaderSize) return exact_size(in, kOptionHeaderSize, "option header");
  BeReader r(in);
  uint64_t magic = 0;
  OptionHeader h;
  r.u64(magic);
  r.u32(h.option);
  r.u32(h.length);
  if (magic != kOptMagic) return Error{Errc::kBadMagic, "option header: magic is not IHAVEOPT"};
  if (h.length > kMaxOptionLength)
    return Error{Errc::kTooLarge, std::string("option ") + opt_name(h.option) + ": " +
                                      std::to_string(h.length) + " bytes of data, limit " +
                                      std::to_string(kMaxOptionLength)};
  return h;
}

Result<std::string> decode_export_name(std::span<const uint8_t> data) {
  std::string name(reinterpret_cast<const char*>(data.data()), data.size());
  if (!valid_string(name)) return Error{Errc::kMalformed, "export name: too long or contains NUL"};
  return name;
}

std::vector<uint8_t> encode_go(const GoRequest& req) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u32(static_cast<uint32_t>(req.name.size()));
  w.str(req.name);
  w.u16(static_cast<uint16_t>(req.info.size()));
  for (uint16_t i : req.info) w.u16(i);
  return out;
}

Result<GoRequest> decode_go(std::span<const uint8_t> data) {
  BeReader r(data);
  GoRequest req;
  uint32_t name_len = 0;
  if (!r.u32(name_len)) return Error{Errc::kTruncated, "GO/INFO: no name length"};
  if (name_len > kMaxStringLen) return Error{Errc::kTooLarge, "GO/INFO: export name longer than 4096 bytes"};
  if (!r.str(name_len, req.name)) return Error{Errc::kTruncated, "GO/INFO: name runs past the option data"};
  if (!valid_string(req.name)) return Error{Errc::kMalformed, "GO/INFO: export name contains NUL"};
  uint16_t count = 0;
  if (!r.u16(count)) return Error{Errc::kTruncated, "GO/INFO: no information request count"};
  if (count > kMaxInfoRequests) return Error{Errc::kTooLarge, "GO/INFO: too many information requests"};
  if (r.remaining() != size_t{count} * 2)
    return Error{r.remaining() < size_t{count} * 2 ? Errc::kTruncated : Errc::kTrailingBytes,
                 "GO/INFO: " + std::to_string(count) + " information requests but " +
                     std::to_string(r.remaining()) + " bytes left"};
  for (uint16_t i = 0; i < count; ++i) {
    uint16_t item = 0;
    r.u16(item);
    if (std::find(req.info.begin(), req.info.end(), item) != req.info.end())
      return Error{Errc::kMalformed, "GO/INFO: information request " + std::to_string(item) + " repeated"};
    req.info.push_back(item);
  }
  return req;
}

std::vector<uint8_t> encode_option_reply(uint32_t option, Rep type, std::span<const uint8_t> data) {
  std::vector<uint8_t> out;
  out.reserve(kOptionReplyHeaderSize + data.size());
  BeWriter w(out);
  w.u64(kOptReplyMagic);
  w.u32(option);
  w.u32(static_cast<uint32_t>(type));
  w.u32(static_cast<uint32_t>(data.size()));
  w.bytes(data);
  return out;
}

Result<OptionReplyHeader> decode_option_reply_header(std::span<const uint8_t> in) {
  if (in.size() != kOptionReplyHeaderSize) return exact_size(in, kOptionReplyHeaderSize, "option reply");
  BeReader r(in);
  uint64_t magic = 0;
  OptionReplyHeader h;
  r.u64(magic);
  r.u32(h.option);
  r.u32(h.type);
  r.u32(h.length);
  if (magic != kOptReplyMagic) return Error{Errc::kBadMagic, "option reply: bad magic"};
  if (h.length > kMaxOptionLength) return Error{Errc::kTooLarge, "option reply: data too long"};
  return h;
}

std::vector<uint8_t> encode_rep_server(std::string_view export_name) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u32(static_cast<uint32_t>(export_name.size()));
  w.str(export_name);
  return out;
}

std::vector<uint8_t> encode_info_export(uint64_t size, uint16_t tx_flags) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u16(static_cast<uint16_t>(Info::kExport));
  w.u64(size);
  w.u16(tx_flags);
  return out;
}

std::vector<uint8_t> encode_info_block_size(uint32_t min, uint32_t preferred, uint32_t max) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u16(static_cast<uint16_t>(Info::kBlockSize));
  w.u32(min);
  w.u32(preferred);
  w.u32(max);
  return out;
}

std::vector<uint8_t> encode_export_name_reply(uint64_t size, uint16_t tx_flags, bool no_zeroes) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u64(size);
  w.u16(tx_flags);
  if (!no_zeroes) out.resize(out.size() + kExportNameZeroes, 0);
  return out;
}

// Transmission --------------------------------------------------------------

std::array<uint8_t, kRequestSize> encode_request(const Request& req) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u32(kRequestMagic);
  w.u16(req.flags);
  w.u16(req.type);
  w.u64(req.cookie);
  w.u64(req.offset);
  w.u32(req.length);
  return to_array<kRequestSize>(out);
}

Result<Request> decode_request(std::span<const uint8_t> in) {
  if (in.size() != kRequestSize) return exact_size(in, kRequestSize, "request");
  BeReader r(in);
  uint32_t magic = 0;
  Request req;
  r.u32(magic);
  r.u16(req.flags);
  r.u16(req.type);
  r.u64(req.cookie);
  r.u64(req.offset);
  r.u32(req.length);
  if (magic != kRequestMagic) return Error{Errc::kBadMagic, "request: bad magic"};
  if (req.type == static_cast<uint16_t>(Cmd::kWrite) && req.length > kMaxRequestLength)
    return Error{Errc::kTooLarge, "request: WRITE of " + std::to_string(req.length) + " bytes, limit " +
                                      std::to_string(kMaxRequestLength)};
  return req;
}

std::array<uint8_t, kSimpleReplySize> encode_simple_reply(const SimpleReply& rep) {
  std::vector<uint8_t> out;
  BeWriter w(out);
  w.u32(kSimpleReplyMagic);
  w.u32(rep.error);
  w.u64(rep.cookie);
  return to_array<kSimpleReplySize>(out);
}

Result<SimpleReply> decode_simple_reply(std::span<const uint8_t> in) {
  if (in.size() != kSimpleReplySize) return exact_size(in, kSimpleReplySize, "simple reply");
  BeReader r(in);
  uint32_t magic = 0;
  SimpleReply rep;
  r.u32(magic);
  r.u32(rep.error);
  r.u64(rep.cookie);
  if (magic != kSimpleReplyMagic) return Error{Errc::kBadMagic, "reply: bad magic"};
  return rep;
}

const char* opt_name(uint32_t option) {
  switch (static_cast<Opt>(option)) {
    case Opt::kExportName: return "EXPORT_NAME";
    case Opt::kAbort: return "ABORT";
    case Opt::kList: return "LIST";
    case Opt::kStartTls: return "STARTTLS";
    case Opt::kInfo: return "INFO";
    case Opt::kGo: return "GO";
    case Opt::kStructuredReply: return "STRUCTURED_REPLY";
    case Opt::kListMetaContext: return "LIST_META_CONTEXT";
    case Opt::kSetMetaContext: return "SET_META_CONTEXT";
  }
  return "unknown";
}

const char* cmd_name(uint16_t type) {
  switch (static_cast<Cmd>(type)) {
    case Cmd::kRead: return "READ";
    case Cmd::kWrite: return "WRITE";
    case Cmd::kDisc: return "DISC";
    case Cmd::kFlush: return "FLUSH";
    case Cmd::kTrim: return "TRIM";
    case Cmd::kCache: return "CACHE";
    case Cmd::kWriteZeroes: return "WRITE_ZEROES";
    case Cmd::kBlockStatus: return "BLOCK_STATUS";
  }
  return "unknown";
}

}  // namespace tideway::proto::nbd

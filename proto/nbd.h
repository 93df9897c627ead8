// The NBD wire format (fixed newstyle handshake, simple replies), server
// side plus the client-side encoders the tests and fuzzers need. Pure code,
// no I/O. NBD is big-endian, so proto/bytes.h (little-endian) does not fit;
// nbd.cpp has its own bounded big-endian reader.
//
// Decoders are strict: fixed-size messages take exactly their size, magics
// must match, lengths are bounded by the limits below, and every variable
// option payload must be consumed exactly. Every encoding is canonical:
// whatever a decoder accepts, the matching encoder gives back byte for byte
// (the fuzz target checks this).
// Facts from the protocol spec: NetworkBlockDevice/nbd doc/proto.md.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace tideway::proto::nbd {

// Magics ------------------------------------------------------------------
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;       // "NBDMAGIC"
inline constexpr uint64_t kOptMagic = 0x49484156454f5054ull;       // "IHAVEOPT"
inline constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9ull;  // option replies
inline constexpr uint32_t kRequestMagic = 0x25609513u;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698u;

// Handshake flags (server, 16 bits) and client flags (32 bits).
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;
inline constexpr uint32_t kClientFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientNoZeroes = 1u << 1;

// Transmission flags (16 bits, sent with the export's size).
inline constexpr uint16_t kTxHasFlags = 1u << 0;
inline constexpr uint16_t kTxReadOnly = 1u << 1;
inline constexpr uint16_t kTxSendFlush = 1u << 2;
inline constexpr uint16_t kTxSendFua = 1u << 3;
inline constexpr uint16_t kTxRotational = 1u << 4;
inline constexpr uint16_t kTxSendTrim = 1u << 5;
inline constexpr uint16_t kTxSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kTxSendDf = 1u << 7;
inline constexpr uint16_t kTxCanMultiConn = 1u << 8;
inline constexpr uint16_t kTxSendFastZero = 1u << 11;

// Options the client may send while haggling.
enum class Opt : uint32_t {
  kExportName = 1,
  kAbort = 2,
  kList = 3,
  kStartTls = 5,
  kInfo = 6,
  kGo = 7,
  kStructuredReply = 8,
  kListMetaContext = 9,
  kSetMetaContext = 10,
};

// Option reply types; errors have bit 31 set.
enum class Rep : uint32_t {
  kAck = 1,
  kServer = 2,
  kInfo = 3,
  kErrUnsup = 0x80000001u,
  kErrPolicy = 0x80000002u,
  kErrInvalid = 0x80000003u,
  kErrPlatform = 0x80000004u,
  kErrTlsReqd = 0x80000005u,
  kErrUnknown = 0x80000006u,
  kErrShutdown = 0x80000007u,
  kErrBlockSizeReqd = 0x80000008u,
  kErrTooBig = 0x80000009u,
};

// Information items of NBD_REP_INFO (requested in NBD_OPT_INFO / NBD_OPT_GO).
enum class Info : uint16_t { kExport = 0, kName = 1, kDescription = 2, kBlockSize = 3 };

// Transmission commands and command flags.
enum class Cmd : uint16_t {
  kRead = 0,
  kWrite = 1,
  kDisc = 2,
  kFlush = 3,
  kTrim = 4,
  kCache = 5,
  kWriteZeroes = 6,
  kBlockStatus = 7,
};
inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;

// Error values of replies. The protocol fixes these numbers; they match
// Linux errno, but errno_to_nbd() maps explicitly anyway.
enum class Err : uint32_t {
  kOk = 0,
  kPerm = 1,
  kIo = 5,
  kNoMem = 12,
  kInval = 22,
  kNoSpc = 28,
  kOverflow = 75,
  kNotSup = 95,
  kShutdown = 108,
};
Err errno_to_nbd(int err);

// Sizes and limits ----------------------------------------------------------
inline constexpr size_t kGreetingSize = 18;          // magic, magic, flags
inline constexpr size_t kClientFlagsSize = 4;
inline constexpr size_t kOptionHeaderSize = 16;      // magic, option, length
inline constexpr size_t kOptionReplyHeaderSize = 20; // magic, option, type, length
inline constexpr size_t kRequestSize = 28;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kExportNameZeroes = 124;
inline constexpr size_t kMaxStringLen = 4096;        // export names, messages
// Option payloads we accept at all. The largest option we parse (GO/INFO)
// is 4 + 4096 + 2 + 2 * (a few info requests); anything near this bound is
// an attack, and the connection is closed rather than the data skipped.
inline constexpr uint32_t kMaxOptionLength = 16 * 1024;
inline constexpr uint16_t kMaxInfoRequests = 64;
// The largest READ/WRITE payload. 32 MiB is the size the spec says clients
// may always use; larger writes are treated as a denial of service.
inline constexpr uint32_t kMaxRequestLength = 32u << 20;

// Handshake -----------------------------------------------------------------

std::array<uint8_t, kGreetingSize> encode_greeting(uint16_t handshake_flags);
// Client side (tests): checks both magics, returns the handshake flags.
Result<uint16_t> decode_greeting(std::span<const uint8_t> in);

std::array<uint8_t, kClientFlagsSize> encode_client_flags(uint32_t flags);
// Rejects unknown bits and NO_ZEROES when the server did not offer it.
Result<uint32_t> decode_client_flags(std::span<const uint8_t> in, uint16_t server_flags);

struct OptionHeader {
  uint32_t option = 0;  // an Opt value, or one we do not know
  uint32_t length = 0;  // bytes of option data that follow
  bool operator==(const OptionHeader&) const = default;
};
std::array<uint8_t, kOptionHeaderSize> encode_option_header(const OptionHeader& h);
// Bad magic -> kBadMagic; length > kMaxOptionLength -> kTooLarge.
Result<OptionHeader> decode_option_header(std::span<const uint8_t> in);

// NBD_OPT_EXPORT_NAME: the whole option data is the name.
Result<std::string> decode_export_name(std::span<const uint8_t> data);

// NBD_OPT_INFO and NBD_OPT_GO share this payload.
struct GoRequest {
  std::string name;
  std::vector<uint16_t> info;  // requested Info items, each at most once
  bool operator==(const GoRequest&) const = default;
};
std::vector<uint8_t> encode_go(const GoRequest& r);
Result<GoRequest> decode_go(std::span<const uint8_t> data);

struct OptionReplyHeader {
  uint32_t option = 0;
  uint32_t type = 0;    // a Rep value
  uint32_t length = 0;  // bytes of reply data that follow
  bool operator==(const OptionReplyHeader&) const = default;
};
std::vector<uint8_t> encode_option_reply(uint32_t option, Rep type, std::span<const uint8_t> data = {});
// Client side (tests): the 20-byte header only; length bounded by kMaxOptionLength.
Result<OptionReplyHeader> decode_option_reply_header(std::span<const uint8_t> in);

// Reply data for NBD_REP_SERVER and NBD_REP_INFO items.
std::vector<uint8_t> encode_rep_server(std::string_view export_name);
std::vector<uint8_t> encode_info_export(uint64_t size, uint16_t tx_flags);
std::vector<uint8_t> encode_info_block_size(uint32_t min, uint32_t preferred, uint32_t max);

// The reply that ends NBD_OPT_EXPORT_NAME: size, flags, and 124 zero bytes
// unless the client negotiated NO_ZEROES.
std::vector<uint8_t> encode_export_name_reply(uint64_t size, uint16_t tx_flags, bool no_zeroes);

// Transmission --------------------------------------------------------------

struct Request {
  uint16_t flags = 0;
  uint16_t type = 0;    // a Cmd value, or one we do not know (-> EINVAL)
  uint64_t cookie = 0;  // the "handle": echoed in the reply
  uint64_t offset = 0;
  uint32_t length = 0;
  bool operator==(const Request&) const = default;
};
std::array<uint8_t, kRequestSize> encode_request(const Request& r);
// Frame-level checks only (they decide whether the stream can go on): bad
// magic -> kBadMagic; a WRITE whose payload exceeds kMaxRequestLength ->
// kTooLarge. Unknown commands and flags decode fine: the server answers
// them with EINVAL instead of closing.
Result<Request> decode_request(std::span<const uint8_t> in);

struct SimpleReply {
  uint32_t error = 0;  // an Err value
  uint64_t cookie = 0;
  bool operator==(const SimpleReply&) const = default;
};
std::array<uint8_t, kSimpleReplySize> encode_simple_reply(const SimpleReply& r);
Result<SimpleReply> decode_simple_reply(std::span<const uint8_t> in);

// Names for logs.
const char* opt_name(uint32_t option);
const char* cmd_name(uint16_t type);

}  // namespace tideway::proto::nbd

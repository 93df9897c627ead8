// fuzz_nbd: the NBD decoders (proto/nbd.h). The first byte picks the
// decoder, the rest is its input. Oracle: a decode error carries a reason;
// whatever decodes re-encodes to exactly the input (every NBD encoding here
// is canonical) and satisfies the decoder's bounds. Mode 8 feeds a whole
// client byte stream through the handshake and transmission decoders the
// way the server consumes it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <vector>

#include "proto/nbd.h"

using namespace tideway::proto;
using namespace tideway::proto::nbd;

namespace {

[[noreturn]] void fail(const char* what, unsigned mode) {
  std::fprintf(stderr, "fuzz_nbd oracle violated (mode %u): %s\n", mode, what);
  std::abort();
}
#define NBD_CHECK(cond) \
  do {                  \
    if (!(cond)) fail(#cond, mode); \
  } while (0)

template <typename A>
bool same(const A& encoded, std::span<const uint8_t> in) {
  // Compare as bytes: std::string holds (signed) char.
  return encoded.size() == in.size() &&
         std::equal(encoded.begin(), encoded.end(), in.begin(),
                    [](auto a, uint8_t b) { return static_cast<uint8_t>(a) == b; });
}

template <typename T>
bool has_reason(const Result<T>& r) {
  return r.ok() || !r.error().detail.empty();
}

void one(unsigned mode, std::span<const uint8_t> in) {
  switch (mode) {
    case 0: {
      auto g = decode_greeting(in);
      NBD_CHECK(has_reason(g));
      if (g) NBD_CHECK(same(encode_greeting(*g), in));
      break;
    }
    case 1: {
      if (in.empty()) return;
      const uint16_t server = in[0] & 3;
      auto f = decode_client_flags(in.subspan(1), server);
      NBD_CHECK(has_reason(f));
      if (f) {
        NBD_CHECK((*f & ~3u) == 0);
        NBD_CHECK((*f & kClientNoZeroes) == 0 || (server & kFlagNoZeroes) != 0);
        NBD_CHECK(same(encode_client_flags(*f), in.subspan(1)));
      }
      break;
    }
    case 2: {
      auto h = decode_option_header(in);
      NBD_CHECK(has_reason(h));
      if (h) {
        NBD_CHECK(h->length <= kMaxOptionLength);
        NBD_CHECK(same(encode_option_header(*h), in));
      }
      break;
    }
    case 3: {
      auto g = decode_go(in);
      NBD_CHECK(has_reason(g));
      if (g) {
        NBD_CHECK(g->name.size() <= kMaxStringLen && g->info.size() <= kMaxInfoRequests);
        NBD_CHECK(same(encode_go(*g), in));
        auto again = decode_go(encode_go(*g));
        NBD_CHECK(again.ok() && *again == *g);
      }
      break;
    }
    case 4: {
      auto n = decode_export_name(in);
      NBD_CHECK(has_reason(n));
      if (n) NBD_CHECK(n->size() <= kMaxStringLen && same(*n, in));
      break;
    }
    case 5: {
      auto r = decode_request(in);
      NBD_CHECK(has_reason(r));
      if (r) {
        NBD_CHECK(r->type != static_cast<uint16_t>(Cmd::kWrite) || r->length <= kMaxRequestLength);
        NBD_CHECK(same(encode_request(*r), in));
      }
      break;
    }
    case 6: {
      auto r = decode_simple_reply(in);
      NBD_CHECK(has_reason(r));
      if (r) NBD_CHECK(same(encode_simple_reply(*r), in));
      break;
    }
    case 7: {
      auto h = decode_option_reply_header(in);
      NBD_CHECK(has_reason(h));
      if (h) {
        const std::vector<uint8_t> data(h->length, 0);
        const auto enc = encode_option_reply(h->option, static_cast<Rep>(h->type), data);
        NBD_CHECK(same(std::span(enc).first(kOptionReplyHeaderSize), in));
      }
      break;
    }
    case 8: {
      // Client flags, options until GO / EXPORT_NAME, then requests (with
      // WRITE payloads skipped), as the server reads them.
      size_t pos = 0;
      const auto take = [&](size_t n) -> std::span<const uint8_t> {
        if (in.size() - pos < n) return {};
        auto s = in.subspan(pos, n);
        pos += n;
        return s;
      };
      auto cf = take(kClientFlagsSize);
      if (cf.empty() || !decode_client_flags(cf, kFlagFixedNewstyle | kFlagNoZeroes)) return;
      for (;;) {
        auto hb = take(kOptionHeaderSize);
        if (hb.empty()) return;
        auto h = decode_option_header(hb);
        if (!h) return;
        auto data = take(h->length);
        if (data.size() != h->length) return;
        if (h->option == static_cast<uint32_t>(Opt::kExportName)) {
          if (!decode_export_name(data)) return;
          break;
        }
        if (h->option == static_cast<uint32_t>(Opt::kGo)) {
          if (decode_go(data)) break;
        } else if (h->option == static_cast<uint32_t>(Opt::kInfo)) {
          (void)decode_go(data);
        }
      }
      for (;;) {
        auto rb = take(kRequestSize);
        if (rb.empty()) return;
        auto r = decode_request(rb);
        if (!r) return;
        NBD_CHECK(same(encode_request(*r), rb));
        if (r->type == static_cast<uint16_t>(Cmd::kWrite) && take(r->length).size() != r->length) return;
      }
    }
    default:
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // libFuzzer's buffer is exactly `size` bytes: reading past it is an ASan
  // error, so decoders must stay inside their span.
  one(data[0] % 9, std::span<const uint8_t>(data + 1, size - 1));
  return 0;
}

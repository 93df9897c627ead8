// fuzz_arp: the Ethernet/ARP frame decoder and the MAC / IPv4 text parsers
// (operator input to `tideway garp`). The first byte picks the mode:
//   0: the rest is a frame as an AF_PACKET socket would read it
//   1: the rest is MAC text     2: the rest is IPv4 text
// Oracles: an error carries a reason; a decoded frame re-encodes to exactly
// its input (canonical), never has a multicast sender, and every prefix
// shorter than 42 bytes is rejected; the gratuitous ARP built from a decoded
// sender decodes again and is gratuitous; parsed text formats and re-parses
// to the same value.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "proto/arp.h"

using namespace tideway::proto;
using namespace tideway::proto::arp;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "fuzz_arp oracle violated: %s\n", what);
  std::abort();
}
#define CHECK(c) \
  do {           \
    if (!(c)) fail(#c); \
  } while (0)

void check_frame(std::span<const uint8_t> in) {
  auto f = decode_frame(in);
  if (!f) {
    CHECK(!f.error().detail.empty());
    return;
  }
  CHECK(f->wire_size == in.size());
  CHECK(in.size() >= kArpFrameSize && in.size() <= kMinEthFrameSize);
  CHECK(!is_multicast(f->eth_src) && !is_multicast(f->sender_mac));
  const auto again = encode_frame(*f);
  CHECK(again.size() == in.size() && std::equal(again.begin(), again.end(), in.begin()));
  CHECK(!decode_frame(in.first(kArpFrameSize - 1)).ok());
  CHECK(!decode_frame(in.first(in.size() % kArpFrameSize % kEthHeaderSize)).ok());
  for (Op form : {Op::kRequest, Op::kReply}) {
    const ArpFrame g = gratuitous_arp(f->sender_mac, f->sender_ip, form);
    CHECK(is_gratuitous(g));
    auto back = decode_frame(encode_frame(g));
    CHECK(back.ok() && *back == g);
  }
}

void check_text(std::string_view text, bool mac) {
  if (mac) {
    auto m = parse_mac(text);
    if (!m) {
      CHECK(m.error().code == Errc::kInvalid && !m.error().detail.empty());
      return;
    }
    CHECK(text.size() == 17);
    auto again = parse_mac(format_mac(*m));
    CHECK(again.ok() && *again == *m);
  } else {
    auto ip = parse_ipv4(text);
    if (!ip) {
      CHECK(ip.error().code == Errc::kInvalid && !ip.error().detail.empty());
      return;
    }
    CHECK(format_ipv4(*ip) == text);  // canonical: no leading zeros, nothing extra
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::span<const uint8_t> rest(data + 1, size - 1);
  const std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());
  switch (data[0] % 3) {
    case 0: check_frame(rest); break;
    case 1: check_text(text, true); break;
    default: check_text(text, false); break;
  }
  return 0;
}

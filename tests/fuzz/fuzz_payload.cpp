// fuzz_payload: the first byte is the message type, the rest the payload.
// Exercises every message decoder directly (no frame, no crc to get past).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tests/fuzz/fuzz_check.h"

using namespace tideway::proto;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto type = static_cast<MessageType>(data[0]);
  // libFuzzer's buffer is exactly `size` bytes, so any read past the payload
  // is an ASan heap-buffer-overflow.
  const std::span<const uint8_t> payload(data + 1, size - 1);
  if (!is_known_type(data[0])) {
    auto m = decode_payload(type, payload);
    FUZZ_CHECK(!m.ok(), type);
    FUZZ_CHECK(m.error().code == Errc::kUnknownType || m.error().code == Errc::kTooLarge, type);
    return 0;
  }
  fuzz::check_payload(type, payload);
  return 0;
}

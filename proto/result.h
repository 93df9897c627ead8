// Result<T>: a value or a decode error. Decoders never throw and never crash
// on hostile input; they return one of these instead.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tideway::proto {

enum class Errc {
  kTruncated = 1,      // fewer bytes than the encoding needs
  kBadMagic,           // not a Tideway frame
  kBadVersion,         // frame version outside what we speak
  kUnknownType,        // message type we do not know
  kUnknownFlags,       // flag bits we do not know
  kTooLarge,           // a length beyond the protocol's bounds
  kBadChecksum,        // CRC32C mismatch
  kMalformed,          // fields inconsistent with each other
  kTrailingBytes,      // payload longer than its message
  kIncompatible,       // handshake: no common version or features
  kSystem,             // an operating-system call failed (detail says which)
  kInvalid,            // a bad argument or configuration (detail says why)
};

const char* errc_name(Errc e);

struct Error {
  Errc code;
  std::string detail;
};

template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}            // NOLINT: implicit on purpose
  Result(Error error) : v_(std::move(error)) {}        // NOLINT
  Result(Errc code, std::string detail) : v_(Error{code, std::move(detail)}) {}

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const Error& error() const { assert(!ok()); return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Success with no value, or an error.
template <>
class Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  Result(Errc code, std::string detail) : error_{code, std::move(detail)}, ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { assert(!ok_); return error_; }

 private:
  Error error_{};
  bool ok_ = true;
};

}  // namespace tideway::proto

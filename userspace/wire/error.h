// Decode results. The codec never throws out of its public API: every
// decode returns a Result that either holds the value or a DecodeError
// naming the payload, the offset and what was wrong.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <variant>

namespace covey::wire {

struct DecodeError {
  std::string payload;  // e.g. "SA TEK", "ISAKMP header", "KD key packet"
  std::size_t offset;   // octet offset in the datagram (or in the buffer given)
  std::string reason;

  // "SA TEK payload at offset 84: SRC ID Data Len 200 runs past the payload end"
  std::string message() const;
};

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(DecodeError error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const DecodeError& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, DecodeError> v_;
};

}  // namespace covey::wire

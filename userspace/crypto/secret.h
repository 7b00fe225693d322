// SecretBytes: key material (SKEYIDs, g^xy, cipher keys) that is wiped when it dies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/bytes.h"

namespace covey::crypto {

// Fixed-size buffer: it never reallocates, so no unwiped copy is left behind in
// freed memory. Converts to ByteView to feed prf(), cbc_encrypt() and friends.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::size_t size) : bytes_(size) {}
  explicit SecretBytes(ByteView bytes) : bytes_(bytes.begin(), bytes.end()) {}
  SecretBytes(const SecretBytes& other) : bytes_(other.bytes_) {}
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(const SecretBytes& other);
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  ~SecretBytes() { wipe(); }

  std::uint8_t* data() { return bytes_.data(); }
  const std::uint8_t* data() const { return bytes_.data(); }
  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  ByteView view() const { return bytes_; }
  operator ByteView() const { return bytes_; }  // NOLINT(google-explicit-constructor)

  // The first n bytes (n <= size()), e.g. a cipher key cut from SKEYID_e.
  SecretBytes prefix(std::size_t n) const { return SecretBytes(view().first(n)); }

 private:
  void wipe();
  std::vector<std::uint8_t> bytes_;
};

// Compares MACs and HASH payloads in time independent of where they differ.
bool equal_constant_time(ByteView a, ByteView b);

}  // namespace covey::crypto

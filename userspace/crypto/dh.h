// Diffie-Hellman for the KE payload: MODP groups 2, 5, 14 (RFC 2409 section 6.2,
// RFC 3526) and ECP groups 19, 20 (RFC 5903), in IKE's wire forms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "common/bytes.h"
#include "crypto/pkey_handle.h"
#include "crypto/result.h"
#include "crypto/secret.h"

namespace covey::crypto {

class DhKeyPair;
class DhPeerValue;

namespace detail {
struct DhGroupSpec;
}

// One of the supported groups, named by its IKE group number (the value of the
// phase-1 Group Description attribute).
class DhGroup {
 public:
  // Errors on a group number covey does not implement (1, 3, 4, 15, 21, ...).
  static Result<DhGroup> from_id(std::uint16_t group_id);

  std::uint16_t id() const;
  const std::string& name() const;  // "MODP group 14", "ECP group 19": used in every error
  bool is_ecp() const;

  // KE payload data length. MODP: the prime's length; ECP: x|y, both coordinates
  // zero-padded to the field length (RFC 2409 section 5, RFC 5903 section 7).
  std::size_t public_value_size() const;
  // g^xy length. MODP: the prime's length; ECP: the x coordinate's length.
  std::size_t shared_secret_size() const;

  Result<DhKeyPair> generate() const;

  // A key pair from known values, for known-answer tests and stored state. Fails
  // unless public_value is g^private_value (OpenSSL's pairwise check).
  Result<DhKeyPair> import_key_pair(ByteView private_value, ByteView public_value) const;

  // The checks applied to every peer KE before it is used. MODP: exact length and
  // 1 < y < p-1 (for these safe primes that excludes the only small subgroup).
  // ECP: exact length, each coordinate below the field prime, and on the curve
  // (the x|y form cannot encode the point at infinity). The value that passed
  // is returned ready for DhKeyPair::shared_secret, so it is checked and read
  // once.
  Result<DhPeerValue> validate_peer_public_value(ByteView public_value) const;

 private:
  explicit DhGroup(const detail::DhGroupSpec* spec) : spec_(spec) {}
  const detail::DhGroupSpec* spec_;
  friend class DhKeyPair;
};

// Our half of one exchange. Move-only: the private key lives in OpenSSL and is
// freed (and wiped by OpenSSL) with this object.
class DhKeyPair {
 public:
  const DhGroup& group() const { return group_; }
  // g^x in KE payload form (see DhGroup::public_value_size).
  const Bytes& public_value() const { return public_value_; }

  // g^xy. MODP: zero-padded to the prime length; ECP: the x coordinate only
  // (RFC 5903 section 7, which replaced RFC 4753's x|y). The peer's value must
  // be of this pair's group.
  Result<SecretBytes> shared_secret(const DhPeerValue& peer) const;
  // The same from the KE payload's bytes, validated first.
  Result<SecretBytes> shared_secret(ByteView peer_public_value) const;

 private:
  DhKeyPair(DhGroup group, detail::PkeyPtr key, Bytes public_value)
      : group_(group), key_(std::move(key)), public_value_(std::move(public_value)) {}
  DhGroup group_;
  detail::PkeyPtr key_;
  Bytes public_value_;
  friend class DhGroup;
};

// A peer's public value that passed DhGroup::validate_peer_public_value.
class DhPeerValue {
 public:
  const DhGroup& group() const { return group_; }

 private:
  DhPeerValue(DhGroup group, detail::PkeyPtr key) : group_(group), key_(std::move(key)) {}
  DhGroup group_;
  detail::PkeyPtr key_;
  friend class DhGroup;
  friend class DhKeyPair;
};

}  // namespace covey::crypto

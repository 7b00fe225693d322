#include "crypto/dh.h"

#include <openssl/core_names.h>
#include <openssl/dh.h>

#include <array>
#include <cstring>

#include "crypto/openssl_util.h"

namespace covey::crypto {

namespace detail {

struct DhGroupSpec {
  std::uint16_t id;
  std::string name;
  bool ecp;
  std::size_t size;       // MODP: prime bytes; ECP: coordinate (field) bytes
  const char* prime_hex;  // MODP: the group prime; ECP: the field prime
  const char* curve;      // ECP: OpenSSL's group name
};

}  // namespace detail

namespace {

using detail::BnPtr;
using detail::DhGroupSpec;
using detail::openssl_error;
using detail::ParamBldPtr;
using detail::ParamPtr;
using detail::PkeyCtxPtr;
using detail::PkeyPtr;
using detail::SecretBnPtr;

// Primes copied from the RFC text (RFC 2409 section 6.2, RFC 3526 sections 2 and 3,
// RFC 5903 sections 3.1 and 3.2); crypto_dh_test checks them against OpenSSL's copies.
constexpr const char* kModp1024 =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF";
constexpr const char* kModp1536 =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA237327FFFFFFFFFFFFFFFF";
constexpr const char* kModp2048 =
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF";
constexpr const char* kP256Field = "FFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF";
constexpr const char* kP384Field =
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFF0000000000000000FFFFFFFF";

const std::array<DhGroupSpec, 5>& groups() {
  static const std::array<DhGroupSpec, 5> table = {{
      {2, "MODP group 2", false, 128, kModp1024, nullptr},
      {5, "MODP group 5", false, 192, kModp1536, nullptr},
      {14, "MODP group 14", false, 256, kModp2048, nullptr},
      {19, "ECP group 19", true, 32, kP256Field, "P-256"},
      {20, "ECP group 20", true, 48, kP384Field, "P-384"},
  }};
  return table;
}

Bytes prime_bytes(const DhGroupSpec& spec) {
  Bytes p;
  from_hex(spec.prime_hex, p);
  return p;
}

Result<BnPtr> prime_bn(const DhGroupSpec& spec) {
  BIGNUM* p = nullptr;
  if (BN_hex2bn(&p, spec.prime_hex) == 0) return openssl_error(spec.name + ": cannot parse prime");
  return BnPtr(p);
}

// An EVP_PKEY for a MODP group with optional private x and public y. Only p and
// g are given, not q: OpenSSL then recognises groups 5 and 14 as its named
// modp_1536/modp_2048 and draws short private exponents, while for group 2 a q
// would make it refuse to generate keys (below its 112-bit minimum strength).
Result<PkeyPtr> modp_key(const DhGroupSpec& spec, const BIGNUM* x, const BIGNUM* y, int selection) {
  auto p = prime_bn(spec);
  if (!p) return Error{p.error()};
  BnPtr g(BN_new());
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!g || !bld || BN_set_word(g.get(), 2) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_P, p->get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_FFC_G, g.get()) != 1 ||
      (x && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, x) != 1) ||
      (y && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, y) != 1))
    return openssl_error(spec.name + ": cannot build key parameters");
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "DH", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, selection, params.get()) != 1)
    return openssl_error(spec.name + ": cannot create key");
  return PkeyPtr(key);
}

// An EVP_PKEY for an ECP group with optional private scalar and public point x|y.
Result<PkeyPtr> ecp_key(const DhGroupSpec& spec, const BIGNUM* priv, ByteView x_y, int selection) {
  Bytes point;
  if (!x_y.empty()) {
    point.push_back(0x04);  // SEC 1 uncompressed point: what OpenSSL expects, what IKE omits
    append(point, x_y);
  }
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, spec.curve, 0) != 1 ||
      (priv && OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv) != 1) ||
      (!point.empty() &&
       OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1))
    return openssl_error(spec.name + ": cannot build key parameters");
  ParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, selection, params.get()) != 1)
    return openssl_error(spec.name + ": cannot create key");
  return PkeyPtr(key);
}

// The group's parameters as a key with no key in it, built once. Building a
// key from the group's name sets up the group's tables (Montgomery forms, a
// modular inverse) every time: 20 us of P-256's 25 us key import. A copy of
// a built group skips that, and so does key generation from it. Never freed,
// like fetched_md's.
EVP_PKEY* group_parameters(const DhGroupSpec& spec) {
  static const std::array<EVP_PKEY*, 5> built = [] {
    std::array<EVP_PKEY*, 5> a{};
    for (std::size_t i = 0; i < a.size(); ++i) {
      const DhGroupSpec& g = groups()[i];
      if (g.ecp) {
        PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
        if (ctx && EVP_PKEY_paramgen_init(ctx.get()) == 1 &&
            EVP_PKEY_CTX_set_group_name(ctx.get(), g.curve) == 1)
          EVP_PKEY_paramgen(ctx.get(), &a[i]);
      } else if (auto params = modp_key(g, nullptr, nullptr, EVP_PKEY_KEY_PARAMETERS)) {
        a[i] = params->release();
      }
    }
    detail::drop_openssl_errors();  // a group that failed fails by name where it is used
    return a;
  }();
  return built[static_cast<std::size_t>(&spec - groups().data())];
}

// A key holding only the public value (KE payload form), in a copy of the
// group's parameters. ECP: fails unless the point is on the curve.
Result<PkeyPtr> public_key(const DhGroupSpec& spec, ByteView value) {
  EVP_PKEY* params = group_parameters(spec);
  if (!params) return openssl_error(spec.name + ": cannot build the group's parameters");
  Bytes encoded;
  encoded.reserve(value.size() + 1);
  if (spec.ecp) encoded.push_back(0x04);  // SEC 1 uncompressed point: what OpenSSL expects, what IKE omits
  append(encoded, value);
  PkeyPtr key(EVP_PKEY_dup(params));
  if (!key || EVP_PKEY_set1_encoded_public_key(key.get(), encoded.data(), encoded.size()) != 1)
    return openssl_error(spec.name + ": cannot create key");
  return key;
}

// Our public value in KE payload form.
Result<Bytes> wire_public_value(const DhGroupSpec& spec, EVP_PKEY* key) {
  if (spec.ecp) {
    Bytes point(1 + 2 * spec.size);
    std::size_t len = 0;
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size(), &len) !=
            1 ||
        len != point.size() || point[0] != 0x04)
      return openssl_error(spec.name + ": cannot export public value");
    return Bytes(point.begin() + 1, point.end());
  }
  BIGNUM* y = nullptr;
  if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PUB_KEY, &y) != 1)
    return openssl_error(spec.name + ": cannot export public value");
  BnPtr owned(y);
  Bytes out(spec.size);
  if (BN_bn2binpad(y, out.data(), static_cast<int>(out.size())) < 0)
    return openssl_error(spec.name + ": public value longer than the prime");
  return out;
}

}  // namespace

Result<DhGroup> DhGroup::from_id(std::uint16_t group_id) {
  for (const DhGroupSpec& spec : groups())
    if (spec.id == group_id) return DhGroup(&spec);
  return Error{"Diffie-Hellman group " + std::to_string(group_id) +
               " is not supported (covey implements 2, 5, 14, 19, 20)"};
}

std::uint16_t DhGroup::id() const {
  return spec_->id;
}
const std::string& DhGroup::name() const {
  return spec_->name;
}
bool DhGroup::is_ecp() const {
  return spec_->ecp;
}
std::size_t DhGroup::public_value_size() const {
  return spec_->ecp ? 2 * spec_->size : spec_->size;
}
std::size_t DhGroup::shared_secret_size() const {
  return spec_->size;
}

Result<DhKeyPair> DhGroup::generate() const {
  EVP_PKEY* params = group_parameters(*spec_);
  if (!params) return openssl_error(spec_->name + ": cannot build the group's parameters");
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, params, nullptr));
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1) return openssl_error(spec_->name + ": key generation failed");
  if (!spec_->ecp) {
    // A private exponent of twice the group's strength (RFC 3526 8: 2048-bit
    // MODP needs 220-320 bits) instead of one as long as the prime: same
    // security, several times faster exponentiations.
    int priv_bits = spec_->size >= 256 ? 320 : 256;
    OSSL_PARAM priv_len[] = {OSSL_PARAM_construct_int(OSSL_PKEY_PARAM_DH_PRIV_LEN, &priv_bits), OSSL_PARAM_construct_end()};
    if (EVP_PKEY_CTX_set_params(ctx.get(), priv_len) != 1) return openssl_error(spec_->name + ": key generation failed");
  }
  EVP_PKEY* k = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &k) != 1) return openssl_error(spec_->name + ": key generation failed");
  PkeyPtr key(k);
  auto pub = wire_public_value(*spec_, key.get());
  if (!pub) return Error{pub.error()};
  return DhKeyPair(*this, std::move(key), std::move(*pub));
}

Result<DhKeyPair> DhGroup::import_key_pair(ByteView private_value, ByteView public_value) const {
  if (public_value.size() != public_value_size())
    return Error{spec_->name + ": public value is " + std::to_string(public_value.size()) +
                 " bytes, must be " + std::to_string(public_value_size())};
  if (private_value.empty() || private_value.size() > spec_->size)
    return Error{spec_->name + ": private value is " + std::to_string(private_value.size()) +
                 " bytes, must be 1 to " + std::to_string(spec_->size)};
  SecretBnPtr x(BN_secure_new());
  if (!x || !BN_bin2bn(private_value.data(), static_cast<int>(private_value.size()), x.get()))
    return openssl_error(spec_->name + ": cannot read private value");

  Result<PkeyPtr> key = Error{""};
  if (spec_->ecp) {
    key = ecp_key(*spec_, x.get(), public_value, EVP_PKEY_KEYPAIR);
  } else {
    BnPtr y(BN_bin2bn(public_value.data(), static_cast<int>(public_value.size()), nullptr));
    if (!y) return openssl_error(spec_->name + ": cannot read public value");
    key = modp_key(*spec_, x.get(), y.get(), EVP_PKEY_KEYPAIR);
  }
  if (!key) return Error{key.error()};
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key->get(), nullptr));
  if (!ctx || EVP_PKEY_pairwise_check(ctx.get()) != 1)
    return openssl_error(spec_->name + ": public value is not g^x for the given private value");
  return DhKeyPair(*this, std::move(*key), Bytes(public_value.begin(), public_value.end()));
}

Result<DhPeerValue> DhGroup::validate_peer_public_value(ByteView value) const {
  const std::string what = spec_->name + " peer public value";
  if (value.size() != public_value_size())
    return Error{what + " is " + std::to_string(value.size()) + " bytes, must be " +
                 std::to_string(public_value_size())};
  const Bytes p = prime_bytes(*spec_);

  if (spec_->ecp) {
    // Equal-length big-endian strings compare like the numbers they encode.
    auto below_p = [&](ByteView c) { return std::memcmp(c.data(), p.data(), p.size()) < 0; };
    if (!below_p(value.first(spec_->size)))
      return Error{what + ": x coordinate is not below the field prime"};
    if (!below_p(value.last(spec_->size))) return Error{what + ": y coordinate is not below the field prime"};
    auto key = public_key(*spec_, value);
    if (!key) {
      detail::drop_openssl_errors();
      return Error{what + " is not on the curve"};
    }
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key->get(), nullptr));
    if (!ctx) return openssl_error(what + ": cannot check");
    // On the curve and not the point at infinity. The full check's n*Q = O
    // adds a scalar multiplication that proves nothing more on P-256 and
    // P-384, whose cofactor is 1 (every point on the curve is in the group).
    if (EVP_PKEY_public_check_quick(ctx.get()) != 1) {
      detail::drop_openssl_errors();
      return Error{what + " is not on the curve"};
    }
    return DhPeerValue(*this, std::move(*key));
  }

  BnPtr y(BN_bin2bn(value.data(), static_cast<int>(value.size()), nullptr));
  BnPtr p_minus_1(BN_bin2bn(p.data(), static_cast<int>(p.size()), nullptr));
  if (!y || !p_minus_1 || BN_sub_word(p_minus_1.get(), 1) != 1) return openssl_error(what + ": cannot check");
  if (BN_cmp(y.get(), BN_value_one()) <= 0 || BN_cmp(y.get(), p_minus_1.get()) >= 0)
    return Error{what + " is not in the range 1 < y < p-1"};
  auto key = public_key(*spec_, value);
  if (!key) return Error{key.error()};
  return DhPeerValue(*this, std::move(*key));
}

Result<SecretBytes> DhKeyPair::shared_secret(ByteView peer_public_value) const {
  auto peer = group_.validate_peer_public_value(peer_public_value);
  if (!peer) return Error{peer.error()};
  return shared_secret(*peer);
}

Result<SecretBytes> DhKeyPair::shared_secret(const DhPeerValue& peer) const {
  const DhGroupSpec& spec = *group_.spec_;
  if (peer.group().id() != spec.id)
    return Error{spec.name + ": peer public value is of " + peer.group().name()};
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1)
    return openssl_error(spec.name + ": cannot start key agreement");
  // OpenSSL strips leading zero bytes of g^xy unless told otherwise; IKE keys
  // are derived from the full prime-length value, as every peer computes it.
  if (!spec.ecp && EVP_PKEY_CTX_set_dh_pad(ctx.get(), 1) != 1)
    return openssl_error(spec.name + ": cannot request padded g^xy");
  // Validated when the DhPeerValue was made; OpenSSL's own re-check (0: skip) would repeat it.
  if (EVP_PKEY_derive_set_peer_ex(ctx.get(), peer.key_.get(), 0) != 1)
    return openssl_error(spec.name + ": peer public value rejected");
  std::size_t len = 0;
  if (EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1 || len != spec.size)
    return openssl_error(spec.name + ": unexpected shared secret length");
  SecretBytes secret(len);
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1 || len != spec.size)
    return openssl_error(spec.name + ": key agreement failed");
  return secret;
}

}  // namespace covey::crypto

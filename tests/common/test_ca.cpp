#include "test_ca.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

namespace covey::test_pki {

namespace {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct NameFree {
  void operator()(X509_NAME* n) const { X509_NAME_free(n); }
};
struct ExtensionFree {
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

void require(bool ok, const std::string& what) {
  if (ok) return;
  char reason[256] = "no OpenSSL error";
  if (unsigned long code = ERR_get_error(); code != 0) ERR_error_string_n(code, reason, sizeof reason);
  ERR_clear_error();
  throw std::runtime_error("test CA: " + what + ": " + reason);
}

template <class T>
T take(crypto::Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error("test CA: " + what + ": " + r.error());
  return std::move(*r);
}

crypto::PrivateKey clone(const crypto::PrivateKey& key) {
  return take(crypto::PrivateKey::from_pem(take(key.to_pem(), "export key")), "import key");
}

crypto::PrivateKey new_key(const LeafOptions& o) {
  if (o.reuse_key) return clone(*o.reuse_key);
  return take(o.ec_key ? crypto::PrivateKey::generate_ec(crypto::EcCurve::P256)
                       : crypto::PrivateKey::generate_rsa(o.rsa_bits),
              "generate key");
}

// "CN=<cn>,O=covey lab" in RFC 2253 order, i.e. O first in the DER.
std::unique_ptr<X509_NAME, NameFree> lab_name(std::string_view cn) {
  std::unique_ptr<X509_NAME, NameFree> name(X509_NAME_new());
  require(name != nullptr, "X509_NAME_new");
  const std::string cn_text(cn);
  require(X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>("covey lab"), -1, -1, 0) == 1,
          "add O");
  require(X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(cn_text.c_str()), -1, -1, 0) == 1,
          "add CN");
  return name;
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtensionFree> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  require(ext != nullptr, "make extension " + value);
  require(X509_add_ext(cert, ext.get(), -1) == 1, "add extension " + value);
}

std::string key_usage_text(std::uint32_t bits) {
  std::string out = "critical";
  auto add = [&](std::uint32_t bit, const char* name) {
    if (bits & bit) out += std::string(",") + name;
  };
  add(KU_DIGITAL_SIGNATURE, "digitalSignature");
  add(KU_NON_REPUDIATION, "nonRepudiation");
  add(KU_KEY_ENCIPHERMENT, "keyEncipherment");
  add(KU_DATA_ENCIPHERMENT, "dataEncipherment");
  add(KU_KEY_AGREEMENT, "keyAgreement");
  add(KU_KEY_CERT_SIGN, "keyCertSign");
  add(KU_CRL_SIGN, "cRLSign");
  return out;
}

// Builds and signs one certificate. issuer null: self-signed.
crypto::Certificate build(const crypto::PrivateKey& subject_key, std::string_view cn, bool is_ca,
                          const LeafOptions& o, const Issued* issuer) {
  static long serial = 1;
  std::unique_ptr<X509, X509Free> cert(X509_new());
  require(cert != nullptr, "X509_new");
  require(X509_set_version(cert.get(), X509_VERSION_3) == 1, "set version");
  require(ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++) == 1, "set serial");
  auto name = lab_name(cn);
  require(X509_set_subject_name(cert.get(), name.get()) == 1, "set subject");
  require(X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer->cert.get()) : name.get()) == 1,
          "set issuer");
  require(X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(o.valid_from.count())) != nullptr,
          "set notBefore");
  require(X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>((o.valid_from + o.valid_for).count())) !=
              nullptr,
          "set notAfter");
  require(X509_set_pubkey(cert.get(), subject_key.get()) == 1, "set public key");
  X509* issuer_cert = issuer ? issuer->cert.get() : cert.get();
  add_extension(cert.get(), issuer_cert, NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  add_extension(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
  if (issuer) add_extension(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
  if (is_ca) add_extension(cert.get(), issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  else if (o.key_usage) add_extension(cert.get(), issuer_cert, NID_key_usage, key_usage_text(*o.key_usage));
  const crypto::PrivateKey& signing_key = issuer ? issuer->key : subject_key;
  require(X509_sign(cert.get(), signing_key.get(), EVP_sha256()) > 0, "sign");
  unsigned char* der = nullptr;
  int len = i2d_X509(cert.get(), &der);
  require(len > 0, "encode");
  auto parsed = crypto::Certificate::from_der(ByteView(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  return take(std::move(parsed), "parse");
}

}  // namespace

std::string to_pem(const crypto::Certificate& cert) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  require(bio && PEM_write_bio_X509(bio.get(), cert.get()) == 1, "write PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  require(len > 0 && data, "write PEM");
  return std::string(data, static_cast<std::size_t>(len));
}

std::string Issued::cert_pem() const { return to_pem(cert); }

std::string Issued::key_pem() const { return take(key.to_pem(), "export key"); }

TestCa::TestCa(std::string_view common_name) : TestCa(self_signed_ca(common_name)) {}

Issued TestCa::issue(std::string_view common_name, const LeafOptions& options) const {
  crypto::PrivateKey key = new_key(options);
  crypto::Certificate cert = build(key, common_name, false, options, &ca_);
  return Issued{std::move(key), std::move(cert)};
}

TestCa TestCa::subordinate(std::string_view common_name) const {
  crypto::PrivateKey key = new_key({});
  crypto::Certificate cert = build(key, common_name, true, {}, &ca_);
  return TestCa(Issued{std::move(key), std::move(cert)});
}

Issued TestCa::self_signed(std::string_view common_name, const LeafOptions& options) {
  crypto::PrivateKey key = new_key(options);
  crypto::Certificate cert = build(key, common_name, false, options, nullptr);
  return Issued{std::move(key), std::move(cert)};
}

Issued TestCa::self_signed_ca(std::string_view common_name) {
  // Long before any leaf, as a real CA is, so back-dated leaves nest inside it.
  LeafOptions o;
  o.valid_from = -24h * 365;
  o.valid_for = 24h * 3650;
  crypto::PrivateKey key = new_key(o);
  crypto::Certificate cert = build(key, common_name, true, o, nullptr);
  return Issued{std::move(key), std::move(cert)};
}

ScratchDir::ScratchDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "covey-pki-XXXXXX").string();
  require(::mkdtemp(pattern.data()) != nullptr, "mkdtemp");
  path_ = pattern;
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string ScratchDir::write(std::string_view name, std::string_view contents) const {
  std::string file = path_ + "/" + std::string(name);
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + file);
  return file;
}

}  // namespace covey::test_pki

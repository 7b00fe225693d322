#include "crypto/x509.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "crypto/openssl_util.h"

namespace covey::crypto {

namespace detail {
void X509Free::operator()(X509* cert) const { X509_free(cert); }
void X509StoreFree::operator()(X509_STORE* store) const { X509_STORE_free(store); }
}  // namespace detail

namespace {

using detail::BioPtr;
using detail::openssl_error;
using X509Ptr = std::unique_ptr<X509, detail::X509Free>;
using X509StorePtr = std::unique_ptr<X509_STORE, detail::X509StoreFree>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, detail::Deleter<X509_STORE_CTX_free>>;

// The stack holds borrowed certificates: freeing it must not free them.
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_free(s); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

constexpr std::size_t kMaxPemFile = 1 << 20;

// Certificates are never encrypted; never prompt on a terminal.
int no_passphrase(char*, int, int, void*) { return -1; }

// "CN=gm3,O=covey lab": RFC 2253 (most specific RDN first, RFC escaping),
// but UTF-8 printed as UTF-8 rather than \XX escapes, for logs people read.
Result<std::string> name_text(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
    return openssl_error("print certificate name failed");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len < 0) return openssl_error("print certificate name failed");
  return std::string(data ? data : "", static_cast<std::size_t>(len));
}

Result<std::chrono::sys_seconds> to_sys_seconds(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return openssl_error("malformed validity time");
  using namespace std::chrono;
  const year_month_day date{year{tm.tm_year + 1900}, month{static_cast<unsigned>(tm.tm_mon + 1)},
                            day{static_cast<unsigned>(tm.tm_mday)}};
  return sys_days{date} + hours{tm.tm_hour} + minutes{tm.tm_min} + seconds{tm.tm_sec};
}

std::string utc_text(std::chrono::sys_seconds t) {
  using namespace std::chrono;
  const auto d = floor<days>(t);
  const year_month_day date{d};
  const hh_mm_ss hms{t - d};
  char out[64];
  std::snprintf(out, sizeof out, "%04d-%02u-%02u %02d:%02d:%02d UTC", static_cast<int>(date.year()),
                static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  return out;
}

// Errors that mean no path from the certificate to a configured anchor.
bool is_chain_error(int err) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return true;
    default: return false;
  }
}

// Why verification failed, in OpenSSL's words, with the certificate at
// fault when it is not the leaf and the date a validity error is about.
std::string failure_detail(X509_STORE_CTX* ctx, int err) {
  std::string reason = X509_verify_cert_error_string(err);
  X509* at = X509_STORE_CTX_get_current_cert(ctx);
  if (!at) return reason;
  std::string extra;
  if (X509_STORE_CTX_get_error_depth(ctx) > 0) {
    auto who = name_text(X509_get_subject_name(at));
    if (who) extra = "at " + *who;
  }
  const ASN1_TIME* when = nullptr;
  const char* field = "";
  if (err == X509_V_ERR_CERT_HAS_EXPIRED) when = X509_get0_notAfter(at), field = "notAfter ";
  if (err == X509_V_ERR_CERT_NOT_YET_VALID) when = X509_get0_notBefore(at), field = "notBefore ";
  if (when) {
    auto t = to_sys_seconds(when);
    if (t) extra += (extra.empty() ? "" : ", ") + std::string(field) + utc_text(*t);
  }
  detail::drop_openssl_errors();
  return extra.empty() ? reason : reason + " (" + extra + ")";
}

}  // namespace

Result<Certificate> Certificate::adopt(X509Ptr cert) {
  Certificate c(std::move(cert));
  X509* x = c.cert_.get();
  unsigned char* der = nullptr;
  int len = i2d_X509(x, &der);
  if (len <= 0) return openssl_error("encode certificate failed");
  c.der_.assign(der, der + len);
  OPENSSL_free(der);

  auto subject = name_text(X509_get_subject_name(x));
  if (!subject) return Error{subject.error()};
  c.subject_ = std::move(*subject);
  auto issuer = name_text(X509_get_issuer_name(x));
  if (!issuer) return Error{issuer.error()};
  c.issuer_ = std::move(*issuer);

  unsigned char* name_der = nullptr;
  len = i2d_X509_NAME(X509_get_subject_name(x), &name_der);
  if (len <= 0) return openssl_error("certificate " + c.subject_ + ": encode subject failed");
  c.subject_der_.assign(name_der, name_der + len);
  OPENSSL_free(name_der);

  auto not_before = to_sys_seconds(X509_get0_notBefore(x));
  if (!not_before) return Error{"certificate " + c.subject_ + ": notBefore: " + not_before.error()};
  auto not_after = to_sys_seconds(X509_get0_notAfter(x));
  if (!not_after) return Error{"certificate " + c.subject_ + ": notAfter: " + not_after.error()};
  c.not_before_ = *not_before;
  c.not_after_ = *not_after;
  return c;
}

Result<Certificate> Certificate::from_der(ByteView der) {
  if (der.size() > LONG_MAX) return Error{"read DER certificate: too long"};
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert) return openssl_error("read DER certificate: not an X.509 certificate");
  if (p != der.data() + der.size()) return Error{"read DER certificate: trailing bytes after the certificate"};
  return adopt(std::move(cert));
}

Result<std::vector<Certificate>> Certificate::all_from_pem(std::string_view pem) {
  if (pem.size() > INT_MAX) return Error{"read PEM certificates: too long"};
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return openssl_error("read PEM certificates: out of memory");
  std::vector<Certificate> out;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (!cert) break;
    auto c = adopt(std::move(cert));
    if (!c) return Error{"read PEM certificate " + std::to_string(out.size() + 1) + ": " + c.error()};
    out.push_back(std::move(*c));
  }
  // Running out of input reads as "no start line"; anything else is a
  // damaged block, which must not silently shorten a CA bundle.
  unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    detail::drop_openssl_errors();
    if (out.empty()) return Error{"read PEM certificates: no \"BEGIN CERTIFICATE\" block"};
    return out;
  }
  return openssl_error("read PEM certificate " + std::to_string(out.size() + 1) + ": malformed");
}

Result<Certificate> Certificate::from_pem(std::string_view pem) {
  if (pem.size() > INT_MAX) return Error{"read PEM certificate: too long"};
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return openssl_error("read PEM certificate: out of memory");
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  if (!cert) return openssl_error("read PEM certificate: no valid \"BEGIN CERTIFICATE\" block");
  return adopt(std::move(cert));
}

Result<PublicKey> Certificate::public_key() const {
  // X509_get0_pubkey is null for a key type OpenSSL cannot decode.
  EVP_PKEY* key = X509_get0_pubkey(cert_.get());
  if (!key) return openssl_error("certificate " + subject_ + ": unsupported public key");
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return openssl_error("certificate " + subject_ + ": encode public key failed");
  auto pub = PublicKey::from_der(ByteView(der, static_cast<std::size_t>(len)));
  OPENSSL_free(der);
  return pub;
}

std::string Certificate::key_type() const {
  EVP_PKEY* key = X509_get0_pubkey(cert_.get());
  const char* type = key ? EVP_PKEY_get0_type_name(key) : nullptr;
  detail::drop_openssl_errors();
  return type ? type : "unsupported";
}

unsigned Certificate::key_bits() const {
  EVP_PKEY* key = X509_get0_pubkey(cert_.get());
  int bits = key ? EVP_PKEY_get_bits(key) : 0;
  detail::drop_openssl_errors();
  return bits > 0 ? static_cast<unsigned>(bits) : 0;
}

bool Certificate::matches(const PrivateKey& key) const {
  EVP_PKEY* pub = X509_get0_pubkey(cert_.get());
  // EVP_PKEY_eq: 1 equal, 0 different, negative for different key types.
  bool same = pub && key.get() && EVP_PKEY_eq(pub, key.get()) == 1;
  detail::drop_openssl_errors();
  return same;
}

Result<CertificateAuthority> CertificateAuthority::load(const std::string& pem_path) {
  auto file = read_pem_file(pem_path);
  if (!file) return Error{"CA: " + file.error()};
  return from_pem(pem_text(*file), pem_path);
}

Result<CertificateAuthority> CertificateAuthority::from_pem(std::string_view pem, std::string origin) {
  auto anchors = Certificate::all_from_pem(pem);
  if (!anchors) return Error{"CA file " + origin + ": " + anchors.error()};
  X509StorePtr store(X509_STORE_new());
  if (!store) return openssl_error("CA file " + origin + ": out of memory");
  for (const auto& a : *anchors)
    if (X509_STORE_add_cert(store.get(), a.get()) != 1)
      return openssl_error("CA file " + origin + ": cannot add " + a.subject());
  // Every certificate the operator listed is a trust anchor, a subordinate
  // CA included, as a Cisco trustpoint is: the chain need not reach a root.
  if (X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN) != 1)
    return openssl_error("CA file " + origin + ": cannot set verification flags");
  return CertificateAuthority(std::move(store), std::move(*anchors), std::move(origin));
}

Result<void> CertificateAuthority::verify(const Certificate& leaf, std::span<const Certificate> intermediates,
                                          std::optional<std::chrono::sys_seconds> at) const {
  const std::string what = "certificate " + leaf.subject();
  X509StackPtr untrusted(sk_X509_new_null());
  if (!untrusted) return openssl_error(what + ": out of memory");
  for (const auto& c : intermediates)
    if (sk_X509_push(untrusted.get(), c.get()) <= 0) return openssl_error(what + ": out of memory");
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store_.get(), leaf.get(), untrusted.get()) != 1)
    return openssl_error(what + ": cannot start verification");
  if (at) X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(at->time_since_epoch().count()));

  int verified = X509_verify_cert(ctx.get());
  if (verified < 0) return openssl_error(what + ": verification failed to run");
  if (verified != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    std::string detail = failure_detail(ctx.get(), err);
    if (is_chain_error(err)) return Error{what + " does not chain to the CA in " + origin_ + ": " + detail};
    return Error{what + " is refused by the CA in " + origin_ + ": " + detail};
  }
  // OpenSSL checks the issuers' keyUsage, not the leaf's without a purpose,
  // and it has no IKE purpose. RFC 4945 5.1.3.2: a present keyUsage must
  // allow digitalSignature or nonRepudiation for the peer to sign with it.
  const std::uint32_t usage = X509_get_key_usage(leaf.get());
  if (usage != UINT32_MAX && (usage & (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)) == 0)
    return Error{what + ": keyUsage allows neither digitalSignature nor nonRepudiation"};
  return {};
}

Result<SecretBytes> read_pem_file(const std::string& path) {
  auto system_error = [&](const char* what) {
    return Error{"cannot " + std::string(what) + " " + path + ": " + std::strerror(errno)};
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return system_error("open");
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st{};
  if (::fstat(fd, &st) != 0) return system_error("stat");
  if (!S_ISREG(st.st_mode)) return Error{path + " is not a regular file"};
  if (static_cast<std::uint64_t>(st.st_size) > kMaxPemFile)
    return Error{path + " is " + std::to_string(st.st_size) + " bytes, too large for a PEM file"};
  SecretBytes buffer(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < buffer.size()) {
    ssize_t n = ::read(fd, buffer.data() + got, buffer.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return system_error("read");
    if (n == 0) break;  // the file shrank since fstat
    got += static_cast<std::size_t>(n);
  }
  if (got == 0) return Error{path + " is empty"};
  if (got < buffer.size()) return buffer.prefix(got);
  return buffer;
}

}  // namespace covey::crypto

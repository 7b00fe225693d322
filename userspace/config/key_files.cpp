#include "config/key_files.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace covey::config::detail {

namespace {

template <auto Free>
struct Deleter {
  template <class P>
  void operator()(P* p) const {
    Free(p);
  }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;

// No passphrase prompt: a daemon cannot answer one, so an encrypted key fails to load.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

// OpenSSL's last reason, for the message, leaving its queue empty.
std::string openssl_reason() {
  unsigned long e = ERR_peek_last_error();
  std::string reason =
      e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown error" : "no PEM data";
  ERR_clear_error();
  return reason;
}

// The file's bytes in `text`, or why it cannot be read.
std::optional<std::string> read_text(const std::string& path, std::string& text) {
  if (auto why = unreadable(path)) return why;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  text = out.str();
  return std::nullopt;
}

PkeyPtr parse_private_key(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
}

X509Ptr parse_certificate(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
}

// "RSA", "EC", or OpenSSL's own name for anything else ("ED25519", "DSA").
// (EVP_PKEY_get_base_name is OpenSSL 3.1+; Debian 12 ships 3.0.)
std::string key_type(const EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA: return "RSA";
    case EVP_PKEY_EC: return "EC";
  }
  const char* name = EVP_PKEY_get0_type_name(key);
  return name ? name : "unknown";
}

}  // namespace

std::optional<std::string> unreadable(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::string(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return std::string("not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string(std::strerror(errno));
  return std::nullopt;
}

std::variant<KeyInfo, std::string> read_private_key(const std::string& path) {
  std::string pem;
  if (auto why = read_text(path, pem)) return *why;
  if (pem.find("ENCRYPTED") != std::string::npos)
    return std::string(
        "is passphrase-protected; covey runs unattended: decrypt it with "
        "\"openssl pkey -in KEY -out KEY.plain\" and keep it mode 600");
  PkeyPtr key = parse_private_key(pem);
  if (!key) return "is not a PEM private key (" + openssl_reason() + ")";

  KeyInfo info;
  info.type = key_type(key.get());
  info.bits = static_cast<unsigned>(EVP_PKEY_get_bits(key.get()));
  char curve[64] = {};
  std::size_t curve_len = 0;
  if (info.type == "EC" && EVP_PKEY_get_group_name(key.get(), curve, sizeof curve, &curve_len) == 1)
    info.curve.assign(curve, curve_len);
  struct stat st {};
  info.others_can_read = ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0;
  ERR_clear_error();
  return info;
}

std::optional<std::string> check_certificate(const std::string& cert_path, const std::string& key_path,
                                             KeyInfo& cert_key) {
  std::string pem;
  if (auto why = read_text(cert_path, pem)) return "certificate " + cert_path + ": " + *why;
  X509Ptr cert = parse_certificate(pem);
  if (!cert) return "certificate " + cert_path + " is not a PEM certificate (" + openssl_reason() + ")";
  EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  if (!pub) return "certificate " + cert_path + " has no usable public key (" + openssl_reason() + ")";
  cert_key.type = key_type(pub);
  cert_key.bits = static_cast<unsigned>(EVP_PKEY_get_bits(pub));

  std::string key_pem;
  if (auto why = read_text(key_path, key_pem)) return "private_key " + key_path + ": " + *why;
  PkeyPtr key = parse_private_key(key_pem);
  if (!key)
    return "private_key " + key_path + " is not an unencrypted PEM private key (" + openssl_reason() + ")";
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return "private_key " + key_path + " does not belong to certificate " + cert_path;
  }
  return std::nullopt;
}

std::optional<std::string> check_ca_file(const std::string& path) {
  std::string pem;
  if (auto why = read_text(path, pem)) return "ca " + path + ": " + *why;
  if (!parse_certificate(pem)) return "ca " + path + " holds no PEM certificate (" + openssl_reason() + ")";
  return std::nullopt;
}

}  // namespace covey::config::detail

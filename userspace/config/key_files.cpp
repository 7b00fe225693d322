#include "config/key_files.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "crypto/sign.h"
#include "crypto/x509.h"

namespace covey::config::detail {

namespace {

// The file's bytes, held in memory that wipes itself, or why not.
std::variant<crypto::SecretBytes, std::string> read_pem(const std::string& path) {
  if (auto why = unreadable(path)) return *why;
  auto pem = crypto::read_pem_file(path);
  if (!pem) return pem.error();
  return std::move(*pem);
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
  auto pem = read_pem(path);
  if (auto* why = std::get_if<std::string>(&pem)) return *why;
  std::string_view text = crypto::pem_text(std::get<crypto::SecretBytes>(pem));
  if (text.find("ENCRYPTED") != std::string_view::npos)
    return std::string(
        "is passphrase-protected; covey runs unattended: decrypt it with "
        "\"openssl pkey -in KEY -out KEY.plain\" and keep it mode 600");
  auto key = crypto::PrivateKey::from_pem(text);
  if (!key) return "is not a PEM private key (" + key.error() + ")";

  KeyInfo info;
  info.type = key_type(key->get());
  info.bits = static_cast<unsigned>(EVP_PKEY_get_bits(key->get()));
  char curve[64] = {};
  std::size_t curve_len = 0;
  if (info.type == "EC" && EVP_PKEY_get_group_name(key->get(), curve, sizeof curve, &curve_len) == 1)
    info.curve.assign(curve, curve_len);
  struct stat st {};
  info.others_can_read = ::stat(path.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0;
  return info;
}

std::optional<std::string> check_certificate(const std::string& cert_path, const std::string& key_path,
                                             KeyInfo& cert_key) {
  auto cert_pem = read_pem(cert_path);
  if (auto* why = std::get_if<std::string>(&cert_pem)) return "certificate " + cert_path + ": " + *why;
  auto cert = crypto::Certificate::from_pem(crypto::pem_text(std::get<crypto::SecretBytes>(cert_pem)));
  if (!cert) return "certificate " + cert_path + " is not a PEM certificate (" + cert.error() + ")";
  cert_key.type = cert->key_type();
  cert_key.bits = cert->key_bits();

  auto key_pem = read_pem(key_path);
  if (auto* why = std::get_if<std::string>(&key_pem)) return "private_key " + key_path + ": " + *why;
  auto key = crypto::PrivateKey::from_pem(crypto::pem_text(std::get<crypto::SecretBytes>(key_pem)));
  if (!key) return "private_key " + key_path + " is not an unencrypted PEM private key (" + key.error() + ")";
  if (!cert->matches(*key)) return "private_key " + key_path + " does not belong to certificate " + cert_path;
  return std::nullopt;
}

std::optional<std::string> check_ca_file(const std::string& path) {
  if (auto why = unreadable(path)) return "ca " + path + ": " + *why;
  auto ca = crypto::CertificateAuthority::load(path);
  if (!ca) return "ca " + path + " holds no usable PEM certificate (" + ca.error() + ")";
  return std::nullopt;
}

}  // namespace covey::config::detail

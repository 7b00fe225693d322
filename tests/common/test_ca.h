// A throwaway PKI for tests: a CA and the GM and KS certificates it issues,
// made in memory with OpenSSL, plus a scratch directory for PEM files. A
// failure here throws, which GoogleTest reports as the test's failure.
#pragma once

#include <openssl/x509v3.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/sign.h"
#include "crypto/x509.h"

namespace covey::test_pki {

using namespace std::chrono_literals;

struct LeafOptions {
  std::chrono::seconds valid_from = -1h;  // relative to now
  std::chrono::seconds valid_for = 24h * 30;
  unsigned rsa_bits = 2048;
  bool ec_key = false;  // P-256 instead of RSA
  // keyUsage bits; no extension when unset.
  std::optional<std::uint32_t> key_usage = KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT;
  const crypto::PrivateKey* reuse_key = nullptr;  // instead of a new key, which takes a while
};

struct Issued {
  crypto::PrivateKey key;
  crypto::Certificate cert;
  std::string cert_pem() const;
  std::string key_pem() const;
};

class TestCa {
 public:
  // Subject "CN=<common_name>,O=covey lab", self-signed, CA:TRUE.
  explicit TestCa(std::string_view common_name = "covey lab CA");

  // Subject "CN=<common_name>,O=covey lab", CA:FALSE, signed by this CA.
  Issued issue(std::string_view common_name, const LeafOptions& options = {}) const;
  // A CA:TRUE certificate signed by this CA, for chain tests.
  TestCa subordinate(std::string_view common_name) const;
  // A leaf signed by its own key, not by any CA.
  static Issued self_signed(std::string_view common_name, const LeafOptions& options = {});

  const crypto::Certificate& certificate() const { return ca_.cert; }
  const crypto::PrivateKey& key() const { return ca_.key; }
  std::string pem() const { return ca_.cert_pem(); }

 private:
  explicit TestCa(Issued ca) : ca_(std::move(ca)) {}
  static Issued self_signed_ca(std::string_view common_name);
  Issued ca_;
};

std::string to_pem(const crypto::Certificate& cert);

// A fresh directory under the system's temporary directory, removed with
// everything in it when this dies.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // Writes contents to <dir>/<name> and returns the path.
  std::string write(std::string_view name, std::string_view contents) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace covey::test_pki

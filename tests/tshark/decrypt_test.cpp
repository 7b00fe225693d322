// coveyctl decode --keylog on an encrypted registration and rekey built
// here with covey::crypto: Main Mode 5-6 and the four GROUPKEY-PULL
// messages under the phase-1 SA (IVs per RFC 2409 Appendix B), then a
// GROUPKEY-PUSH under the KEK that message 4 delivered (RFC 6407 5.6.2.1).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "corpus.h"
#include "coveyctl/decode.h"
#include "coveyctl/keylog.h"
#include "crypto/gdoi.h"
#include "crypto/ikev1.h"
#include "gdoi/policy_codec.h"
#include "gdoi/vendor_id.h"
#include "json_check.h"
#include "pcap_writer.h"
#include "run.h"

namespace covey::test {
namespace {

using namespace covey::wire;
namespace ikev1 = covey::crypto::ikev1;
using crypto::CipherAlgorithm;
using crypto::HashAlgorithm;

// Main Mode message 2 of the corpus chooses AES-CBC-256 with SHA2-256.
constexpr CipherAlgorithm kPhase1Cipher = CipherAlgorithm::Aes256Cbc;
constexpr HashAlgorithm kPhase1Hash = HashAlgorithm::Sha256;

Bytes phase1_key() {
  Bytes k(32);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = static_cast<std::uint8_t>(0xe0 ^ i);
  return k;
}

Bytes encrypted(const CorpusMessage& m, ByteView ciphertext) {
  Header h = m.header;
  h.flags |= kFlagEncryption;
  h.next_payload = static_cast<std::uint8_t>(type_of(m.payloads.at(0)));
  h.length = static_cast<std::uint32_t>(kHeaderSize + ciphertext.size());
  Bytes out = encode_header(h);
  append(out, ciphertext);
  return out;
}

template <class T>
T must(crypto::Result<T> r) {
  if (!r) throw std::runtime_error(r.error());
  return std::move(*r);
}

struct Exchange {
  std::vector<CorpusMessage> clear;  // what each datagram carries, for comparison
  std::vector<PcapRecord> records;
};

// `edit` changes the corpus before anything is encrypted; the push goes
// under `kek_cipher` with message 4's KEK_ALGORITHM_KEY.
Exchange build(const std::function<void(std::vector<CorpusMessage>&)>& edit = {},
               CipherAlgorithm kek_cipher = CipherAlgorithm::Aes256Cbc) {
  auto all = corpus();
  if (edit) edit(all);
  auto by_label = [&](const std::string& l) {
    for (const auto& m : all)
      if (m.label == l) return m;
    throw std::runtime_error("no corpus message " + l);
  };
  Exchange x;
  auto add = [&](const CorpusMessage& m, Bytes wire) {
    x.clear.push_back(m);
    x.records.push_back({m.from_gm ? kGm : kKs, m.from_gm ? kKs : kGm, std::move(wire)});
  };
  for (const char* l : {"Main Mode msg 1", "Main Mode msg 2", "Main Mode msg 3", "Main Mode msg 4"})
    add(by_label(l), by_label(l).bytes());

  const Bytes key = phase1_key();
  const Bytes gxi = std::get<KeyExchangePayload>(by_label("Main Mode msg 3").payloads[0]).data;
  const Bytes gxr = std::get<KeyExchangePayload>(by_label("Main Mode msg 4").payloads[0]).data;
  Bytes iv = must(ikev1::phase1_iv(kPhase1Hash, kPhase1Cipher, gxi, gxr));
  for (const char* l : {"Main Mode msg 5", "Main Mode msg 6"}) {
    const auto m = by_label(l);
    Bytes ct = must(ikev1::encrypt_payloads(kPhase1Cipher, key, iv, encode_payloads(m.payloads)));
    iv = crypto::last_cipher_block(kPhase1Cipher, ct);
    add(m, encrypted(m, ct));
  }
  const Bytes last_phase1_block = iv;
  iv = must(ikev1::phase2_iv(kPhase1Hash, kPhase1Cipher, last_phase1_block, want::kPullMessageId));
  for (const char* l : {"GROUPKEY-PULL msg 1", "GROUPKEY-PULL msg 2", "GROUPKEY-PULL msg 3", "GROUPKEY-PULL msg 4"}) {
    const auto m = by_label(l);
    Bytes ct = must(ikev1::encrypt_payloads(kPhase1Cipher, key, iv, encode_payloads(m.payloads)));
    iv = crypto::last_cipher_block(kPhase1Cipher, ct);
    add(m, encrypted(m, ct));
  }
  // An Informational exchange has its own Message ID, so its own IV chain.
  {
    const auto m = by_label("Informational DELETE");
    Bytes first = must(ikev1::phase2_iv(kPhase1Hash, kPhase1Cipher, last_phase1_block, want::kInfoMessageId));
    add(m, encrypted(m, must(ikev1::encrypt_payloads(kPhase1Cipher, key, first, encode_payloads(m.payloads)))));
  }
  // The rekey, under the KEK of message 4's KD (SA KEK: KEK_ALG_AES, 256 bits).
  {
    const auto m = by_label("GROUPKEY-PUSH");
    const auto pull4 = by_label("GROUPKEY-PULL msg 4");
    const auto& kd = std::get<KeyDownloadPayload>(pull4.payloads[2]);
    const Bytes& kek = kd.packets[2].attributes[0].value;  // KEK_ALGORITHM_KEY: IV | key
    add(m, encrypted(m, must(crypto::gdoi::kek_encrypt(kek_cipher, kek, encode_payloads(m.payloads)))));
  }
  return x;
}

// The exchange as the capture reader would hand it over, without a file.
std::vector<coveyctl::Datagram> as_datagrams(const Exchange& x) {
  auto text = [](std::uint32_t ip) {
    return std::to_string(ip >> 24) + "." + std::to_string(ip >> 16 & 0xff) + "." + std::to_string(ip >> 8 & 0xff) +
           "." + std::to_string(ip & 0xff);
  };
  std::vector<coveyctl::Datagram> out;
  for (const auto& r : x.records)
    out.push_back({out.size() + 1, 0, text(r.src.ip), text(r.dst.ip), r.src.port, r.dst.port, r.payload, {}});
  return out;
}

std::string write_keylog() {
  const std::string path = temp_path("keylog.txt");
  std::ofstream f(path);
  f << "# Wireshark ikev1_decryption_table format\n" << to_hex(initiator_cookie()) << "," << to_hex(phase1_key()) << "\n";
  return path;
}

TEST(CoveyctlDecrypt, RegistrationWithKeylogAndRekeyWithLearnedKek) {
  const Exchange x = build();
  const std::string pcap = temp_path("encrypted.pcap");
  write_pcap(pcap, x.records);
  auto r = run(std::string(COVEYCTL) + " decode --json --pcap " + pcap + " --keylog " + write_keylog());
  ASSERT_EQ(r.status, 0) << r.out;
  const auto doc = nlohmann::ordered_json::parse(r.out);
  ASSERT_EQ(doc["messages"].size(), x.clear.size());
  for (std::size_t i = 0; i < x.clear.size(); ++i) {
    const auto& j = doc["messages"][i];
    SCOPED_TRACE("frame " + std::to_string(i + 1) + ": " + x.clear[i].label);
    if (i >= 4) {
      ASSERT_TRUE(j.value("encrypted", false));
      ASSERT_EQ(j["decryption"]["status"], "decrypted") << j["decryption"].dump();
      const bool push = x.clear[i].label == "GROUPKEY-PUSH";
      EXPECT_EQ(j["decryption"]["key"], push ? "KEK" : "keylog");
      if (push) {
        // Where the key came from: the KD of message 4 (frame 10), the policy of message 2 (frame 8).
        EXPECT_EQ(j["decryption"]["source"], "KD KEK packet in frame #10, policy from SA KEK in frame #8");
        EXPECT_EQ(j["decryption"]["cipher"], "AES-256-CBC");
      }
    }
    for (const auto& d : compare_decoded(j, x.clear[i])) ADD_FAILURE() << d;
  }
  auto text = run(std::string(COVEYCTL) + " decode --pcap " + pcap + " --keylog " + write_keylog());
  EXPECT_NE(text.out.find("#7 10.1.23.3:848 -> 10.1.12.1:848 GROUPKEY-PULL msg-id 0x1a2b3c4d encrypted, decrypted with keylog"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("GROUPKEY-PUSH msg-id 0x00000000 encrypted, decrypted with KEK from KD KEK packet in frame #10"),
            std::string::npos)
      << text.out;
}

TEST(CoveyctlDecrypt, WithoutKeylogSaysWhy) {
  const Exchange x = build();
  const auto datagrams = as_datagrams(x);
  const auto out = coveyctl::decode_all(datagrams, {});
  EXPECT_EQ(out[6]["decryption"]["status"], "not decrypted");
  EXPECT_EQ(out[6]["decryption"]["reason"], "no keylog entry for initiator cookie " + to_hex(initiator_cookie()));
  // No registration decrypted, so no KEK for the push.
  EXPECT_EQ(out.back()["decryption"]["status"], "not decrypted");
  EXPECT_FALSE(out.back().contains("error"));
}

TEST(CoveyctlDecrypt, WrongKeyIsAPerMessageErrorNotACrash) {
  const Exchange x = build();
  const auto datagrams = as_datagrams(x);
  coveyctl::Keylog wrong;
  wrong.keys[initiator_cookie()] = Bytes(32, 0x55);
  const auto out = coveyctl::decode_all(datagrams, wrong);
  ASSERT_EQ(out.size(), datagrams.size());
  for (std::size_t i = 4; i < 10; ++i) {
    ASSERT_TRUE(out[i].contains("error")) << out[i].dump();
    EXPECT_NE(out[i]["error"].get<std::string>().find("wrong key or IV?"), std::string::npos);
  }
}

// Main Mode message 1 as covey-gm sends it: covey's Vendor ID is named,
// another vendor's left as octets.
TEST(CoveyctlDecode, NamesCoveysVendorId) {
  Header h;
  h.initiator_cookie = initiator_cookie();
  h.exchange = static_cast<std::uint8_t>(ExchangeType::IdentityProtection);
  const Bytes covey = gdoi::covey_vendor_id(), other{0xaf, 0xca, 0xd7, 0x13};
  Bytes d = encode_message(h, {VendorIdPayload{covey}, VendorIdPayload{other}});
  const auto out = coveyctl::decode_all({{1, 0, "10.1.23.3", "10.1.12.1", 848, 848, d, {}}}, {});
  ASSERT_EQ(out.size(), 1u);
  const auto& ps = out[0]["payloads"];
  ASSERT_EQ(ps.size(), 2u) << out[0].dump();
  EXPECT_EQ(ps[0]["vendor"], "covey version 1, features 0x0000000f (deny entries, port ranges, TBAR, fail-close ACL)");
  EXPECT_EQ(ps[0]["data"], to_hex(covey));
  EXPECT_EQ(ps[0]["summary"], "VENDOR ID: covey version 1, features 0x0000000f (deny entries, port ranges, TBAR, fail-close ACL)");
  EXPECT_FALSE(ps[1].contains("vendor"));
  EXPECT_EQ(ps[1]["data"], "afcad713");
}

// RFC 6407 5.3.3 makes KEK_KEY_LENGTH optional. The member (the codec)
// reads an AES KEK without it as AES-256, so the decoder must too: a
// 16 + 16-octet KEK_ALGORITHM_KEY is then a mismatch to name, not an
// AES-128 key to guess from its length.
TEST(CoveyctlDecrypt, AesKekWithoutKeyLengthIsReadAsTheMemberReadsIt) {
  const auto edit = [](std::vector<CorpusMessage>& all) {
    for (auto& m : all) {
      if (m.label == "GROUPKEY-PULL msg 2") {
        auto& attrs = std::get<GroupSaPayload>(m.payloads.at(2)).kek->attributes;
        std::erase_if(attrs, [](const Attribute& a) { return a.type == kek_attr::KekKeyLength; });
      }
      if (m.label == "GROUPKEY-PULL msg 4") {
        auto& kek = std::get<KeyDownloadPayload>(m.payloads.at(2)).packets.at(2).attributes.at(0).value;
        kek.resize(16 + 16);  // IV and an AES-128 key
      }
    }
  };
  const Exchange x = build(edit, CipherAlgorithm::Aes128Cbc);
  const auto& sa = std::get<GroupSaPayload>(x.clear.at(7).payloads.at(2));
  const auto member = gdoi::decode_group_sa(sa);
  ASSERT_TRUE(member) << member.error();
  ASSERT_EQ(member->policy.kek.cipher, CipherAlgorithm::Aes256Cbc);

  coveyctl::Keylog keylog;
  keylog.keys[initiator_cookie()] = phase1_key();
  const auto out = coveyctl::decode_all(as_datagrams(x), keylog);
  const auto& push = out.back()["decryption"];
  EXPECT_EQ(push["status"], "not decrypted") << push.dump();
  EXPECT_EQ(push["reason"], "KEK_ALGORITHM_KEY has 32 octets, AES-256-CBC needs IV 16 + key 32") << push.dump();
}

TEST(Keylog, ParsesWiresharkTableAndNamesBadLines) {
  coveyctl::Keylog k;
  EXPECT_EQ(coveyctl::parse_keylog("# c\n\n1122334455667788,00112233445566778899aabbccddeeff\r\n", k), "");
  EXPECT_EQ(k.keys.size(), 1u);
  EXPECT_EQ(coveyctl::parse_keylog("1122334455667788\n", k), "keylog line 1: expected initiator-cookie-hex,encryption-key-hex");
  EXPECT_EQ(coveyctl::parse_keylog("\n11223344,00\n", k), "keylog line 2: initiator cookie has 4 octets, needs 8");
}

}  // namespace
}  // namespace covey::test

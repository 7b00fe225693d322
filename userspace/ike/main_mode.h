// IKEv1 Main Mode (RFC 2409 5, 5.1, 5.4) for GDOI's phase 1, both roles, as
// a pure state machine: datagrams in, datagrams and an established SA out.
//
//   Initiator (GM)                       Responder (KS)
//   HDR, SA [, VID...]           -->
//                                <--     HDR, SA [, VID...]
//   HDR, KE, Ni                  -->
//                                <--     HDR, KE, Nr
//   HDR*, IDii, [CERT,] HASH_I/SIG_I -->
//                                <--     HDR*, IDir, [CERT,] HASH_R/SIG_R
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/dh.h"
#include "crypto/ikev1.h"
#include "crypto/sign.h"
#include "ike/phase1.h"

namespace covey::ike {

// A certificate the caller's trust store accepted.
struct PeerCertificate {
  std::string subject;   // "CN=gm3,O=covey lab"
  Bytes subject_der;     // the DER Name, as ID_DER_ASN1_DN carries it
  crypto::PublicKey key;
};

// How this side proves itself and judges the peer.
struct Credentials {
  // Main Mode can key a pre-shared secret only by the peer's address
  // (RFC 2409 5.4): HASH_I is computed before the initiator's ID is seen.
  std::function<std::optional<crypto::SecretBytes>(const Address&)> pre_shared_key;

  // RSA signature authentication: our key and certificate, and a check of
  // the peer's certificate against the configured CA.
  struct Signer {
    crypto::PrivateKey key;
    Bytes certificate_der;
    Bytes subject_der;
  };
  std::shared_ptr<const Signer> signer;
  std::function<crypto::Result<PeerCertificate>(ByteView certificate_der)> verify_certificate;
};

// Why an exchange ended, with the notification IKEv1 defines for it.
struct Failure {
  wire::NotifyType notify;
  std::string reason;  // names the field: "HASH_I mismatch (wrong pre-shared key?)"
};

struct Step {
  std::optional<Bytes> send;            // datagram for the peer (a reply or a notification)
  std::optional<Phase1Sa> established;  // Main Mode completed
  std::optional<Failure> failure;       // the exchange is over and failed
  // Worth telling the operator but not trusted enough to act on: e.g. an
  // unauthenticated AUTHENTICATION-FAILED that arrived after message 4.
  std::optional<std::string> notice;
};

class MainMode {
 public:
  // offers: the initiator's proposals in order of preference; for the
  // responder, the transforms it accepts. local_address: our ID with PSK.
  // vendor_ids: Vendor ID payloads to send in message 1 (initiator) or 2
  // (responder), where IKEv1 carries them (RFC 2408 3.16); the peer's from
  // those messages end up in Phase1Sa::peer_vendor_ids.
  static MainMode initiator(std::vector<Phase1Transform> offers, std::shared_ptr<const Credentials> creds,
                            Endpoint peer, Address local_address, std::vector<Bytes> vendor_ids = {});
  static MainMode responder(std::vector<Phase1Transform> accepted, std::shared_ptr<const Credentials> creds,
                            Endpoint peer, Address local_address, std::vector<Bytes> vendor_ids = {});

  // Initiator: message 1 (random initiator cookie).
  crypto::Result<Bytes> start();
  // Any datagram of this exchange. A retransmitted copy of the last message
  // received is answered with the last message sent, without new work.
  Step receive(ByteView datagram, std::int64_t now);

  // Whether `datagram` repeats the last message received: receive() then
  // only sends the last reply again, without new work.
  bool repeats_last(ByteView datagram) const;
  // The last datagram sent, for the caller's retransmit timer.
  const Bytes& last_sent() const { return last_sent_; }
  bool done() const { return state_ == State::Done || state_ == State::Failed; }
  const wire::Cookie& initiator_cookie() const { return icookie_; }
  const wire::Cookie& responder_cookie() const { return rcookie_; }
  const Endpoint& peer() const { return peer_; }
  // Which message of six was handled last; for logs and state tables.
  int message_number() const;

 private:
  enum class State { Start, SentSa, SentKe, SentAuth, Done, Failed };
  MainMode(bool initiator, std::vector<Phase1Transform> transforms, std::shared_ptr<const Credentials> creds,
           Endpoint peer, Address local, std::vector<Bytes> vendor_ids);
  // The SA payload followed by our Vendor IDs (messages 1 and 2).
  Bytes sa_message(const wire::SaPayload& sa) const;
  void record_vendor_ids(const wire::Message& m);

  Step initiator_receive(const wire::Header& h, ByteView datagram, std::int64_t now);
  Step responder_receive(const wire::Header& h, ByteView datagram, std::int64_t now);
  Step on_sa_offer(const wire::Message& m, ByteView datagram);        // responder, message 1
  Step on_sa_choice(const wire::Message& m);                         // initiator, message 2
  Step on_key_exchange(const wire::Message& m);                      // both, messages 3 and 4
  Step on_authentication(const wire::Header& h, ByteView datagram, std::int64_t now);  // 5 and 6
  crypto::Result<void> derive_keys();
  crypto::Result<Bytes> key_exchange_message();
  crypto::Result<Bytes> authentication_message();
  crypto::Result<Bytes> own_auth_hash() const;
  Step fail(wire::NotifyType notify, std::string reason, bool tell_peer = true);
  Step sent(Bytes datagram);
  wire::Header header(wire::ExchangeType ex) const;

  bool initiator_;
  State state_ = State::Start;
  std::vector<Phase1Transform> transforms_;
  std::shared_ptr<const Credentials> creds_;
  Endpoint peer_;
  Address local_;
  std::vector<Bytes> vendor_ids_, peer_vendor_ids_;
  wire::Cookie icookie_{}, rcookie_{};

  Phase1Transform chosen_;
  Bytes sai_b_;  // the initiator's SA payload body, exactly as sent
  std::optional<crypto::DhKeyPair> dh_;
  Bytes g_xi_, g_xr_, ni_b_, nr_b_;
  crypto::SecretBytes g_xy_, skeyid_;
  crypto::ikev1::SkeyidKeys keys_;
  crypto::SecretBytes enc_key_;
  Bytes iv_;  // next phase-1 CBC IV
  Bytes last_sent_, last_received_;
  std::optional<PeerCertificate> peer_cert_;
};

}  // namespace covey::ike

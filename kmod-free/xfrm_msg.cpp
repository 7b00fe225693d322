#include "xfrm_msg.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/xfrm.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace covey::kmod {

namespace {

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::string short_hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

int af(std::uint8_t family) { return family == 6 ? AF_INET6 : AF_INET; }

std::optional<std::uint8_t> covey_family(std::uint16_t af_family) {
  if (af_family == AF_INET) return 4;
  if (af_family == AF_INET6) return 6;
  return std::nullopt;
}

xfrm_address_t to_xfrm(const Address& a) {
  xfrm_address_t x{};
  std::memcpy(&x, a.bytes.data(), a.size());
  return x;
}

Address from_xfrm(const xfrm_address_t& x, std::uint8_t family) {
  Address a;
  a.family = family;
  std::memcpy(a.bytes.data(), &x, a.size());
  return a;
}

// The largest request covey builds: header, xfrm_usersa_info, two
// algorithm attributes with keys of at most kMaxKeyBytes, a mark and the
// lifetime; well under this.
constexpr std::size_t kRequestCapacity = 2048;
constexpr std::size_t kMaxKeyBytes = 128;

// Appends an attribute of `len` payload bytes, zeroed (padding too), and
// returns its payload to fill in place: keys are written once, into the
// wiped request buffer, and nowhere else.
void* put_attr(nlmsghdr* nlh, std::uint16_t type, std::size_t len) {
  auto* attr = static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(nlh));
  const std::size_t total = MNL_ATTR_HDRLEN + len;
  std::memset(attr, 0, MNL_ALIGN(total));
  attr->nla_type = type;
  attr->nla_len = static_cast<std::uint16_t>(total);
  nlh->nlmsg_len += static_cast<std::uint32_t>(MNL_ALIGN(total));
  return mnl_attr_get_payload(attr);
}

template <class T>
T* put_header(nlmsghdr* nlh) {
  return static_cast<T*>(mnl_nlmsg_put_extra_header(nlh, sizeof(T)));
}

nlmsghdr* start(std::uint8_t* buf, std::uint16_t type, std::uint16_t flags, std::uint32_t seq) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  return nlh;
}

void put_mark(nlmsghdr* nlh, const Mark& m) {
  auto* mark = static_cast<xfrm_mark*>(put_attr(nlh, XFRMA_MARK, sizeof(xfrm_mark)));
  mark->v = m.value;
  mark->m = m.mask;
}

void no_limits(xfrm_lifetime_cfg& lft) {
  lft.soft_byte_limit = XFRM_INF;
  lft.hard_byte_limit = XFRM_INF;
  lft.soft_packet_limit = XFRM_INF;
  lft.hard_packet_limit = XFRM_INF;
}

Bytes finish(const std::uint8_t* buf) {
  auto* nlh = reinterpret_cast<const nlmsghdr*>(buf);
  return Bytes(buf, buf + nlh->nlmsg_len);
}

crypto::Result<crypto::SecretBytes> build_sa(const EspState& s, std::uint16_t type, std::uint32_t seq) {
  const std::string what = s.describe();
  if (s.source.family != s.destination.family)
    return crypto::Error{what + ": source and destination are of different families"};
  if (s.spi == 0) return crypto::Error{what + ": SPI 0 is reserved (RFC 4303)"};
  if (s.encryption.empty() || s.integrity.empty())
    return crypto::Error{what + ": ESP for covey needs both an encryption and an integrity algorithm"};
  if (s.encryption.size() >= sizeof(xfrm_algo{}.alg_name) || s.integrity.size() >= sizeof(xfrm_algo{}.alg_name))
    return crypto::Error{what + ": algorithm name longer than the kernel's 63 characters"};
  if (s.encryption_key.size() > kMaxKeyBytes || s.integrity_key.size() > kMaxKeyBytes)
    return crypto::Error{what + ": key longer than " + std::to_string(kMaxKeyBytes) + " bytes"};
  if (s.truncation_bits == 0 || s.truncation_bits % 8 != 0)
    return crypto::Error{what + ": ICV truncation of " + std::to_string(s.truncation_bits) + " bits is not a whole number of bytes"};

  crypto::SecretBytes scratch(kRequestCapacity);
  nlmsghdr* nlh = start(scratch.data(), type, NLM_F_REQUEST | NLM_F_ACK, seq);
  auto* info = put_header<xfrm_usersa_info>(nlh);
  // Selector family AF_UNSPEC with XFRM_STATE_AF_UNSPEC: the tunnel state
  // carries inner IPv4 and IPv6 alike (the kernel otherwise sets the
  // selector to the outer family).
  info->id.daddr = to_xfrm(s.destination);
  info->id.spi = htonl(s.spi);
  info->id.proto = IPPROTO_ESP;
  info->saddr = to_xfrm(s.source);
  no_limits(info->lft);
  info->lft.hard_add_expires_seconds = s.hard_lifetime_s;
  info->reqid = s.reqid;
  info->family = static_cast<std::uint16_t>(af(s.destination.family));
  info->mode = XFRM_MODE_TUNNEL;
  // Group SAs: many senders share the SPI, so the kernel's per-SA sequence
  // window would drop other senders' packets; TBAR in BPF replaces it.
  info->replay_window = 0;
  info->flags = XFRM_STATE_AF_UNSPEC;

  auto* crypt = static_cast<xfrm_algo*>(put_attr(nlh, XFRMA_ALG_CRYPT, sizeof(xfrm_algo) + s.encryption_key.size()));
  std::memcpy(crypt->alg_name, s.encryption.data(), s.encryption.size());
  crypt->alg_key_len = static_cast<unsigned>(s.encryption_key.size() * 8);
  if (!s.encryption_key.empty()) std::memcpy(crypt->alg_key, s.encryption_key.data(), s.encryption_key.size());

  // XFRMA_ALG_AUTH_TRUNC rather than XFRMA_ALG_AUTH: the ICV length is
  // stated, not left to the kernel's table default.
  auto* auth = static_cast<xfrm_algo_auth*>(
      put_attr(nlh, XFRMA_ALG_AUTH_TRUNC, sizeof(xfrm_algo_auth) + s.integrity_key.size()));
  std::memcpy(auth->alg_name, s.integrity.data(), s.integrity.size());
  auth->alg_key_len = static_cast<unsigned>(s.integrity_key.size() * 8);
  auth->alg_trunc_len = s.truncation_bits;
  if (!s.integrity_key.empty()) std::memcpy(auth->alg_key, s.integrity_key.data(), s.integrity_key.size());

  if (s.mark.mask != 0) put_mark(nlh, s.mark);
  return crypto::SecretBytes(ByteView(scratch.data(), nlh->nlmsg_len));
}

const char* attribute_name(std::uint16_t type) {
  switch (type & NLA_TYPE_MASK) {
    case XFRMA_ALG_AUTH: return "XFRMA_ALG_AUTH";
    case XFRMA_ALG_CRYPT: return "XFRMA_ALG_CRYPT";
    case XFRMA_ALG_COMP: return "XFRMA_ALG_COMP";
    case XFRMA_ENCAP: return "XFRMA_ENCAP";
    case XFRMA_TMPL: return "XFRMA_TMPL";
    case XFRMA_SA: return "XFRMA_SA";
    case XFRMA_POLICY: return "XFRMA_POLICY";
    case XFRMA_SEC_CTX: return "XFRMA_SEC_CTX";
    case XFRMA_LTIME_VAL: return "XFRMA_LTIME_VAL";
    case XFRMA_REPLAY_VAL: return "XFRMA_REPLAY_VAL";
    case XFRMA_POLICY_TYPE: return "XFRMA_POLICY_TYPE";
    case XFRMA_ALG_AEAD: return "XFRMA_ALG_AEAD";
    case XFRMA_ALG_AUTH_TRUNC: return "XFRMA_ALG_AUTH_TRUNC";
    case XFRMA_MARK: return "XFRMA_MARK";
    case XFRMA_REPLAY_ESN_VAL: return "XFRMA_REPLAY_ESN_VAL";
    case XFRMA_SA_EXTRA_FLAGS: return "XFRMA_SA_EXTRA_FLAGS";
    case XFRMA_SET_MARK: return "XFRMA_SET_MARK";
    case XFRMA_IF_ID: return "XFRMA_IF_ID";
    default: return "an XFRM attribute";
  }
}

// The fixed header after nlmsghdr in each request covey sends.
std::size_t request_header_size(std::uint16_t type) {
  switch (type) {
    case XFRM_MSG_NEWSA:
    case XFRM_MSG_UPDSA: return sizeof(xfrm_usersa_info);
    case XFRM_MSG_DELSA:
    case XFRM_MSG_GETSA: return sizeof(xfrm_usersa_id);
    case XFRM_MSG_NEWPOLICY: return sizeof(xfrm_userpolicy_info);
    case XFRM_MSG_DELPOLICY:
    case XFRM_MSG_GETPOLICY: return sizeof(xfrm_userpolicy_id);
    default: return 0;
  }
}

std::string algo_name(const char* name, std::size_t max) { return std::string(name, strnlen(name, max)); }

Selector selector_from(const xfrm_selector& sel) {
  Selector s;
  s.family = covey_family(sel.family).value_or(0);
  const std::uint8_t fam = s.family == 6 ? 6 : 4;
  s.source = from_xfrm(sel.saddr, fam);
  s.destination = from_xfrm(sel.daddr, fam);
  s.source_prefix = sel.prefixlen_s;
  s.destination_prefix = sel.prefixlen_d;
  return s;
}

}  // namespace

std::string Mark::str() const { return short_hex(value) + "/" + short_hex(mask); }

std::string Ownership::str() const {
  return "reqid " + hex32(reqid_first) + "-" + hex32(reqid_last) + ", mark mask " + short_hex(mark_mask);
}

EspAlgorithms esp_algorithms(const EspCipher& cipher, const EspIntegrity& integrity) {
  return {cipher.kernel_name,     cipher.key_bytes,         integrity.kernel_name,
          integrity.key_bytes,    integrity.truncation_bits,
          std::string(cipher.name).append(" with ").append(integrity.name)};
}

std::uint32_t esp_tunnel_inner_mtu(std::uint32_t outer_mtu, const EspAlgorithms& alg,
                                   std::uint8_t outer_family) {
  // crypto_aead_blocksize() of the authenc() transform is the cipher's
  // block; the kernel aligns it to 4 (both are already). A CBC IV is one block.
  std::uint32_t block = 0;
  if (alg.encryption == "cbc(aes)") block = 16;
  if (alg.encryption == "cbc(des3_ede)") block = 8;
  if (block == 0) return 0;
  // x->props.header_len: esp4/esp6_init_state for tunnel mode, no encapsulation.
  const std::uint32_t header = (outer_family == 6 ? 40u : 20u) + 8u + block;
  const std::uint32_t icv = alg.truncation_bits / 8;
  if (outer_mtu < header + icv + block) return 0;
  return ((outer_mtu - header - icv) & ~(block - 1)) - 2;
}

std::string EspState::describe() const {
  std::string s = "ESP SPI " + hex32(spi) + " " + source.str() + " -> " + destination.str() + " reqid " + hex32(reqid);
  if (mark.mask) s.append(" mark ").append(mark.str());
  if (!encryption.empty()) s.append(" ").append(encryption).append("/").append(integrity);
  return s;
}

crypto::Result<GroupSaPair> group_sa_pair(const SaKeys& tek, const EspAlgorithms& a, const GroupAnchors& anchors,
                                          std::uint32_t reqid, Mark steering) {
  auto key_error = [&](const char* which, std::size_t want, std::size_t got) {
    return crypto::Error{"TEK SPI " + hex32(tek.spi) + ": " + std::string(a.name) + " needs a " +
                         std::to_string(want) + "-byte " + which + " key, the TEK has " + std::to_string(got) +
                         " bytes"};
  };
  if (tek.encryption_key.size() != a.encryption_key_bytes)
    return key_error("encryption", a.encryption_key_bytes, tek.encryption_key.size());
  if (tek.integrity_key.size() != a.integrity_key_bytes)
    return key_error("integrity", a.integrity_key_bytes, tek.integrity_key.size());
  if (anchors.local.family != anchors.group.family || anchors.group.family != anchors.in.family)
    return crypto::Error{"TEK SPI " + hex32(tek.spi) + ": anchors " + anchors.local.str() + ", " +
                         anchors.group.str() + ", " + anchors.in.str() + " are not of one family"};
  if (steering.mask == 0 || (steering.value & ~steering.mask) != 0)
    return crypto::Error{"TEK SPI " + hex32(tek.spi) + ": steering mark " + steering.str() +
                         " must be non-empty and within its mask"};

  GroupSaPair pair;
  EspState base;
  base.spi = tek.spi;
  base.reqid = reqid;
  base.encryption = std::string(a.encryption);
  base.encryption_key = tek.encryption_key;
  base.integrity = std::string(a.integrity);
  base.integrity_key = tek.integrity_key;
  base.truncation_bits = a.truncation_bits;
  pair.outbound = base;
  pair.outbound.source = anchors.local;
  pair.outbound.destination = anchors.group;
  pair.outbound.mark = steering;
  pair.inbound = base;
  pair.inbound.source = anchors.group;
  pair.inbound.destination = anchors.in;
  // Arriving ESP carries no steering mark; covey's bits clear is what it
  // looks like, and the mask marks the state as covey's.
  pair.inbound.mark = Mark{0, steering.mask};
  return pair;
}

std::string_view direction_name(Direction d) {
  switch (d) {
    case Direction::In: return "in";
    case Direction::Out: return "out";
    case Direction::Fwd: return "fwd";
  }
  return "?";
}

Selector Selector::any(std::uint8_t family) {
  Selector s;
  s.family = family;
  s.source.family = family;
  s.destination.family = family;
  return s;
}

std::string Selector::str() const {
  return source.str() + "/" + std::to_string(source_prefix) + " -> " + destination.str() + "/" +
         std::to_string(destination_prefix);
}

std::string Policy::describe() const {
  std::string s = "policy dir " + std::string(direction_name(direction)) + " " + selector.str();
  if (mark.mask) s.append(" mark ").append(mark.str());
  s.append(" tmpl ").append(tmpl.source.str()).append(" -> ").append(tmpl.destination.str());
  s.append(" reqid ").append(hex32(tmpl.reqid));
  if (tmpl.optional) s.append(" level use");
  return s;
}

GroupPolicies group_policies(const GroupAnchors& anchors, std::uint8_t inner_family, std::uint32_t reqid,
                             Mark steering, std::uint32_t priority) {
  GroupPolicies p;
  p.out.direction = Direction::Out;
  p.out.selector = Selector::any(inner_family);
  p.out.mark = steering;
  p.out.priority = priority;
  p.out.tmpl = {anchors.local, anchors.group, reqid, false};
  p.in.direction = Direction::In;
  p.in.selector = Selector::any(inner_family);
  p.in.mark = Mark{0, steering.mask};
  p.in.priority = priority;
  // Level use: without in/fwd policies the kernel drops decrypted tunnel
  // traffic (XfrmInNoPols); "use" keeps clear traffic the ACL denies
  // (bypass) flowing, which the BPF programs police instead.
  p.in.tmpl = {anchors.group, anchors.in, reqid, true};
  p.fwd = p.in;
  p.fwd.direction = Direction::Fwd;
  return p;
}

crypto::Result<crypto::SecretBytes> build_new_sa(const EspState& state, std::uint32_t seq) {
  return build_sa(state, XFRM_MSG_NEWSA, seq);
}

crypto::Result<crypto::SecretBytes> build_update_sa(const EspState& state, std::uint32_t seq) {
  return build_sa(state, XFRM_MSG_UPDSA, seq);
}

std::string StateId::describe() const {
  std::string s = (protocol == IPPROTO_ESP ? "ESP" : "proto " + std::to_string(protocol)) + " SPI " + hex32(spi) +
                  " -> " + destination.str();
  if (mark.mask) s.append(" mark ").append(mark.str());
  return s;
}

namespace {

Bytes sa_id_request(std::uint16_t type, std::uint16_t flags, const StateId& id, std::uint32_t seq) {
  std::uint8_t buf[256] = {};
  nlmsghdr* nlh = start(buf, type, flags, seq);
  auto* sid = put_header<xfrm_usersa_id>(nlh);
  sid->daddr = to_xfrm(id.destination);
  sid->spi = htonl(id.spi);
  sid->family = static_cast<std::uint16_t>(af(id.destination.family));
  sid->proto = id.protocol;
  if (id.mark.mask != 0) put_mark(nlh, id.mark);
  return finish(buf);
}

Bytes policy_id_request(std::uint16_t type, std::uint16_t flags, const PolicyId& p, std::uint32_t seq) {
  std::uint8_t buf[512] = {};
  nlmsghdr* nlh = start(buf, type, flags, seq);
  auto* pid = put_header<xfrm_userpolicy_id>(nlh);
  pid->sel.family = static_cast<std::uint16_t>(af(p.selector.family == 6 ? 6 : 4));
  pid->sel.saddr = to_xfrm(p.selector.source);
  pid->sel.daddr = to_xfrm(p.selector.destination);
  pid->sel.prefixlen_s = p.selector.source_prefix;
  pid->sel.prefixlen_d = p.selector.destination_prefix;
  pid->index = p.index;  // non-zero: the kernel looks up by index, and the mark must equal exactly
  pid->dir = static_cast<std::uint8_t>(p.direction);
  put_mark(nlh, p.mark);
  if (p.type != XFRM_POLICY_TYPE_MAIN) {
    auto* type_attr = static_cast<xfrm_userpolicy_type*>(put_attr(nlh, XFRMA_POLICY_TYPE, sizeof(xfrm_userpolicy_type)));
    type_attr->type = p.type;
  }
  return finish(buf);
}

}  // namespace

Bytes build_delete_sa(const StateId& id, std::uint32_t seq) {
  return sa_id_request(XFRM_MSG_DELSA, NLM_F_REQUEST | NLM_F_ACK, id, seq);
}

Bytes build_get_sa(const StateId& id, std::uint32_t seq) { return sa_id_request(XFRM_MSG_GETSA, NLM_F_REQUEST, id, seq); }

crypto::Result<Bytes> build_new_policy(const Policy& p, std::uint32_t seq) {
  const std::string what = p.describe();
  const Selector& sel = p.selector;
  if (sel.family != 4 && sel.family != 6) return crypto::Error{what + ": selector family must be IPv4 or IPv6"};
  const unsigned bits = sel.family == 4 ? 32 : 128;
  if (sel.source.family != sel.family || sel.destination.family != sel.family || sel.source_prefix > bits ||
      sel.destination_prefix > bits)
    return crypto::Error{what + ": selector addresses or prefix lengths do not fit IPv" + std::to_string(sel.family)};
  if (p.tmpl.source.family != p.tmpl.destination.family)
    return crypto::Error{what + ": template source and destination are of different families"};
  if (p.direction != Direction::In && p.direction != Direction::Out && p.direction != Direction::Fwd)
    return crypto::Error{what + ": direction must be in, out or fwd"};

  std::uint8_t buf[512] = {};
  nlmsghdr* nlh = start(buf, XFRM_MSG_NEWPOLICY, NLM_F_REQUEST | NLM_F_ACK, seq);
  auto* info = put_header<xfrm_userpolicy_info>(nlh);
  info->sel.family = static_cast<std::uint16_t>(af(sel.family));
  info->sel.saddr = to_xfrm(sel.source);
  info->sel.daddr = to_xfrm(sel.destination);
  info->sel.prefixlen_s = sel.source_prefix;
  info->sel.prefixlen_d = sel.destination_prefix;
  no_limits(info->lft);
  info->priority = p.priority;
  info->dir = static_cast<std::uint8_t>(p.direction);
  info->action = XFRM_POLICY_ALLOW;

  auto* t = static_cast<xfrm_user_tmpl*>(put_attr(nlh, XFRMA_TMPL, sizeof(xfrm_user_tmpl)));
  t->id.daddr = to_xfrm(p.tmpl.destination);
  t->id.proto = IPPROTO_ESP;  // SPI 0: any state with the reqid and addresses
  t->family = static_cast<std::uint16_t>(af(p.tmpl.destination.family));
  t->saddr = to_xfrm(p.tmpl.source);
  t->reqid = p.tmpl.reqid;
  t->mode = XFRM_MODE_TUNNEL;
  t->optional = p.tmpl.optional ? 1 : 0;
  t->aalgos = t->ealgos = t->calgos = ~0u;

  if (p.mark.mask != 0) put_mark(nlh, p.mark);
  return finish(buf);
}

PolicyId Policy::id() const { return {direction, selector, mark, 0, XFRM_POLICY_TYPE_MAIN}; }

std::string PolicyId::describe() const {
  std::string s = "policy dir " + std::string(direction_name(direction)) + " " + selector.str();
  if (mark.mask) s.append(" mark ").append(mark.str());
  if (index) s.append(" index ").append(std::to_string(index));
  return s;
}

Bytes build_delete_policy(const PolicyId& id, std::uint32_t seq) {
  return policy_id_request(XFRM_MSG_DELPOLICY, NLM_F_REQUEST | NLM_F_ACK, id, seq);
}

Bytes build_get_policy(const PolicyId& id, std::uint32_t seq) {
  return policy_id_request(XFRM_MSG_GETPOLICY, NLM_F_REQUEST, id, seq);
}

Bytes build_delete_policy(const PolicyInfo& p, std::uint32_t seq) { return build_delete_policy(p.id(), seq); }

Bytes build_dump_states(std::uint32_t seq) {
  std::uint8_t buf[64] = {};
  start(buf, XFRM_MSG_GETSA, NLM_F_REQUEST | NLM_F_DUMP, seq);
  return finish(buf);
}

Bytes build_dump_policies(std::uint32_t seq) {
  std::uint8_t buf[64] = {};
  start(buf, XFRM_MSG_GETPOLICY, NLM_F_REQUEST | NLM_F_DUMP, seq);
  return finish(buf);
}

namespace {

// Attributes indexed by type, each checked to be at least `min` long.
struct Attrs {
  const nlattr* at[XFRMA_MAX + 1] = {};
};

crypto::Result<Attrs> collect(const nlmsghdr* nlh, std::size_t header, const char* what) {
  Attrs attrs;
  const auto* payload = static_cast<const std::uint8_t*>(mnl_nlmsg_get_payload(nlh));
  const std::size_t len = mnl_nlmsg_get_payload_len(nlh);
  std::size_t off = MNL_ALIGN(header);
  while (off + sizeof(nlattr) <= len) {
    const auto* a = reinterpret_cast<const nlattr*>(payload + off);
    if (a->nla_len < sizeof(nlattr) || off + a->nla_len > len)
      return crypto::Error{std::string(what) + ": attribute at offset " + std::to_string(off) + " overruns the message"};
    const std::uint16_t type = a->nla_type & NLA_TYPE_MASK;
    if (type <= XFRMA_MAX) attrs.at[type] = a;
    off += MNL_ALIGN(a->nla_len);
  }
  return attrs;
}

std::size_t payload_len(const nlattr* a) { return mnl_attr_get_payload_len(a); }

}  // namespace

namespace {

// The state in a message whose fixed header starts with xfrm_usersa_info
// (NEWSA: the info itself; EXPIRE: xfrm_user_expire), and its attributes
// after `header` bytes.
crypto::Result<StateInfo> state_from(ByteView message, std::uint16_t type, std::size_t header, const char* type_name) {
  if (message.size() < NLMSG_HDRLEN) return crypto::Error{"XFRM state: message shorter than a netlink header"};
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(message.data());
  if (nlh->nlmsg_len > message.size()) return crypto::Error{"XFRM state: message longer than what arrived"};
  if (nlh->nlmsg_type != type)
    return crypto::Error{"XFRM state: message type " + std::to_string(nlh->nlmsg_type) + ", expected " + type_name};
  if (mnl_nlmsg_get_payload_len(nlh) < header)
    return crypto::Error{std::string("XFRM state: payload shorter than the fixed header of ") + type_name};
  xfrm_usersa_info info;
  std::memcpy(&info, mnl_nlmsg_get_payload(nlh), sizeof info);
  auto family = covey_family(info.family);
  if (!family) return crypto::Error{"XFRM state: address family " + std::to_string(info.family) + " is neither IPv4 nor IPv6"};
  StateInfo s;
  s.family = *family;
  s.source = from_xfrm(info.saddr, s.family);
  s.destination = from_xfrm(info.id.daddr, s.family);
  s.spi = ntohl(info.id.spi);
  s.protocol = info.id.proto;
  s.mode = info.mode;
  s.reqid = info.reqid;
  s.replay_window = info.replay_window;
  s.flags = info.flags;
  auto attrs = collect(nlh, header, "XFRM state");
  if (!attrs) return crypto::Error{attrs.error()};
  const std::string what = "XFRM state " + s.id().describe();
  if (const nlattr* a = attrs->at[XFRMA_MARK]) {
    if (payload_len(a) < sizeof(xfrm_mark)) return crypto::Error{what + ": XFRMA_MARK too short"};
    xfrm_mark m;
    std::memcpy(&m, mnl_attr_get_payload(a), sizeof m);
    s.mark = {m.v, m.m};
  }
  // Names only: the keys after them stay in the receive buffer, which the
  // socket wipes.
  if (const nlattr* a = attrs->at[XFRMA_ALG_CRYPT]) {
    if (payload_len(a) < sizeof(xfrm_algo)) return crypto::Error{what + ": XFRMA_ALG_CRYPT too short"};
    s.encryption = algo_name(static_cast<const xfrm_algo*>(mnl_attr_get_payload(a))->alg_name, 64);
  }
  if (const nlattr* a = attrs->at[XFRMA_ALG_AEAD]) {
    if (payload_len(a) < sizeof(xfrm_algo_aead)) return crypto::Error{what + ": XFRMA_ALG_AEAD too short"};
    s.encryption = algo_name(static_cast<const xfrm_algo_aead*>(mnl_attr_get_payload(a))->alg_name, 64);
  }
  if (const nlattr* a = attrs->at[XFRMA_ALG_AUTH_TRUNC]) {
    if (payload_len(a) < sizeof(xfrm_algo_auth)) return crypto::Error{what + ": XFRMA_ALG_AUTH_TRUNC too short"};
    xfrm_algo_auth auth;
    std::memcpy(&auth, mnl_attr_get_payload(a), sizeof auth);
    s.integrity = algo_name(auth.alg_name, sizeof auth.alg_name);
    s.truncation_bits = auth.alg_trunc_len;
    explicit_bzero(&auth, sizeof auth);
  } else if (const nlattr* b = attrs->at[XFRMA_ALG_AUTH]) {
    if (payload_len(b) < sizeof(xfrm_algo)) return crypto::Error{what + ": XFRMA_ALG_AUTH too short"};
    s.integrity = algo_name(static_cast<const xfrm_algo*>(mnl_attr_get_payload(b))->alg_name, 64);
  }
  return s;
}

}  // namespace

crypto::Result<StateInfo> parse_state(ByteView message) {
  return state_from(message, XFRM_MSG_NEWSA, sizeof(xfrm_usersa_info), "XFRM_MSG_NEWSA");
}

crypto::Result<StateExpiry> parse_expire(ByteView message) {
  auto s = state_from(message, XFRM_MSG_EXPIRE, sizeof(xfrm_user_expire), "XFRM_MSG_EXPIRE");
  if (!s) return crypto::Error{s.error()};
  xfrm_user_expire ue;
  std::memcpy(&ue, mnl_nlmsg_get_payload(reinterpret_cast<const nlmsghdr*>(message.data())), sizeof ue);
  return StateExpiry{std::move(*s), ue.hard != 0};
}

std::string StateExpiry::str() const {
  return "kernel expired SA spi " + short_hex(state.spi) + (hard ? " (hard)" : " (soft)") + ": " + state.describe();
}

crypto::Result<PolicyInfo> parse_policy(ByteView message) {
  if (message.size() < NLMSG_HDRLEN) return crypto::Error{"XFRM policy: message shorter than a netlink header"};
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(message.data());
  if (nlh->nlmsg_len > message.size()) return crypto::Error{"XFRM policy: message longer than what arrived"};
  if (nlh->nlmsg_type != XFRM_MSG_NEWPOLICY)
    return crypto::Error{"XFRM policy: message type " + std::to_string(nlh->nlmsg_type) + ", expected XFRM_MSG_NEWPOLICY"};
  if (mnl_nlmsg_get_payload_len(nlh) < sizeof(xfrm_userpolicy_info))
    return crypto::Error{"XFRM policy: payload shorter than struct xfrm_userpolicy_info"};
  xfrm_userpolicy_info info;
  std::memcpy(&info, mnl_nlmsg_get_payload(nlh), sizeof info);
  PolicyInfo p;
  // Socket policies (dir XFRM_POLICY_MAX and above) keep their value here
  // and are never covey's (owns()).
  p.direction = static_cast<Direction>(info.dir);
  p.selector = selector_from(info.sel);
  p.priority = info.priority;
  p.index = info.index;
  p.action = info.action;
  auto attrs = collect(nlh, sizeof(xfrm_userpolicy_info), "XFRM policy");
  if (!attrs) return crypto::Error{attrs.error()};
  const std::string what = "XFRM policy index " + std::to_string(p.index);
  if (const nlattr* a = attrs->at[XFRMA_MARK]) {
    if (payload_len(a) < sizeof(xfrm_mark)) return crypto::Error{what + ": XFRMA_MARK too short"};
    xfrm_mark m;
    std::memcpy(&m, mnl_attr_get_payload(a), sizeof m);
    p.mark = {m.v, m.m};
  }
  if (const nlattr* a = attrs->at[XFRMA_POLICY_TYPE]) {
    if (payload_len(a) < sizeof(xfrm_userpolicy_type)) return crypto::Error{what + ": XFRMA_POLICY_TYPE too short"};
    p.type = static_cast<const xfrm_userpolicy_type*>(mnl_attr_get_payload(a))->type;
  }
  if (const nlattr* a = attrs->at[XFRMA_IF_ID]) {
    if (payload_len(a) < sizeof(std::uint32_t)) return crypto::Error{what + ": XFRMA_IF_ID too short"};
    p.if_id = mnl_attr_get_u32(a);
  }
  if (const nlattr* a = attrs->at[XFRMA_TMPL]) {
    const std::size_t n = payload_len(a) / sizeof(xfrm_user_tmpl);
    if (n * sizeof(xfrm_user_tmpl) != payload_len(a))
      return crypto::Error{what + ": XFRMA_TMPL is not a whole number of templates"};
    const auto* bytes = static_cast<const std::uint8_t*>(mnl_attr_get_payload(a));
    for (std::size_t i = 0; i < n; ++i) {
      xfrm_user_tmpl t;
      std::memcpy(&t, bytes + i * sizeof t, sizeof t);
      const std::uint8_t fam = covey_family(t.family).value_or(4);
      p.templates.push_back({from_xfrm(t.saddr, fam), from_xfrm(t.id.daddr, fam), t.id.proto, t.mode, t.reqid,
                             t.optional != 0});
    }
  }
  return p;
}

crypto::Result<KernelAck> parse_ack(ByteView message) {
  if (message.size() < NLMSG_HDRLEN) return crypto::Error{"netlink ack: shorter than a netlink header"};
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(message.data());
  if (nlh->nlmsg_len > message.size() || nlh->nlmsg_len < NLMSG_HDRLEN)
    return crypto::Error{"netlink ack: length field disagrees with what arrived"};
  const auto* payload = static_cast<const std::uint8_t*>(mnl_nlmsg_get_payload(nlh));
  const std::size_t len = mnl_nlmsg_get_payload_len(nlh);
  KernelAck ack;
  std::size_t tlv_offset = 0;
  if (nlh->nlmsg_type == NLMSG_ERROR) {
    if (len < sizeof(nlmsgerr)) return crypto::Error{"netlink ack: NLMSG_ERROR shorter than struct nlmsgerr"};
    nlmsgerr err;
    std::memcpy(&err, payload, sizeof err);
    ack.error = err.error;
    // The kernel echoes our request after the error: only its header with
    // NLM_F_CAPPED (covey sets NETLINK_CAP_ACK so keys never come back),
    // else all of it.
    tlv_offset = (nlh->nlmsg_flags & NLM_F_CAPPED) ? sizeof(nlmsgerr)
                                                   : sizeof(int) + NLMSG_ALIGN(err.msg.nlmsg_len);
  } else if (nlh->nlmsg_type == NLMSG_DONE) {
    if (len >= sizeof(int)) std::memcpy(&ack.error, payload, sizeof(int));
    tlv_offset = sizeof(int);
  } else {
    return crypto::Error{"netlink ack: message type " + std::to_string(nlh->nlmsg_type) + " is neither NLMSG_ERROR nor NLMSG_DONE"};
  }
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return ack;
  std::size_t off = NLMSG_ALIGN(tlv_offset);
  while (off + sizeof(nlattr) <= len) {
    const auto* a = reinterpret_cast<const nlattr*>(payload + off);
    if (a->nla_len < sizeof(nlattr) || off + a->nla_len > len) break;  // the error itself still stands
    const std::size_t plen = a->nla_len - sizeof(nlattr);
    const auto* data = payload + off + MNL_ATTR_HDRLEN;
    switch (a->nla_type & NLA_TYPE_MASK) {
      case NLMSGERR_ATTR_MSG:
        ack.message.assign(reinterpret_cast<const char*>(data), strnlen(reinterpret_cast<const char*>(data), plen));
        break;
      case NLMSGERR_ATTR_OFFS:
        if (plen >= sizeof(std::uint32_t)) {
          std::uint32_t o;
          std::memcpy(&o, data, sizeof o);
          ack.offset = o;
        }
        break;
      default: break;
    }
    off += MNL_ALIGN(a->nla_len);
  }
  return ack;
}

std::string attribute_at(ByteView request, std::uint32_t offset) {
  if (request.size() < NLMSG_HDRLEN) return "";
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(request.data());
  std::size_t off = NLMSG_HDRLEN + MNL_ALIGN(request_header_size(nlh->nlmsg_type));
  const std::size_t end = std::min<std::size_t>(nlh->nlmsg_len, request.size());
  while (off + sizeof(nlattr) <= end) {
    const auto* a = reinterpret_cast<const nlattr*>(request.data() + off);
    if (a->nla_len < sizeof(nlattr)) return "";
    if (offset >= off && offset < off + a->nla_len) return attribute_name(a->nla_type);
    off += MNL_ALIGN(a->nla_len);
  }
  return "";
}

std::string KernelAck::str(ByteView request) const {
  const int e = -error;
  const char* name = e > 0 ? strerrorname_np(e) : nullptr;
  std::string s = std::string(name ? name : "errno " + std::to_string(e)) + ": " + std::strerror(e);
  // The kernel's own sentence first when it gave one (extended ack); for
  // most XFRM checks the errno is all Linux 6.1 says.
  if (!message.empty()) s = "\"" + message + "\" (" + s + ")";
  if (offset && !request.empty()) {
    std::string attr = attribute_at(request, *offset);
    if (!attr.empty()) s += " at " + attr;
  }
  return s;
}

std::string StateInfo::describe() const {
  std::string s = (protocol == IPPROTO_ESP ? std::string("ESP") : "proto " + std::to_string(protocol)) + " SPI " +
                  hex32(spi) + " " + source.str() + " -> " + destination.str() + " reqid " + hex32(reqid);
  if (mark.mask) s.append(" mark ").append(mark.str());
  return s;
}

std::string PolicyInfo::describe() const {
  std::string s = "policy dir " + std::string(direction_name(direction)) + " " + selector.str();
  if (mark.mask) s.append(" mark ").append(mark.str());
  s.append(" index ").append(std::to_string(index));
  for (const auto& t : templates)
    s.append(" tmpl ").append(t.source.str()).append(" -> ").append(t.destination.str()).append(" reqid ").append(hex32(t.reqid));
  return s;
}

bool owns(const Ownership& o, const StateInfo& s) {
  return s.protocol == IPPROTO_ESP && o.owns_reqid(s.reqid) && o.owns_mark(s.mark);
}

bool owns(const Ownership& o, const PolicyInfo& p) {
  if (!o.owns_mark(p.mark) || p.templates.empty() || p.type != XFRM_POLICY_TYPE_MAIN || p.if_id != 0) return false;
  if (p.direction != Direction::In && p.direction != Direction::Out && p.direction != Direction::Fwd) return false;
  for (const auto& t : p.templates)
    if (!o.owns_reqid(t.reqid)) return false;
  return true;
}

bool lookup_would_match(const StateId& lookup, const StateInfo& other) {
  // net/xfrm/xfrm_state.c: the lookup value is the request's mark & mask;
  // a state matches when (value & state.mask) == state.value.
  const std::uint32_t value = lookup.mark.value & lookup.mark.mask;
  return other.protocol == lookup.protocol && other.spi == lookup.spi && other.destination == lookup.destination &&
         (value & other.mark.mask) == other.mark.value;
}

namespace {

// The foreign state that DELSA/UPDSA for `id` could reach instead, if any.
const StateInfo* foreign_twin(const StateId& id, const std::vector<StateInfo>& states, const Ownership& o) {
  for (const auto& other : states)
    if (!owns(o, other) && lookup_would_match(id, other)) return &other;
  return nullptr;
}

}  // namespace

FlushPlan plan_flush(const std::vector<StateInfo>& states, const std::vector<PolicyInfo>& policies,
                     const Ownership& ownership) {
  FlushPlan plan;
  for (const auto& p : policies) {
    if (owns(ownership, p))
      plan.policies.push_back(p);
    else
      ++plan.foreign_policies;
  }
  for (const auto& s : states) {
    if (!owns(ownership, s)) {
      ++plan.foreign_states;
      continue;
    }
    if (const StateInfo* twin = foreign_twin(s.id(), states, ownership))
      plan.refused.push_back("not deleting covey's " + s.describe() + ": the kernel's lookup for it would also match the foreign " +
                             twin->describe() + "; remove that one first");
    else
      plan.states.push_back(s);
  }
  return plan;
}

crypto::Result<void> check_lookup_answer(const StateId& id, const StateInfo& found, const Ownership& ownership) {
  if (!owns(ownership, found)) {
    if (found.id() == id)
      return crypto::Error{found.describe() + " is not covey's (" + ownership.str() + "); leaving it alone"};
    return crypto::Error{id.describe() + ": the kernel's lookup reaches the foreign " + found.describe() +
                         " first; refusing rather than change it"};
  }
  if (found.id() != id)
    return crypto::Error{id.describe() + ": the kernel's lookup reaches " + found.describe() + " instead; leaving it alone"};
  return {};
}

crypto::Result<void> check_lookup_answer(const Policy& wanted, const PolicyInfo& found, const Ownership& ownership) {
  if (!owns(ownership, found))
    return crypto::Error{found.describe() + " is not covey's (" + ownership.str() + "); leaving it alone"};
  const bool same = found.direction == wanted.direction && found.selector == wanted.selector && found.mark == wanted.mark &&
                    found.templates.size() == 1 && found.templates[0].reqid == wanted.tmpl.reqid &&
                    found.templates[0].source == wanted.tmpl.source &&
                    found.templates[0].destination == wanted.tmpl.destination;
  if (!same)
    return crypto::Error{"the kernel's lookup for " + wanted.describe() + " reaches " + found.describe() +
                         " instead; leaving it alone"};
  return {};
}

}  // namespace covey::kmod

#include "config/policy_syntax.h"

#include <charconv>
#include <optional>
#include <utility>
#include <vector>

#include "config/toml_reader.h"

namespace covey::config {

namespace {

struct Word {
  std::string_view text;
  std::size_t offset;
};

std::vector<Word> split_words(std::string_view line) {
  std::vector<Word> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) words.push_back({line.substr(start, i - start), start});
  }
  return words;
}

template <class T>
std::optional<T> number(std::string_view s) {
  T v{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

struct Named {
  std::string_view name;
  std::uint16_t value;
};

constexpr Named kProtocols[] = {{"ip", 0},   {"ipv6", 0}, {"icmp", 1}, {"tcp", 6},
                                {"udp", 17}, {"gre", 47}, {"esp", 50}, {"ahp", 51}};

// The Cisco port names likely in a GET VPN ACL (IOS prints these in
// "show access-lists", so pasted lines carry them).
constexpr Named kPorts[] = {
    {"ftp", 21},    {"ssh", 22},     {"telnet", 23},  {"smtp", 25},  {"domain", 53},         {"bootps", 67},
    {"bootpc", 68}, {"tftp", 69},    {"www", 80},     {"ntp", 123},  {"snmp", 161},          {"bgp", 179},
    {"https", 443}, {"isakmp", 500}, {"syslog", 514}, {"gdoi", 848}, {"non500-isakmp", 4500}};

template <std::size_t N>
std::vector<std::string> names_of(const Named (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& n : table) names.emplace_back(n.name);
  return names;
}

// Walks the words of one ACL line; every failure names the word it stopped at.
class AclParser {
 public:
  explicit AclParser(std::string_view line) : line_(line), words_(split_words(line)) {}

  std::variant<gdoi::AclEntry, SyntaxError> parse();

 private:
  struct Side {
    std::optional<gdoi::Prefix> prefix;  // nullopt: "any", family still open
    gdoi::PortRange ports;
    std::size_t offset = 0;
  };

  bool at_end() const { return next_ >= words_.size(); }
  const Word& peek() const { return words_[next_]; }
  Word take() { return words_[next_++]; }
  SyntaxError fail(std::size_t offset, std::string message) { return {offset, std::move(message)}; }
  SyntaxError fail_at_end(std::string message) { return {line_.size(), std::move(message)}; }

  std::optional<SyntaxError> address(Side& side, std::string_view which);
  std::optional<SyntaxError> ports(Side& side, bool ports_allowed, std::string_view protocol);
  std::optional<SyntaxError> port_number(std::uint16_t& port);

  std::string_view line_;
  std::vector<Word> words_;
  std::size_t next_ = 0;
};

std::variant<gdoi::AclEntry, SyntaxError> AclParser::parse() {
  gdoi::AclEntry e;
  if (at_end()) return fail(0, "empty ACL entry; write e.g. \"permit ip 192.168.0.0/16 192.168.0.0/16\"");

  Word action = take();
  if (action.text == "permit") {
    e.action = gdoi::AclEntry::Action::Permit;
  } else if (action.text == "deny") {
    e.action = gdoi::AclEntry::Action::Deny;
  } else if (number<unsigned>(action.text)) {
    return fail(action.offset, "remove the sequence number \"" + std::string(action.text) +
                                   "\": entries apply in the order of the list");
  } else if (action.text == "remark") {
    return fail(action.offset, "remarks belong in TOML comments (# ...), not in the ACL list");
  } else {
    return fail(action.offset, "an ACL entry starts with permit (encrypt) or deny (send in clear), not \"" +
                                   std::string(action.text) + "\"");
  }

  if (at_end())
    return fail_at_end("missing protocol after \"" + std::string(action.text) + "\"; write e.g. ip");
  Word protocol = take();
  std::optional<unsigned> proto;
  for (const auto& p : kProtocols)
    if (protocol.text == p.name) proto = p.value;
  if (!proto) proto = number<unsigned>(protocol.text);
  if (!proto || *proto > 255) {
    return fail(protocol.offset, "unknown protocol \"" + std::string(protocol.text) + "\"" +
                                     detail::did_you_mean(protocol.text, names_of(kProtocols)) +
                                     "; write ip, tcp, udp, icmp, esp, ahp, gre or a number 0-255");
  }
  e.protocol = static_cast<std::uint8_t>(*proto);
  const bool ports_allowed = e.protocol == 6 || e.protocol == 17;

  Side src, dst;
  if (auto err = address(src, "source")) return *err;
  if (auto err = ports(src, ports_allowed, protocol.text)) return *err;
  if (auto err = address(dst, "destination")) return *err;
  if (auto err = ports(dst, ports_allowed, protocol.text)) return *err;

  if (!at_end()) {
    const Word& extra = peek();
    if (extra.text == "log" || extra.text == "log-input")
      return fail(extra.offset,
                  "remove \"" + std::string(extra.text) + "\": covey counts matches per entry instead");
    return fail(extra.offset, "unexpected \"" + std::string(extra.text) +
                                  "\": an entry ends after the destination and its port match");
  }

  if (src.prefix && dst.prefix && src.prefix->family != dst.prefix->family)
    return fail(dst.offset, "source is IPv" + std::to_string(src.prefix->family) + " but destination is IPv" +
                                std::to_string(dst.prefix->family) + "; write one entry per address family");
  // "ipv6" (Cisco's IPv6 ACLs' word for any protocol) names the family
  // even when no address does: "permit ipv6 any any".
  const bool ipv6 = protocol.text == "ipv6";
  if (ipv6)
    for (const Side* side : {&src, &dst})
      if (side->prefix && side->prefix->family == 4)
        return fail(side->offset, std::string("an \"ipv6\" entry with an IPv4 ") +
                                      (side == &src ? "source" : "destination") +
                                      "; write ip for IPv4 entries");
  std::uint8_t family = src.prefix ? src.prefix->family : dst.prefix ? dst.prefix->family : ipv6 ? 6 : 4;
  gdoi::Prefix any;
  any.family = family;
  e.source = src.prefix.value_or(any);
  e.destination = dst.prefix.value_or(any);
  e.source_port = src.ports;
  e.destination_port = dst.ports;
  if (family == 6 && e.protocol == 1) e.protocol = 58;  // "icmp" in an IPv6 entry is ICMPv6, as in IOS
  return e;
}

std::optional<SyntaxError> AclParser::address(Side& side, std::string_view which) {
  if (at_end())
    return fail_at_end("missing " + std::string(which) + "; write any, host A, A/len or A wildcard");
  Word w = take();
  side.offset = w.offset;
  if (w.text == "any") return std::nullopt;
  if (w.text == "host") {
    if (at_end()) return fail_at_end("missing address after \"host\"");
    Word a = take();
    auto addr = Address::parse(a.text);
    if (!addr) return fail(a.offset, detail::quote(a.text) + " is not an IPv4 or IPv6 address");
    side.prefix = gdoi::Prefix::host(*addr);
    return std::nullopt;
  }
  std::string why;
  if (w.text.find('/') != std::string_view::npos) {
    side.prefix = gdoi::Prefix::parse(w.text, &why);
    if (!side.prefix) return fail(w.offset, std::string(which) + " " + why);
    return std::nullopt;
  }
  auto addr = Address::parse(w.text);
  if (!addr) {
    return fail(w.offset, detail::quote(w.text) + " is not a " + std::string(which) +
                              "; write any, host A, A/len or A wildcard");
  }
  if (addr->family == 6)
    return fail(w.offset, "IPv6 entries take a prefix: write " + addr->str() + "/128 or host " + addr->str());

  // Cisco's "A wildcard": the wildcard is an inverted netmask.
  std::optional<Address> wildcard;
  if (!at_end()) wildcard = Address::parse(peek().text);
  if (!wildcard || wildcard->family != 4) {
    return fail(w.offset, "after " + addr->str() + " write a wildcard mask (e.g. 0.0.0.255), or write " +
                              addr->str() + "/24 or host " + addr->str());
  }
  Word mask_word = take();
  std::uint32_t inverse = (std::uint32_t{wildcard->bytes[0]} << 24) |
                          (std::uint32_t{wildcard->bytes[1]} << 16) |
                          (std::uint32_t{wildcard->bytes[2]} << 8) | wildcard->bytes[3];
  // Contiguous means the wildcard is 2^k - 1: only low bits set.
  if ((inverse & (inverse + 1)) != 0) {
    return fail(mask_word.offset,
                "wildcard mask " + std::string(mask_word.text) +
                    " is not contiguous; covey matches prefixes, so write one entry per prefix");
  }
  unsigned length = 32;
  for (std::uint32_t m = inverse; m != 0; m >>= 1) --length;
  side.prefix = gdoi::Prefix::parse(addr->str() + "/" + std::to_string(length), &why);
  if (!side.prefix) return fail(w.offset, std::string(which) + " " + why);
  return std::nullopt;
}

std::optional<SyntaxError> AclParser::port_number(std::uint16_t& port) {
  if (at_end()) return fail_at_end("missing port number");
  Word w = take();
  for (const auto& p : kPorts) {
    if (w.text == p.name) {
      port = p.value;
      return std::nullopt;
    }
  }
  auto n = number<unsigned>(w.text);
  if (!n || *n > 65535) {
    return fail(w.offset, detail::quote(w.text) + " is not a port (0-65535 or a name such as isakmp)" +
                              detail::did_you_mean(w.text, names_of(kPorts)));
  }
  port = static_cast<std::uint16_t>(*n);
  return std::nullopt;
}

std::optional<SyntaxError> AclParser::ports(Side& side, bool ports_allowed, std::string_view protocol) {
  if (at_end()) return std::nullopt;
  const Word op = peek();
  if (op.text != "eq" && op.text != "lt" && op.text != "gt" && op.text != "range" && op.text != "neq")
    return std::nullopt;
  if (!ports_allowed) {
    return fail(op.offset, "port matches apply only to tcp and udp, not " + std::string(protocol) +
                               "; write the protocol as tcp or udp, or remove \"" + std::string(op.text) +
                               " ...\"");
  }
  take();
  if (op.text == "neq")
    return fail(op.offset,
                "neq is not one port range; write two entries, lt N and gt N, with the same action");
  std::uint16_t first = 0, last = 0;
  if (auto err = port_number(first)) return err;
  if (op.text == "eq") {
    side.ports = {first, first};
  } else if (op.text == "lt") {
    if (first == 0) return fail(op.offset, "lt 0 matches no port");
    side.ports = {0, static_cast<std::uint16_t>(first - 1)};
  } else if (op.text == "gt") {
    if (first == 65535) return fail(op.offset, "gt 65535 matches no port");
    side.ports = {static_cast<std::uint16_t>(first + 1), 65535};
  } else {
    if (auto err = port_number(last)) return err;
    if (last < first)
      return fail(op.offset, "range " + std::to_string(first) + " " + std::to_string(last) +
                                 " is backwards; write range " + std::to_string(last) + " " +
                                 std::to_string(first));
    side.ports = {first, last};
  }
  return std::nullopt;
}

}  // namespace

std::variant<gdoi::AclEntry, SyntaxError> parse_acl_entry(std::string_view line) {
  return AclParser(line).parse();
}

std::variant<gdoi::TekTransform, SyntaxError> parse_tek_transform(std::string_view text) {
  using Cipher = gdoi::TekTransform::Cipher;
  using Integrity = gdoi::TekTransform::Integrity;
  std::vector<Word> words = split_words(text);
  std::optional<Cipher> cipher;
  std::optional<Integrity> integrity;
  const std::size_t end = text.size();

  for (std::size_t i = 0; i < words.size(); ++i) {
    std::string_view w = words[i].text;
    std::size_t at = words[i].offset;
    // Cisco writes the AES and GCM key size as a separate word ("esp-aes 256").
    std::string joined(w);
    if ((w == "esp-aes" || w == "esp-gcm") && i + 1 < words.size() && number<unsigned>(words[i + 1].text))
      joined.append(1, '-').append(words[++i].text);

    std::optional<Cipher> c;
    std::optional<Integrity> m;
    if (joined == "esp-aes" || joined == "esp-aes-128")
      c = Cipher::Aes128Cbc;  // IOS: esp-aes alone is 128
    else if (joined == "esp-aes-256")
      c = Cipher::Aes256Cbc;
    else if (joined == "esp-3des")
      c = Cipher::TripleDesCbc;
    else if (joined == "esp-gcm" || joined == "esp-gcm-128")
      c = Cipher::AesGcm128;
    else if (joined == "esp-gcm-256")
      c = Cipher::AesGcm256;
    else if (joined == "esp-sha-hmac")
      m = Integrity::HmacSha1_96;
    else if (joined == "esp-sha256-hmac")
      m = Integrity::HmacSha256_128;
    else if (joined == "esp-aes-192" || joined == "esp-gcm-192")
      return SyntaxError{at, "192-bit AES is not supported; write esp-aes 256 esp-sha256-hmac"};
    else if (joined == "esp-des" || joined == "esp-null" || joined == "esp-md5-hmac")
      return SyntaxError{at, joined + " is not safe and not supported; write esp-aes 256 esp-sha256-hmac"};
    else if (joined == "esp-sha384-hmac" || joined == "esp-sha512-hmac")
      return SyntaxError{at, joined + " is not supported for TEKs; write esp-sha256-hmac"};
    else
      return SyntaxError{at, "unknown transform \"" + joined + "\"" +
                                 detail::did_you_mean(joined, {"esp-aes", "esp-3des", "esp-gcm",
                                                               "esp-sha-hmac", "esp-sha256-hmac"}) +
                                 "; write e.g. esp-aes 256 esp-sha256-hmac"};

    if (c) {
      if (cipher) return SyntaxError{at, "a transform set has one cipher; remove \"" + joined + "\""};
      cipher = c;
    } else {
      if (integrity)
        return SyntaxError{at, "a transform set has one integrity transform; remove \"" + joined + "\""};
      integrity = m;
    }
  }

  if (!cipher) return SyntaxError{end, "no cipher; write e.g. esp-aes 256 esp-sha256-hmac"};
  const bool gcm = *cipher == Cipher::AesGcm128 || *cipher == Cipher::AesGcm256;
  if (gcm && integrity)
    return SyntaxError{0, "GCM authenticates by itself; remove the esp-...-hmac transform"};
  if (!gcm && !integrity)
    return SyntaxError{end, "CBC without integrity is open to forgery; add esp-sha256-hmac"};
  return gdoi::TekTransform{*cipher, integrity.value_or(Integrity::None)};
}

}  // namespace covey::config

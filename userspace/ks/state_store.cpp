#include "ks/state_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "crypto/hash.h"
#include "ks/store.h"

namespace covey::ks {

using crypto::Error;
using nlohmann::json;

namespace {

constexpr std::string_view kMagic = "covey-ks-state";

// Hex key material passes through json strings and the file text; wipe
// them before they are freed, as SecretBytes does for the keys themselves.
void wipe(std::string& s) {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
}

void wipe(json& j) {
  if (j.is_string()) {
    wipe(j.get_ref<std::string&>());
  } else if (j.is_structured()) {
    for (auto& e : j) wipe(e);
  }
}

struct Wiped {
  json& j;
  ~Wiped() { wipe(j); }
};

struct WipedText {
  std::string& s;
  ~WipedText() { wipe(s); }
};

std::string sys_error(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// The length of the well-formed UTF-8 sequence (RFC 3629 section 4) that
// `s` starts with, 0 when there is none. JSON text is UTF-8 and restore's
// parser refuses anything else.
std::size_t utf8_length(std::string_view s) {
  auto at = [&](std::size_t i) -> unsigned { return i < s.size() ? static_cast<unsigned char>(s[i]) : 0u; };
  auto tail = [&](std::size_t i) { return (at(i) & 0xC0u) == 0x80u; };
  unsigned c = at(0);
  if (c >= 0xC2 && c <= 0xDF) return tail(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    // No overlongs, no surrogates.
    unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return at(1) >= lo && at(1) <= hi && tail(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    // No overlongs, nothing past U+10FFFF.
    unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return at(1) >= lo && at(1) <= hi && tail(2) && tail(3) ? 4 : 0;
  }
  return 0;
}

// The state file's JSON text, written straight from the groups. Building a
// JSON DOM of every member, pretty-printing and freeing it once a second
// cost the key server a sixth of its CPU under registration load; this
// writes the same version-1 schema (restore_state reads any key order and
// any whitespace) in one pass into one buffer. The few fields that are
// key material are remembered and wiped when the text is done; when the
// buffer grows, the storage it leaves is wiped first.
class StateText {
 public:
  explicit StateText(std::size_t expected_size)
      : data_(std::make_unique_for_overwrite<char[]>(expected_size)), capacity_(expected_size) {}
  ~StateText() { wipe_secrets(data_.get()); }
  StateText(const StateText&) = delete;
  StateText& operator=(const StateText&) = delete;

  std::string_view view() const { return {data_.get(), size_}; }

  StateText& raw(std::string_view s) {
    room(s.size());
    std::memcpy(data_.get() + size_, s.data(), s.size());
    size_ += s.size();
    return *this;
  }
  template <class Int>
  StateText& number(Int v) {
    char buf[24];
    auto done = std::to_chars(buf, buf + sizeof buf, v);
    return raw(std::string_view(buf, static_cast<std::size_t>(done.ptr - buf)));
  }
  template <class Int>
  StateText& number_or_null(const std::optional<Int>& v) {
    return v ? number(*v) : raw("null");
  }
  // As Address::str() writes it; IPv4 without inet_ntop, whose sprintf
  // was a third of the time of a save of IPv4 members.
  StateText& address(const Address& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    std::size_t n = 0;
    if (a.family == 4) {
      char* end = buf;
      for (std::size_t i = 0; i < 4; ++i) {
        if (i) *end++ = '.';
        end = std::to_chars(end, buf + 4 * i + 4, a.bytes[i]).ptr;  // "255." fits in 4 per byte
      }
      n = static_cast<std::size_t>(end - buf);
    } else {
      ::inet_ntop(AF_INET6, a.bytes.data(), buf, sizeof buf);
      n = std::strlen(buf);
    }
    return raw("\"").raw(std::string_view(buf, n)).raw("\"");
  }

  // A JSON string. Bytes that are not UTF-8 (a certificate subject in
  // another charset) become U+FFFD: the parser would refuse the file.
  StateText& string(std::string_view s);
  StateText& hex(ByteView b) {
    raw("\"");
    put_hex(b);
    return raw("\"");
  }
  // Key material: hex like any other bytes, and wiped with the text.
  StateText& secret_hex(ByteView b) {
    raw("\"");
    secrets_.emplace_back(size_, 2 * b.size());
    put_hex(b);
    return raw("\"");
  }

 private:
  // A plain buffer rather than std::string: raw() is an inline bounds
  // check and a memcpy, and growing wipes the storage it leaves.
  void room(std::size_t n) {
    if (capacity_ - size_ < n) grow(n);
  }
  [[gnu::noinline]] void grow(std::size_t n) {
    std::size_t capacity = std::max(2 * capacity_, size_ + n);
    auto bigger = std::make_unique_for_overwrite<char[]>(capacity);
    if (size_ > 0) std::memcpy(bigger.get(), data_.get(), size_);
    wipe_secrets(data_.get());
    data_ = std::move(bigger);
    capacity_ = capacity;
  }
  void put_hex(ByteView b) {
    static constexpr char kDigits[] = "0123456789abcdef";
    room(2 * b.size());
    char* out = data_.get() + size_;
    for (std::uint8_t byte : b) {
      *out++ = kDigits[byte >> 4];
      *out++ = kDigits[byte & 0x0F];
    }
    size_ += 2 * b.size();
  }
  void wipe_secrets(char* data) {
    for (const auto& [at, n] : secrets_) OPENSSL_cleanse(data + at, n);
  }

  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0, capacity_ = 0;
  std::vector<std::pair<std::size_t, std::size_t>> secrets_;  // offset, length
};

StateText& StateText::string(std::string_view s) {
  raw("\"");
  std::size_t plain = 0;  // start of the run that needs no escaping
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (std::size_t n = utf8_length(s.substr(i)); n > 0) {
        i += n;
        continue;
      }
    }
    raw(s.substr(plain, i - plain));
    switch (c) {
      case '"': raw("\\\""); break;
      case '\\': raw("\\\\"); break;
      case '\n': raw("\\n"); break;
      case '\r': raw("\\r"); break;
      case '\t': raw("\\t"); break;
      default:
        if (c < 0x20) {
          static constexpr char kDigits[] = "0123456789abcdef";
          const char u[] = {'\\', 'u', '0', '0', kDigits[c >> 4], kDigits[c & 0x0F]};
          raw(std::string_view(u, sizeof u));
        } else {
          raw("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
        }
    }
    plain = ++i;
  }
  raw(s.substr(plain));
  return raw("\"");
}

// One member, one line; the fields restore's parse_group reads.
void write_member(StateText& out, const Member& m) {
  out.raw("{\"address\":").address(m.address);
  out.raw(",\"identity\":").string(m.identity);
  out.raw(",\"registered_at\":").number(m.registered_at);
  out.raw(",\"sids\":[");
  for (std::size_t i = 0; i < m.sids.size(); ++i) {
    if (i) out.raw(",");
    out.number(m.sids[i]);
  }
  out.raw("],\"registrations\":").number(m.registrations);
  out.raw(",\"port\":").number(m.port);
  out.raw(",\"registered_to\":");
  if (m.registered_to)
    out.address(*m.registered_to);
  else
    out.raw("null");
  out.raw(",\"last_acked_seq\":").number_or_null(m.last_acked_seq);
  out.raw(",\"missed_rekeys\":").number(m.missed_rekeys);
  out.raw(",\"covey_features\":");
  if (m.traits.covey)
    out.number(m.traits.features);
  else
    out.raw("null");
  out.raw("}");
}

void write_group(StateText& out, const Group& g, bool with_members = true) {
  const gdoi::GroupPolicy& p = g.policy();
  // The keys and counters only: the members are written from the group in
  // place, never copied.
  Group::State s = g.export_keys();
  out.raw("  {\n   \"identity\": ").number(p.identity);
  out.raw(",\n   \"name\": ").string(p.name);
  out.raw(",\n   \"policy\": {\"tek_transform\": ").string(p.tek.str());
  out.raw(", \"kek_cipher\": ").string(crypto::name(p.kek.cipher));
  out.raw(", \"kek_signature\": ").string(p.kek.signature_str());
  out.raw("},\n   \"kek\": {\"spi\": ").hex(s.kek.spi);
  out.raw(", \"algorithm_key\": ").secret_hex(s.kek.algorithm_key);
  out.raw(", \"signature_public_key\": ").hex(s.kek.signature_public_key);
  out.raw(", \"expires_at\": ").number(s.kek_expires_at);
  out.raw("},\n   \"teks\": [");
  for (std::size_t i = 0; i < s.teks.size(); ++i) {
    const Group::LiveTek& t = s.teks[i];
    out.raw(i ? ",\n    {\"spi\": " : "\n    {\"spi\": ").number(t.tek.spi);
    out.raw(", \"encryption_key\": ").secret_hex(t.tek.encryption_key);
    out.raw(", \"integrity_key\": ").secret_hex(t.tek.integrity_key);
    out.raw(", \"created_at\": ").number(t.created_at);
    out.raw(", \"expires_at\": ").number(t.expires_at);
    out.raw("}");
  }
  out.raw(s.teks.empty() ? "],\n   \"used_spis\": [" : "\n   ],\n   \"used_spis\": [");
  bool first = true;
  for (std::uint32_t spi : s.used_spis) {
    if (!first) out.raw(", ");
    first = false;
    out.number(spi);
  }
  // Shared keys (with_members false, ks/coop.h) carry no SID mark: each
  // key server of a cluster has SID ranges of its own.
  out.raw("],\n   \"next_sid\": ").number(with_members ? s.next_sid : 0u);
  out.raw(",\n   \"seq\": ").number(s.seq);
  out.raw(",\n   \"pseudotime_epoch\": ").number(s.pseudotime_epoch_ms);  // Unix ms
  out.raw(",\n   \"members\": [");
  first = true;
  for (const auto& [addr, m] : g.members()) {
    if (!with_members) break;
    out.raw(first ? "\n    " : ",\n    ");
    first = false;
    write_member(out, m);
  }
  out.raw(first ? "]\n  }" : "\n   ]\n  }");
}

// What the text will take, so that it is allocated once: a member line is
// about 180 bytes with IPv4 addresses and short identities, a group's keys
// and counters a few kilobytes.
std::size_t expected_size(const Groups& groups) {
  std::size_t n = 256;
  for (const auto& [id, g] : groups.all()) n += 8192 + 224 * g->members().size();
  return n;
}

// A field that is missing or of the wrong type, named by its path in the document.
struct FieldError {
  std::string message;
};

const json& field(const json& j, const char* name, const std::string& where) {
  if (!j.is_object() || !j.contains(name)) throw FieldError{where + ": no field \"" + name + "\""};
  return j[name];
}

template <class T>
T number(const json& j, const char* name, const std::string& where) {
  const json& v = field(j, name, where);
  if (!v.is_number_integer()) throw FieldError{where + "." + name + " is not an integer"};
  // Range check through the widest type the format uses.
  if constexpr (std::is_unsigned_v<T>) {
    if (!v.is_number_unsigned()) throw FieldError{where + "." + name + " is negative"};
    auto u = v.get<std::uint64_t>();
    if (u > std::numeric_limits<T>::max()) throw FieldError{where + "." + name + " is out of range"};
    return static_cast<T>(u);
  } else {
    return v.get<T>();
  }
}

std::string text(const json& j, const char* name, const std::string& where) {
  const json& v = field(j, name, where);
  if (!v.is_string()) throw FieldError{where + "." + name + " is not a string"};
  return v.get<std::string>();
}

Bytes bytes(const json& j, const char* name, const std::string& where) {
  const json& v = field(j, name, where);
  Bytes out;
  if (!v.is_string() || !from_hex(v.get_ref<const std::string&>(), out))
    throw FieldError{where + "." + name + " is not hex"};
  return out;
}

crypto::SecretBytes secret(const json& j, const char* name, const std::string& where) {
  Bytes b = bytes(j, name, where);
  crypto::SecretBytes s{ByteView(b)};
  if (!b.empty()) OPENSSL_cleanse(b.data(), b.size());
  return s;
}

const json& array(const json& j, const char* name, const std::string& where) {
  const json& v = field(j, name, where);
  if (!v.is_array()) throw FieldError{where + "." + name + " is not an array"};
  return v;
}

Member parse_member(const json& j, const std::string& mw) {
  Member m;
  std::string a = text(j, "address", mw);
  auto addr = Address::parse(a);
  if (!addr) throw FieldError{mw + ".address \"" + a + "\" is not an IP address"};
  m.address = *addr;
  m.identity = text(j, "identity", mw);
  m.registered_at = number<std::int64_t>(j, "registered_at", mw);
  for (const json& v : array(j, "sids", mw)) {
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() > 0xffff) throw FieldError{mw + ".sids holds " + v.dump()};
    m.sids.push_back(v.get<std::uint32_t>());
  }
  m.registrations = number<std::uint32_t>(j, "registrations", mw);
  // Written since rekeys are sent; a file from before has none of them,
  // and its members are rekeyed at the GDOI port until they register again.
  if (j.contains("port")) m.port = number<std::uint16_t>(j, "port", mw);
  if (j.contains("missed_rekeys")) m.missed_rekeys = number<std::uint32_t>(j, "missed_rekeys", mw);
  if (j.contains("last_acked_seq") && !j["last_acked_seq"].is_null())
    m.last_acked_seq = number<std::uint32_t>(j, "last_acked_seq", mw);
  if (j.contains("registered_to") && !j["registered_to"].is_null()) {
    std::string to = text(j, "registered_to", mw);
    auto local = Address::parse(to);
    if (!local) throw FieldError{mw + ".registered_to \"" + to + "\" is not an IP address"};
    m.registered_to = *local;
  }
  // What its Main Mode announced: the covey features of its Vendor ID,
  // null without one. A file from before covey exchanged Vendor IDs has
  // no such field; its members were all sent covey's extensions, and keep
  // getting them until they register again: the alternative, RFC 6407
  // alone, would silently take deny entries, TBAR and the fail-close ACL
  // away from every covey member at the key server's upgrade (and, in a
  // multicast group, from the whole group).
  if (!j.contains("covey_features"))
    m.traits = gdoi::PeerTraits{true};
  else if (j["covey_features"].is_null())
    m.traits = gdoi::PeerTraits{};
  else
    m.traits = gdoi::PeerTraits{true, number<std::uint32_t>(j, "covey_features", mw)};
  return m;
}

Group::State parse_group(const json& j, const std::string& where) {
  Group::State s;
  const json& kek = field(j, "kek", where);
  std::string kw = where + ".kek";
  Bytes spi = bytes(kek, "spi", kw);
  if (spi.size() != s.kek.spi.size()) throw FieldError{kw + ".spi is not 16 bytes"};
  std::copy(spi.begin(), spi.end(), s.kek.spi.begin());
  s.kek.algorithm_key = secret(kek, "algorithm_key", kw);
  s.kek.signature_public_key = bytes(kek, "signature_public_key", kw);
  s.kek_expires_at = number<std::int64_t>(kek, "expires_at", kw);
  const json& teks = array(j, "teks", where);
  for (std::size_t i = 0; i < teks.size(); ++i) {
    std::string tw = where + ".teks[" + std::to_string(i) + "]";
    Group::LiveTek t;
    t.tek.spi = number<std::uint32_t>(teks[i], "spi", tw);
    t.tek.encryption_key = secret(teks[i], "encryption_key", tw);
    t.tek.integrity_key = secret(teks[i], "integrity_key", tw);
    t.created_at = number<std::int64_t>(teks[i], "created_at", tw);
    t.expires_at = number<std::int64_t>(teks[i], "expires_at", tw);
    s.teks.push_back(std::move(t));
  }
  const json& spis = array(j, "used_spis", where);
  for (const json& v : spis) {
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() > 0xffffffffu)
      throw FieldError{where + ".used_spis holds " + v.dump() + ", not a 32-bit SPI"};
    s.used_spis.insert(v.get<std::uint32_t>());
  }
  s.next_sid = number<std::uint32_t>(j, "next_sid", where);
  s.seq = number<std::uint32_t>(j, "seq", where);
  s.pseudotime_epoch_ms = number<std::int64_t>(j, "pseudotime_epoch", where);
  const json& members = array(j, "members", where);
  for (std::size_t i = 0; i < members.size(); ++i) {
    Member m = parse_member(members[i], where + ".members[" + std::to_string(i) + "]");
    s.members[m.address] = std::move(m);
  }
  return s;
}

// The part of the policy the stored keys depend on; nullopt when it matches.
std::optional<std::string> policy_mismatch(const json& j, const gdoi::GroupPolicy& p, const std::string& where,
                                           std::string_view stored_in = "the file") {
  const json& pj = field(j, "policy", where);
  std::string pw = where + ".policy";
  struct {
    const char* field;
    std::string configured;
  } checks[] = {{"tek_transform", p.tek.str()},
                {"kek_cipher", std::string(crypto::name(p.kek.cipher))},
                {"kek_signature", p.kek.signature_str()}};
  for (const auto& c : checks) {
    std::string stored = text(pj, c.field, pw);
    if (stored != c.configured)
      return std::string(c.field) + " is \"" + stored + "\" in " + std::string(stored_in) + " but \"" + c.configured +
             "\" in the config; the stored keys belong to the old policy (start with the old policy and "
             "change it with `coveyctl ks reload`, which rekeys the members to the new one, or remove the file "
             "and let every member register again)";
  }
  return std::nullopt;
}

crypto::Result<std::string> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Error{sys_error("cannot open state file", path)};
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e{sys_error("cannot read state file", path)};
      ::close(fd);
      OPENSSL_cleanse(buf, sizeof buf);
      wipe(out);
      return e;
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  return out;
}

// Splits off one '\n'-terminated line from `rest`; nullopt when there is none.
std::optional<std::string_view> line(std::string_view& rest) {
  auto nl = rest.find('\n');
  if (nl == std::string_view::npos) return std::nullopt;
  std::string_view l = rest.substr(0, nl);
  rest.remove_prefix(nl + 1);
  return l;
}

crypto::Result<void> make_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return {};
  std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty() && parent != dir) {
    auto p = make_dir(parent.string());
    if (!p) return p;
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error{sys_error("cannot create state directory", dir)};
  return {};
}

crypto::Result<void> write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{sys_error("cannot write", path)};
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

Bytes sha256(std::string_view s) {
  auto d = crypto::digest(crypto::HashAlgorithm::Sha256, {ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size())});
  return d ? *d : Bytes{};
}

// A group's keys and counters as a journal record holds them (the shared
// form: no members, no SID mark), by digest: what append_state compares to
// write them only when a rekey changed them. The text holds key material;
// the digest does not reveal it.
Bytes keys_digest(const Group& g) {
  StateText out(8192);
  write_group(out, g, false);
  return sha256(out.view());
}

crypto::Result<void> sync_dir(const std::string& path) {
  std::filesystem::path target(path);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Error{sys_error("cannot open its directory", dir)};
  int synced = ::fsync(dfd);
  ::close(dfd);
  if (synced != 0) return Error{sys_error("cannot fsync its directory", dir)};
  return {};
}

constexpr std::string_view kJournalMagic = "covey-ks-journal";

// Members as the file holds them, read without a JSON DOM: at 100,000
// members building nlohmann's tree was most of a restore. It reads the
// fields write_member writes, in any order and with any whitespace, and
// gives up (nullopt) on anything else (an escaped identity, an unknown
// field, a missing one); restore_state then reads the whole file with
// nlohmann as before, which also names the defect.
class MemberReader {
 public:
  explicit MemberReader(std::string_view s) : s_(s) {}

  // The array that starts at `at` (its '['); `end` is set past its ']'.
  std::optional<std::vector<Member>> array(std::size_t at, std::size_t& end) {
    i_ = at;
    if (!eat('[')) return std::nullopt;
    std::vector<Member> out;
    if (eat(']')) {
      end = i_;
      return out;
    }
    do {
      auto m = member();
      if (!m) return std::nullopt;
      out.push_back(std::move(*m));
    } while (eat(','));
    if (!eat(']')) return std::nullopt;
    end = i_;
    return out;
  }

 private:
  void space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    space();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool null() {
    space();
    if (s_.substr(i_, 4) != "null") return false;
    i_ += 4;
    return true;
  }
  // A string without escapes (and so needing no decoding).
  std::optional<std::string_view> string() {
    if (!eat('"')) return std::nullopt;
    auto close = s_.find('"', i_);
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view v = s_.substr(i_, close - i_);
    if (v.find('\\') != std::string_view::npos) return std::nullopt;
    i_ = close + 1;
    return v;
  }
  template <class Int>
  std::optional<Int> number() {
    space();
    Int v{};
    auto [end, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), v);
    if (ec != std::errc{} || end == s_.data() + i_) return std::nullopt;
    if (end < s_.data() + s_.size() && (*end == '.' || *end == 'e' || *end == 'E')) return std::nullopt;
    i_ = static_cast<std::size_t>(end - s_.data());
    return v;
  }
  std::optional<Address> address() {
    auto t = string();
    return t ? Address::parse(*t) : std::nullopt;
  }

  std::optional<Member> member() {
    Member m;
    enum : unsigned { kAddress = 1, kIdentity = 2, kRegisteredAt = 4, kSids = 8, kRegistrations = 16, kFeatures = 32 };
    unsigned seen = 0;
    if (!eat('{')) return std::nullopt;
    do {
      auto key = string();
      if (!key || !eat(':')) return std::nullopt;
      if (*key == "address") {
        auto a = address();
        if (!a) return std::nullopt;
        m.address = *a;
        seen |= kAddress;
      } else if (*key == "identity") {
        auto t = string();
        if (!t) return std::nullopt;
        m.identity = std::string(*t);
        seen |= kIdentity;
      } else if (*key == "registered_at") {
        auto v = number<std::int64_t>();
        if (!v) return std::nullopt;
        m.registered_at = *v;
        seen |= kRegisteredAt;
      } else if (*key == "sids") {
        if (!eat('[')) return std::nullopt;
        if (!eat(']')) {
          do {
            auto v = number<std::uint16_t>();
            if (!v) return std::nullopt;
            m.sids.push_back(*v);
          } while (eat(','));
          if (!eat(']')) return std::nullopt;
        }
        seen |= kSids;
      } else if (*key == "registrations") {
        auto v = number<std::uint32_t>();
        if (!v) return std::nullopt;
        m.registrations = *v;
        seen |= kRegistrations;
      } else if (*key == "port") {
        auto v = number<std::uint16_t>();
        if (!v) return std::nullopt;
        m.port = *v;
      } else if (*key == "missed_rekeys") {
        auto v = number<std::uint32_t>();
        if (!v) return std::nullopt;
        m.missed_rekeys = *v;
      } else if (*key == "registered_to" || *key == "last_acked_seq" || *key == "covey_features") {
        if (*key == "covey_features") seen |= kFeatures;
        if (null()) {
          if (*key == "registered_to") m.registered_to.reset();
          if (*key == "last_acked_seq") m.last_acked_seq.reset();
          if (*key == "covey_features") m.traits = gdoi::PeerTraits{};
          continue;
        }
        if (*key == "registered_to") {
          auto a = address();
          if (!a) return std::nullopt;
          m.registered_to = *a;
        } else {
          auto v = number<std::uint32_t>();
          if (!v) return std::nullopt;
          if (*key == "last_acked_seq") m.last_acked_seq = *v;
          else m.traits = gdoi::PeerTraits{true, *v};
        }
      } else {
        return std::nullopt;
      }
    } while (eat(','));
    if (!eat('}')) return std::nullopt;
    const unsigned required = kAddress | kIdentity | kRegisteredAt | kSids | kRegistrations;
    if ((seen & required) != required) return std::nullopt;
    // As parse_member: a file from before Vendor IDs names no features.
    if (!(seen & kFeatures)) m.traits = gdoi::PeerTraits{true};
    return m;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// Every group's "members" array read by MemberReader, in document order,
// and the document with each of them emptied, for nlohmann to read the
// rest; nullopt when MemberReader gives up on any. An unescaped
// "members" followed by ':' is a key: inside a string its quotes would be
// escaped.
struct SplitDocument {
  std::string rest;
  std::vector<std::vector<Member>> members;
};
std::optional<SplitDocument> split_members(std::string_view doc) {
  SplitDocument out;
  constexpr std::string_view kKey = "\"members\"";
  std::size_t copied = 0;
  for (std::size_t at = doc.find(kKey); at != std::string_view::npos; at = doc.find(kKey, at + 1)) {
    std::size_t i = at + kKey.size();
    while (i < doc.size() && (doc[i] == ' ' || doc[i] == '\n' || doc[i] == '\r' || doc[i] == '\t')) ++i;
    if (i >= doc.size() || doc[i] != ':') continue;
    ++i;
    while (i < doc.size() && (doc[i] == ' ' || doc[i] == '\n' || doc[i] == '\r' || doc[i] == '\t')) ++i;
    std::size_t end = 0;
    auto members = MemberReader(doc).array(i, end);
    if (!members) return std::nullopt;
    out.rest.append(doc.substr(copied, i - copied)).append("[]");
    copied = end;
    at = end - 1;
    out.members.push_back(std::move(*members));
  }
  out.rest.append(doc.substr(copied));
  return out;
}

// A snapshot or a journal record: nlohmann reads all but the groups'
// "members" arrays, which MemberReader reads (members[i] is groups[i]'s)
// when they read as write_member writes them; else nlohmann reads them too
// (`members` unset). `doc` is discarded when the text is not JSON; the
// caller wipes it.
struct ParsedDocument {
  json doc;
  std::optional<std::vector<std::vector<Member>>> members;
};
void parse_document(std::string_view text, ParsedDocument& out) {
  std::optional<SplitDocument> split = split_members(text);
  out.doc = json::parse(split ? std::string_view(split->rest) : text, nullptr, false);
  if (!split) return;
  wipe(split->rest);
  const json& d = out.doc;
  if (!d.is_discarded() && d.contains("groups") && d["groups"].is_array() && d["groups"].size() == split->members.size()) {
    out.members = std::move(split->members);
    return;
  }
  // "members" outside the groups' objects: let nlohmann read it all.
  wipe(out.doc);
  out.doc = json::parse(text, nullptr, false);
}

// Applies the journal of `path` (if any) over the snapshot's `states`.
// `clean`: every record was applied and the file may be appended to.
crypto::Result<void> apply_journal(const std::string& path, ByteView snapshot_digest, const Groups& groups,
                                   std::map<std::uint32_t, Group::State>& states, bool& clean,
                                   std::uint64_t& journal_bytes) {
  const std::string jpath = path + kJournalSuffix;
  clean = true;
  journal_bytes = 0;
  struct stat st {};
  if (::lstat(jpath.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return Error{sys_error("journal", jpath)};
  }
  auto file = read_file(jpath);
  if (!file) return Error{file.error()};
  WipedText wipe_file{*file};
  std::string_view rest = *file;
  auto refuse = [&](const std::string& why) -> crypto::Result<void> { return Error{"journal " + jpath + ": " + why}; };
  auto magic = line(rest);
  if (magic && *magic != kJournalMagic)
    return refuse("not a covey-ks journal (the first line is not \"" + std::string(kJournalMagic) + "\")");
  auto version = line(rest);
  if (version && *version != "version " + std::to_string(kJournalFormatVersion))
    return refuse("\"" + std::string(*version) + "\", this covey-ks reads journal version " +
                  std::to_string(kJournalFormatVersion) + " only (written by another covey-ks?)");
  auto base = line(rest);
  // Cut short while it was made (no record yet), or the journal of an
  // older snapshot (a crash before its removal): the snapshot holds all.
  if (!base || *base != "base " + to_hex(snapshot_digest)) {
    clean = false;
    return {};
  }
  for (std::size_t n = 1; !rest.empty(); ++n) {
    const std::string rw = "record " + std::to_string(n);
    std::string_view before = rest;
    auto head = line(rest);
    std::size_t length = 0;
    Bytes want;
    bool framed = false;
    if (head && head->substr(0, 7) == "record ") {
      std::string_view h = head->substr(7);
      auto sp = h.find(' ');
      auto [end, ec] = std::from_chars(h.data(), h.data() + (sp == std::string_view::npos ? 0 : sp), length);
      framed = sp != std::string_view::npos && ec == std::errc{} && end == h.data() + sp &&
               from_hex(h.substr(sp + 1), want) && want.size() == 32;
    }
    const bool whole = framed && rest.size() >= length + 1 && rest[length] == '\n';
    std::string_view payload = whole ? rest.substr(0, length) : std::string_view{};
    const bool intact = whole && sha256(payload) == want;
    if (!intact) {
      // The last save's append, cut short by a crash: it never returned,
      // so nothing was sent that depends on it.
      const bool last = !whole || rest.size() == length + 1;
      if (last) {
        clean = false;
        return {};
      }
      (void)before;
      return refuse(rw + " does not match its SHA-256 and records follow it (corrupt)");
    }
    rest.remove_prefix(length + 1);
    ParsedDocument parsed;
    json& doc = parsed.doc;
    Wiped wipe_doc{doc};
    parse_document(payload, parsed);
    if (doc.is_discarded()) return refuse(rw + " is not JSON, though its SHA-256 matches");
    try {
      const json& gs = array(doc, "groups", rw);
      for (std::size_t gi = 0; gi < gs.size(); ++gi) {
        const json& gj = gs[gi];
        const auto identity = number<std::uint32_t>(gj, "identity", rw);
        const std::string where = rw + " group " + std::to_string(identity);
        auto s = states.find(identity);
        if (s == states.end()) return refuse(where + " is not in the state file");
        const Group* g = groups.all().at(identity).get();
        s->second.next_sid = std::max(s->second.next_sid, number<std::uint32_t>(gj, "next_sid", where));
        if (gj.contains("keys")) {
          const json& kj = gj["keys"];
          if (auto why = policy_mismatch(kj, g->policy(), where + ".keys", "the journal")) return refuse(where + ": " + *why);
          Group::State k = parse_group(kj, where + ".keys");
          s->second.kek = std::move(k.kek);
          s->second.kek_expires_at = k.kek_expires_at;
          s->second.teks = std::move(k.teks);
          s->second.used_spis = std::move(k.used_spis);
          s->second.seq = k.seq;
          s->second.pseudotime_epoch_ms = k.pseudotime_epoch_ms;
        }
        const json& members = array(gj, "members", where);
        for (std::size_t i = 0; i < members.size(); ++i) {
          Member m = parse_member(members[i], where + ".members[" + std::to_string(i) + "]");
          s->second.members[m.address] = std::move(m);
        }
        if (parsed.members)
          for (Member& m : (*parsed.members)[gi]) {
            const Address a = m.address;
            s->second.members.insert_or_assign(a, std::move(m));
          }
        for (const json& r : array(gj, "removed", where)) {
          auto a = r.is_string() ? Address::parse(r.get<std::string>()) : std::nullopt;
          if (!a) throw FieldError{where + ".removed holds " + r.dump() + ", not an IP address"};
          s->second.members.erase(*a);
        }
      }
    } catch (const FieldError& e) {
      return refuse(e.message);
    } catch (const json::exception& e) {
      return refuse(rw + " malformed: " + e.what());
    }
  }
  journal_bytes = file->size();
  return {};
}

}  // namespace

std::string state_file_path(const std::string& state_dir) {
  return (std::filesystem::path(state_dir) / kStateFileName).string();
}

crypto::Result<void> save_state(const std::string& path, const Groups& groups, JournalMark* mark) {
  StateText text(expected_size(groups));
  text.raw("{\n \"format\": ").string(kMagic);
  text.raw(",\n \"version\": ").number(kStateFormatVersion);
  text.raw(",\n \"groups\": [");
  bool first = true;
  for (const auto& [id, g] : groups.all()) {
    text.raw(first ? "\n" : ",\n");
    first = false;
    write_group(text, *g);
  }
  text.raw(first ? "]\n}" : "\n ]\n}");
  std::string_view body = text.view();
  auto digest = crypto::digest(crypto::HashAlgorithm::Sha256, {ByteView(reinterpret_cast<const std::uint8_t*>(body.data()), body.size())});
  if (!digest) return Error{"state file " + path + ": SHA-256: " + digest.error()};
  std::string header = std::string(kMagic) + "\nversion " + std::to_string(kStateFormatVersion) + "\nsha256 " +
                       to_hex(*digest) + "\n";

  std::filesystem::path target(path);
  std::string dir = target.parent_path().empty() ? "." : target.parent_path().string();
  if (auto made = make_dir(dir); !made) return Error{"state file " + path + ": " + made.error()};
  std::string tmp = path + ".tmp";
  // O_TRUNC: a temporary left by a crash mid-write is simply overwritten.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Error{"state file " + path + ": " + sys_error("cannot create", tmp)};
  auto fail = [&](std::string why) -> crypto::Result<void> {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return Error{"state file " + path + ": " + why + " (the previous state file, if any, is unchanged)"};
  };
  // The umask may have narrowed the mode, never widened it; an old
  // temporary may have had another mode.
  if (::fchmod(fd, 0600) != 0) return fail(sys_error("cannot chmod", tmp));
  if (auto w = write_all(fd, header, tmp); !w) return fail(w.error());
  if (auto w = write_all(fd, body, tmp); !w) return fail(w.error());
  if (::fsync(fd) != 0) return fail(sys_error("cannot fsync", tmp));
  int closed = ::close(fd);
  fd = -1;
  if (closed != 0) return fail(sys_error("cannot close", tmp));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail(sys_error("cannot rename over it", tmp));
  // The rename is durable only once the directory is.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return Error{"state file " + path + ": " + sys_error("written, but cannot open its directory", dir)};
  int synced = ::fsync(dfd);
  ::close(dfd);
  if (synced != 0) return Error{"state file " + path + ": " + sys_error("written, but cannot fsync its directory", dir)};
  // The snapshot holds everything the journal did; one left behind (this
  // unlink not durable) names the old snapshot as its base and is ignored.
  if (::unlink((path + kJournalSuffix).c_str()) != 0 && errno != ENOENT && mark) {
    mark->base.clear();
    return {};
  }
  if (mark) {
    mark->base = *digest;
    mark->snapshot_bytes = header.size() + body.size();
    mark->journal_bytes = 0;
    mark->keys.clear();
    for (const auto& [id, g] : groups.all()) mark->keys[id] = keys_digest(*g);
  }
  return {};
}

crypto::Result<void> append_state(const std::string& path, const Groups& groups, JournalMark& mark) {
  const std::string jpath = path + kJournalSuffix;
  if (mark.base.empty()) return Error{"journal " + jpath + ": no snapshot to continue; write one"};
  std::size_t size = 256;
  for (const auto& [id, g] : groups.all()) size += 8192 + 224 * g->changed_members().size();
  StateText text(size);
  if (mark.journal_bytes == 0)
    text.raw(kJournalMagic).raw("\nversion ").number(kJournalFormatVersion).raw("\nbase ").raw(to_hex(mark.base)).raw("\n");
  const std::size_t header = text.view().size();
  text.raw("{\"groups\":[");
  std::map<std::uint32_t, Bytes> keys;
  bool first = true;
  for (const auto& [id, g] : groups.all()) {
    text.raw(first ? "\n{\"identity\":" : ",\n{\"identity\":").number(id);
    first = false;
    text.raw(",\"next_sid\":").number(std::max(g->sid_mark(), g->next_sid()));
    keys[id] = keys_digest(*g);
    if (keys[id] != mark.keys[id]) write_group(text.raw(",\"keys\":\n"), *g, false);
    text.raw(",\"members\":[");
    bool m1 = true;
    for (const Address& a : g->changed_members())
      if (auto m = g->members().find(a); m != g->members().end()) {
        text.raw(m1 ? "\n" : ",\n");
        m1 = false;
        write_member(text, m->second);
      }
    text.raw("],\"removed\":[");
    bool r1 = true;
    for (const Address& a : g->changed_members())
      if (!g->members().count(a)) {
        if (!r1) text.raw(",");
        r1 = false;
        text.address(a);
      }
    text.raw("]}");
  }
  text.raw("]}");
  const std::string_view payload = text.view().substr(header);
  const std::string head = std::string(text.view().substr(0, header)) + "record " + std::to_string(payload.size()) +
                           " " + to_hex(sha256(payload)) + "\n";
  auto fail = [&](int fd, std::string why) -> crypto::Result<void> {
    if (fd >= 0) ::close(fd);
    mark.base.clear();  // the next save writes a snapshot, not after a partial record
    return Error{"journal " + jpath + ": " + why};
  };
  const bool create = mark.journal_bytes == 0;
  int fd = ::open(jpath.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_TRUNC : O_APPEND), 0600);
  if (fd < 0) return fail(-1, sys_error("cannot open", jpath));
  if (create && ::fchmod(fd, 0600) != 0) return fail(fd, sys_error("cannot chmod", jpath));
  if (auto w = write_all(fd, head, jpath); !w) return fail(fd, w.error());
  if (auto w = write_all(fd, payload, jpath); !w) return fail(fd, w.error());
  if (auto w = write_all(fd, "\n", jpath); !w) return fail(fd, w.error());
  if (::fdatasync(fd) != 0) return fail(fd, sys_error("cannot fdatasync", jpath));
  if (::close(fd) != 0) return fail(-1, sys_error("cannot close", jpath));
  if (create)
    if (auto d = sync_dir(jpath); !d) return fail(-1, d.error());
  mark.journal_bytes += head.size() + payload.size() + 1;
  mark.keys = std::move(keys);
  return {};
}

crypto::Result<void> restore_state(const std::string& path, Groups& groups, JournalMark* mark) {
  auto file = read_file(path);
  if (!file) return Error{file.error()};
  WipedText wipe_file{*file};
  std::string_view rest = *file;
  auto refuse = [&](const std::string& why) -> crypto::Result<void> {
    return Error{"state file " + path + ": " + why};
  };
  auto magic = line(rest);
  if (!magic || *magic != kMagic)
    return refuse("not a covey-ks state file (the first line is not \"" + std::string(kMagic) + "\")");
  auto version = line(rest);
  if (!version) return refuse("truncated after the first line");
  if (version->substr(0, 8) != "version ") return refuse("the second line is not \"version N\"");
  std::string v(version->substr(8));
  if (v != std::to_string(kStateFormatVersion))
    return refuse("format version " + v + ", this covey-ks reads version " + std::to_string(kStateFormatVersion) +
                  " only (written by another covey-ks?)");
  auto sha = line(rest);
  if (!sha) return refuse("truncated after the version line");
  if (sha->substr(0, 7) != "sha256 ") return refuse("the third line is not \"sha256 <hex>\"");
  Bytes want;
  if (!from_hex(sha->substr(7), want) || want.size() != 32) return refuse("the third line's SHA-256 is not 64 hex digits");
  auto got = crypto::digest(crypto::HashAlgorithm::Sha256, {ByteView(reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size())});
  if (!got) return refuse("SHA-256: " + got.error());
  if (*got != want) return refuse("content does not match its SHA-256 (truncated or corrupt)");

  ParsedDocument parsed;
  json& doc = parsed.doc;
  Wiped wipe_doc{doc};
  parse_document(rest, parsed);
  if (doc.is_discarded()) return refuse("content is not JSON, though its SHA-256 matches");
  std::map<std::uint32_t, Group::State> states;
  try {
    if (text(doc, "format", "document") != kMagic) return refuse("document format is not " + std::string(kMagic));
    if (number<int>(doc, "version", "document") != kStateFormatVersion)
      return refuse("document version does not match the version line");
    const json& gs = array(doc, "groups", "document");
    std::set<std::uint32_t> seen;
    for (std::size_t i = 0; i < gs.size(); ++i) {
      std::uint32_t identity = number<std::uint32_t>(gs[i], "identity", "groups[" + std::to_string(i) + "]");
      std::string name = text(gs[i], "name", "groups[" + std::to_string(i) + "]");
      std::string where = "group " + name + " (" + std::to_string(identity) + ")";
      if (!seen.insert(identity).second) return refuse(where + " appears twice");
      Group* g = groups.find(identity);
      if (!g)
        return refuse(where + " is not configured: the file belongs to another configuration (foreign state file)");
      if (g->policy().name != name)
        return refuse(where + " is named \"" + g->policy().name +
                      "\" in the config: the file belongs to another configuration (foreign state file)");
      if (auto why = policy_mismatch(gs[i], g->policy(), where)) return refuse(where + ": " + *why);
      Group::State s = parse_group(gs[i], where);
      if (parsed.members)
        for (Member& m : (*parsed.members)[i]) {
          const Address a = m.address;
          s.members.insert_or_assign(a, std::move(m));
        }
      states.emplace(identity, std::move(s));
    }
  } catch (const FieldError& e) {
    return refuse(e.message);
  } catch (const json::exception& e) {
    return refuse(std::string("malformed: ") + e.what());
  }
  for (const auto& [id, g] : groups.all())
    if (!states.count(id))
      return refuse("configured group " + g->policy().name + " (" + std::to_string(id) +
                    ") is not in the file: the file belongs to another configuration (foreign state file); "
                    "remove it to start every group afresh");
  bool clean = true;
  std::uint64_t journal_bytes = 0;
  if (auto j = apply_journal(path, want, groups, states, clean, journal_bytes); !j) return Error{j.error()};
  for (auto& [id, s] : states) {
    const Group* g = groups.all().at(id).get();
    if (auto why = g->refuse_state(s))
      return refuse("group " + g->policy().name + " (" + std::to_string(id) + "): " + *why);
  }
  for (auto& [id, s] : states) {
    auto r = groups.find(id)->restore_state(std::move(s));
    if (!r) return refuse(r.error());  // cannot happen: refuse_state passed above
  }
  if (mark) {
    *mark = JournalMark{};
    if (clean) {
      mark->base = want;
      mark->snapshot_bytes = file->size();
      mark->journal_bytes = journal_bytes;
      for (const auto& [id, g] : groups.all()) mark->keys[id] = keys_digest(*g);
    }
  }
  return {};
}

std::string encode_group_keys(const Group& g) {
  StateText out(8192);
  write_group(out, g, false);
  return std::string(out.view());
}

crypto::Result<Group::State> decode_group_keys(std::string_view encoded, const Group& g, const std::string& stored_in) {
  const std::string where = "group " + g.policy().name + " (" + std::to_string(g.policy().identity) + ")";
  json doc = json::parse(encoded, nullptr, false);
  Wiped wipe_doc{doc};
  if (doc.is_discarded()) return Error{where + " in " + stored_in + ": not JSON"};
  try {
    if (number<std::uint32_t>(doc, "identity", where) != g.policy().identity ||
        text(doc, "name", where) != g.policy().name)
      return Error{where + " in " + stored_in + " holds another group's keys"};
    if (auto why = policy_mismatch(doc, g.policy(), where, stored_in)) return Error{where + ": " + *why};
    Group::State s = parse_group(doc, where);
    if (auto why = g.refuse_state(s)) return Error{where + " in " + stored_in + ": " + *why};
    return s;
  } catch (const FieldError& e) {
    return Error{stored_in + ": " + e.message};
  } catch (const json::exception& e) {
    return Error{stored_in + ": " + where + " malformed: " + e.what()};
  }
}

std::string encode_member(const Member& m) {
  StateText out(256);
  write_member(out, m);
  return std::string(out.view());
}

crypto::Result<Member> decode_member(std::string_view encoded, const std::string& where) {
  json doc = json::parse(encoded, nullptr, false);
  if (doc.is_discarded()) return Error{where + ": not JSON"};
  try {
    return parse_member(doc, where);
  } catch (const FieldError& e) {
    return Error{e.message};
  } catch (const json::exception& e) {
    return Error{where + " malformed: " + e.what()};
  }
}

StateFile::StateFile(std::string state_dir) : path_(state_file_path(state_dir)) {}

crypto::Result<bool> StateFile::restore(Groups& groups) {
  struct stat st {};
  if (::lstat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return Error{sys_error("state file", path_)};
  }
  if (auto r = restore_state(path_, groups, &mark_); !r) return Error{r.error()};
  return true;
}

crypto::Result<void> StateFile::save(const Groups& groups) {
  // The journal until it outgrows the snapshot, then a new snapshot: each
  // journal byte is rewritten once at most.
  if (!mark_.base.empty() && mark_.journal_bytes <= mark_.snapshot_bytes) return append_state(path_, groups, mark_);
  return save_state(path_, groups, &mark_);
}

}  // namespace covey::ks

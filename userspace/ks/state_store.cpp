#include "ks/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <type_traits>

#include "crypto/hash.h"

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

std::string hex(ByteView b) { return to_hex(b); }

json group_json(const Group& g) {
  const gdoi::GroupPolicy& p = g.policy();
  Group::State s = g.export_state();
  json j;
  j["identity"] = p.identity;
  j["name"] = p.name;
  j["policy"] = {{"tek_transform", p.tek.str()},
                 {"kek_cipher", std::string(crypto::name(p.kek.cipher))},
                 {"kek_signature", p.kek.signature_str()}};
  j["kek"] = {{"spi", hex(s.kek.spi)},
              {"algorithm_key", hex(s.kek.algorithm_key)},
              {"signature_public_key", hex(s.kek.signature_public_key)},
              {"expires_at", s.kek_expires_at}};
  json teks = json::array();
  for (const auto& t : s.teks)
    teks.push_back({{"spi", t.tek.spi},
                    {"encryption_key", hex(t.tek.encryption_key)},
                    {"integrity_key", hex(t.tek.integrity_key)},
                    {"created_at", t.created_at},
                    {"expires_at", t.expires_at}});
  j["teks"] = std::move(teks);
  j["used_spis"] = s.used_spis;
  j["next_sid"] = s.next_sid;
  j["seq"] = s.seq;
  j["pseudotime_epoch"] = s.pseudotime_epoch;
  json members = json::array();
  for (const auto& [addr, m] : s.members) {
    json mj = {{"address", addr.str()},
               {"identity", m.identity},
               {"registered_at", m.registered_at},
               {"sids", m.sids},
               {"registrations", m.registrations},
               {"port", m.port},
               {"missed_rekeys", m.missed_rekeys}};
    mj["registered_to"] = m.registered_to ? json(m.registered_to->str()) : json(nullptr);
    mj["last_acked_seq"] = m.last_acked_seq ? json(*m.last_acked_seq) : json(nullptr);
    members.push_back(std::move(mj));
  }
  j["members"] = std::move(members);
  return j;
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
  s.pseudotime_epoch = number<std::int64_t>(j, "pseudotime_epoch", where);
  const json& members = array(j, "members", where);
  for (std::size_t i = 0; i < members.size(); ++i) {
    std::string mw = where + ".members[" + std::to_string(i) + "]";
    Member m;
    std::string a = text(members[i], "address", mw);
    auto addr = Address::parse(a);
    if (!addr) throw FieldError{mw + ".address \"" + a + "\" is not an IP address"};
    m.address = *addr;
    m.identity = text(members[i], "identity", mw);
    m.registered_at = number<std::int64_t>(members[i], "registered_at", mw);
    for (const json& v : array(members[i], "sids", mw)) {
      if (!v.is_number_unsigned() || v.get<std::uint64_t>() > 0xffff) throw FieldError{mw + ".sids holds " + v.dump()};
      m.sids.push_back(v.get<std::uint32_t>());
    }
    m.registrations = number<std::uint32_t>(members[i], "registrations", mw);
    // Written since rekeys are sent; a file from before has none of them,
    // and its members are rekeyed at the GDOI port until they register again.
    if (members[i].contains("port")) m.port = number<std::uint16_t>(members[i], "port", mw);
    if (members[i].contains("missed_rekeys")) m.missed_rekeys = number<std::uint32_t>(members[i], "missed_rekeys", mw);
    if (members[i].contains("last_acked_seq") && !members[i]["last_acked_seq"].is_null())
      m.last_acked_seq = number<std::uint32_t>(members[i], "last_acked_seq", mw);
    if (members[i].contains("registered_to") && !members[i]["registered_to"].is_null()) {
      std::string to = text(members[i], "registered_to", mw);
      auto local = Address::parse(to);
      if (!local) throw FieldError{mw + ".registered_to \"" + to + "\" is not an IP address"};
      m.registered_to = *local;
    }
    s.members[m.address] = std::move(m);
  }
  return s;
}

// The part of the policy the stored keys depend on; nullopt when it matches.
std::optional<std::string> policy_mismatch(const json& j, const gdoi::GroupPolicy& p, const std::string& where) {
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
      return std::string(c.field) + " is \"" + stored + "\" in the file but \"" + c.configured +
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

}  // namespace

std::string state_file_path(const std::string& state_dir) {
  return (std::filesystem::path(state_dir) / kStateFileName).string();
}

crypto::Result<void> save_state(const std::string& path, const Groups& groups) {
  json doc;
  Wiped wipe_doc{doc};
  doc["format"] = std::string(kMagic);
  doc["version"] = kStateFormatVersion;
  doc["groups"] = json::array();
  for (const auto& [id, g] : groups.all()) doc["groups"].push_back(group_json(*g));
  std::string body = doc.dump(1);
  WipedText wipe_body{body};
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
  return {};
}

crypto::Result<void> restore_state(const std::string& path, Groups& groups) {
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

  json doc = json::parse(rest, nullptr, false);
  Wiped wipe_doc{doc};
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
      if (auto why = g->refuse_state(s)) return refuse(where + ": " + *why);
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
  for (auto& [id, s] : states) {
    auto r = groups.find(id)->restore_state(std::move(s));
    if (!r) return refuse(r.error());  // cannot happen: refuse_state passed above
  }
  return {};
}

}  // namespace covey::ks

#include "pdml.h"

namespace covey::test {
namespace {

std::string unescape(std::string s) {
  static const std::pair<const char*, const char*> kEntities[] = {
      {"&quot;", "\""}, {"&#x27;", "'"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}};
  for (const auto& [from, to] : kEntities)
    for (std::size_t at; (at = s.find(from)) != std::string::npos;) s.replace(at, std::string(from).size(), to);
  return s;
}

std::string attribute(const std::string& tag, const std::string& key) {
  const std::string needle = " " + key + "=\"";
  const std::size_t at = tag.find(needle);
  if (at == std::string::npos) return {};
  const std::size_t start = at + needle.size();
  return unescape(tag.substr(start, tag.find('"', start) - start));
}

}  // namespace

bool PdmlPacket::has(const std::string& name) const {
  for (const auto& f : fields)
    if (f.name == name) return true;
  return false;
}

std::vector<PdmlPacket> parse_pdml(const std::string& xml) {
  std::vector<PdmlPacket> packets;
  std::size_t at = 0;
  while ((at = xml.find('<', at)) != std::string::npos) {
    const std::size_t end = xml.find('>', at);
    if (end == std::string::npos) break;
    const std::string tag = xml.substr(at, end - at);
    at = end;
    if (tag == "<packet") {
      packets.emplace_back();
    } else if (!packets.empty() && (tag.rfind("<field ", 0) == 0 || tag.rfind("<proto ", 0) == 0)) {
      PdmlField f{attribute(tag, "name"), attribute(tag, "show"), attribute(tag, "value"), 0};
      const std::string size = attribute(tag, "size");
      f.size = size.empty() ? 0 : std::stoul(size);
      packets.back().fields.push_back(std::move(f));
    }
  }
  return packets;
}

}  // namespace covey::test

#include "gdoi/vendor_id.h"

#include <algorithm>
#include <cstdio>

#include "wire/buffer.h"

namespace covey::gdoi {

namespace {

constexpr std::size_t kCoveyVendorIdSize = 16 + 2 + 4;

struct CoveyVendorId {
  std::uint16_t version = 0;
  std::uint32_t features = 0;
};

std::optional<CoveyVendorId> parse(ByteView v) {
  if (v.size() < kCoveyVendorIdSize ||
      !std::equal(kCoveyVendorMagic.begin(), kCoveyVendorMagic.end(), v.begin()))
    return std::nullopt;
  wire::Reader r(v.subspan(kCoveyVendorMagic.size()), kCoveyVendorMagic.size());
  return CoveyVendorId{*r.u16(), *r.u32()};
}

}  // namespace

std::string feature_names(std::uint32_t features) {
  static constexpr std::pair<std::uint32_t, const char*> kNames[] = {
      {covey_feature::AclAction, "deny entries"},
      {covey_feature::PortRanges, "port ranges"},
      {covey_feature::Tbar, "TBAR"},
      {covey_feature::FailCloseAcl, "fail-close ACL"}};
  std::string out;
  for (const auto& [bit, name] : kNames)
    if (features & bit) out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

Bytes covey_vendor_id() {
  Bytes v;
  v.reserve(kCoveyVendorIdSize);  // also spares GCC 12 a false -Wstringop-overflow
  wire::Writer w(v);
  w.bytes(kCoveyVendorMagic);
  w.u16(kCoveyVendorVersion);
  w.u32(covey_feature::All);
  return v;
}

PeerTraits peer_traits(const std::vector<Bytes>& vendor_ids) {
  for (const Bytes& v : vendor_ids)
    if (auto id = parse(v)) return PeerTraits{true, id->features};
  return PeerTraits{};
}

std::optional<std::string> describe_covey_vendor_id(ByteView vid) {
  auto id = parse(vid);
  if (!id) return std::nullopt;
  char f[16];
  std::snprintf(f, sizeof f, "0x%08x", id->features);
  std::string names = feature_names(id->features);
  return "covey version " + std::to_string(id->version) + ", features " + f +
         (names.empty() ? "" : " (" + names + ")");
}

}  // namespace covey::gdoi

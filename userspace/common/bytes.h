// Byte strings shared by every covey library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace covey {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

inline void append(Bytes& out, ByteView in) { out.insert(out.end(), in.begin(), in.end()); }

// Lower-case hex, no separators: the form keylogs and Wireshark tables use.
std::string to_hex(ByteView b);
// "0x1A2B3C4D": an SPI as GET VPN prints it (show crypto gdoi), in logs and status.
std::string spi_hex(std::uint32_t spi);
// Accepts upper or lower case, optional "0x" prefix, no separators; false on bad input.
bool from_hex(std::string_view hex, Bytes& out);

}  // namespace covey

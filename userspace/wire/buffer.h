// Bounded big-endian reader and writer. The reader cannot read past its end:
// every read checks the remaining length first and reports failure instead.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>

#include "common/bytes.h"

namespace covey::wire {

class Reader {
 public:
  // base: the offset of data[0] in the whole datagram, so errors report
  // offsets a person can find in a hex dump or in Wireshark.
  Reader(ByteView data, std::size_t base) : data_(data), base_(base) {}

  std::size_t remaining() const { return data_.size() - pos_; }
  std::size_t offset() const { return base_ + pos_; }  // absolute
  bool empty() const { return remaining() == 0; }

  std::optional<std::uint8_t> u8() {
    if (remaining() < 1) return std::nullopt;
    return data_[pos_++];
  }
  std::optional<std::uint16_t> u16() {
    if (remaining() < 2) return std::nullopt;
    auto v = static_cast<std::uint16_t>(data_[pos_] << 8 | data_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  std::optional<std::uint32_t> u32() {
    if (remaining() < 4) return std::nullopt;
    std::uint32_t v = std::uint32_t{data_[pos_]} << 24 | std::uint32_t{data_[pos_ + 1]} << 16 |
                      std::uint32_t{data_[pos_ + 2]} << 8 | data_[pos_ + 3];
    pos_ += 4;
    return v;
  }
  std::optional<ByteView> take(std::size_t n) {
    if (remaining() < n) return std::nullopt;
    ByteView v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  ByteView rest() {
    ByteView v = data_.subspan(pos_);
    pos_ = data_.size();
    return v;
  }
  // A reader over the next n octets, advancing this one past them.
  std::optional<Reader> sub(std::size_t n) {
    if (remaining() < n) return std::nullopt;
    Reader r(data_.subspan(pos_, n), offset());
    pos_ += n;
    return r;
  }

 private:
  ByteView data_;
  std::size_t base_;
  std::size_t pos_ = 0;
};

class Writer {
 public:
  explicit Writer(Bytes& out) : out_(out) {}
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) {
    out_.push_back(static_cast<std::uint8_t>(v >> 8));
    out_.push_back(static_cast<std::uint8_t>(v));
  }
  void u32(std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out_.push_back(static_cast<std::uint8_t>(v >> s));
  }
  void bytes(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
  std::size_t size() const { return out_.size(); }
  // Reserve a 16-bit length field now, fill it once the payload is written.
  std::size_t placeholder16() {
    std::size_t at = out_.size();
    u16(0);
    return at;
  }
  void patch16(std::size_t at, std::uint16_t v) {
    out_[at] = static_cast<std::uint8_t>(v >> 8);
    out_[at + 1] = static_cast<std::uint8_t>(v);
  }
  void patch8(std::size_t at, std::uint8_t v) { out_[at] = v; }

 private:
  Bytes& out_;
};

}  // namespace covey::wire

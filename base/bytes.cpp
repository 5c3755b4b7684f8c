#include "base/bytes.h"

#include <algorithm>
#include <cstring>

namespace cryptmap {

std::string read_cstr_field(const std::byte* p, std::size_t len) {
  std::size_t n = 0;
  while (n + 1 < len && p[n] != std::byte{0}) ++n;
  return std::string(reinterpret_cast<const char*>(p), n);
}

void write_cstr_field(std::byte* p, std::size_t len, std::string_view s) noexcept {
  if (len == 0) return;
  std::memset(p, 0, len);
  std::memcpy(p, s.data(), std::min(s.size(), len - 1));
}

std::string to_hex(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    out.push_back(kDigits[std::to_integer<unsigned>(b) >> 4]);
    out.push_back(kDigits[std::to_integer<unsigned>(b) & 0xf]);
  }
  return out;
}

std::string to_hex_lines(std::span<const std::byte> bytes, std::string_view indent) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i && i % 16 == 0 && !indent.empty()) {
      out += '\n';
      out += indent;
    }
    out += to_hex(bytes.subspan(i, 1));
    out += ' ';
  }
  return out;
}

Result<std::vector<std::byte>> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return make_error(Errc::kInvalid, "hex string has odd length");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<std::byte> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return make_error(Errc::kInvalid, "hex string has a non-hex digit", 2 * i);
    out[i] = std::byte(hi << 4 | lo);
  }
  return out;
}

}  // namespace cryptmap

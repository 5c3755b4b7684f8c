#include "tests/support/data.h"

#include <gtest/gtest.h>

#include "base/bytes.h"

namespace cryptmap::test {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

void fill_deterministic(std::span<std::byte> out, std::uint64_t seed, std::uint64_t offset) {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::uint64_t p = offset + i;
    const std::uint64_t w = splitmix64(seed * 0x100000001B3ull + p / 8);
    out[i] = static_cast<std::byte>(w >> (8 * (p % 8)));
  }
}

std::vector<std::byte> deterministic_bytes(std::size_t size, std::uint64_t seed,
                                           std::uint64_t offset) {
  std::vector<std::byte> v(size);
  fill_deterministic(v, seed, offset);
  return v;
}

std::vector<std::byte> iota_bytes(std::size_t size, unsigned start) {
  std::vector<std::byte> v(size);
  for (std::size_t i = 0; i < size; ++i) v[i] = std::byte(static_cast<unsigned char>(start + i));
  return v;
}

std::vector<std::byte> hex(std::string_view text) {
  auto r = from_hex(text);
  if (!r) {
    ADD_FAILURE() << "bad hex in test: " << text;
    return {};
  }
  return *r;
}

std::string hex_of(std::span<const std::byte> bytes) { return to_hex(bytes); }

std::vector<std::byte> bytes_of(std::string_view text) {
  auto b = as_bytes(text);
  return {b.begin(), b.end()};
}

}  // namespace cryptmap::test

// Test data: deterministic bytes (one generator for every suite), hex, string bytes.
//
// deterministic_bytes(size, seed, offset) is a pure function of (seed, absolute offset): byte p of
// the stream is byte p % 8 of splitmix64(seed * 0x100000001B3 + p / 8). Any sub-range can be
// re-derived from its offset alone, so a test can check what it wrote without keeping a copy.
// Different seeds give unrelated streams; no byte pattern (zeros, equal halves) is special.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cryptmap::test {

void fill_deterministic(std::span<std::byte> out, std::uint64_t seed, std::uint64_t offset = 0);
std::vector<std::byte> deterministic_bytes(std::size_t size, std::uint64_t seed,
                                           std::uint64_t offset = 0);

// 00 01 02 ... (wrapping), starting at `start`: the counting pattern of published KATs.
std::vector<std::byte> iota_bytes(std::size_t size, unsigned start = 0);

// Hex decoding for literals in tests: bad hex is a test failure (ADD_FAILURE) and yields {}.
std::vector<std::byte> hex(std::string_view text);
std::string hex_of(std::span<const std::byte> bytes);  // lower case, no separators

// The bytes of a string (no terminator).
std::vector<std::byte> bytes_of(std::string_view text);

}  // namespace cryptmap::test

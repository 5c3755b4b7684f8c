// The LUKS anti-forensic splitter (AF), shared by LUKS1 and LUKS2 keyslots.
// Stateless; thread-safe. See docs/formats.md §1.4.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"

namespace cryptmap::crypto {

// material.size() must be key.size() * stripes. Random stripes come from random_bytes().
Result<void> af_split(std::span<const std::byte> key, std::uint32_t stripes, std::string_view hash,
                      std::span<std::byte> material);
// Same as af_split but with caller-provided "random" stripes (tests, KATs).
Result<void> af_split_with(std::span<const std::byte> key, std::uint32_t stripes,
                           std::string_view hash, std::span<const std::byte> random_stripes,
                           std::span<std::byte> material);
// key_out.size() is the key length; material.size() >= key_out.size() * stripes.
Result<void> af_merge(std::span<const std::byte> material, std::uint32_t stripes,
                      std::string_view hash, std::span<std::byte> key_out);
// Bytes of AF material for a key, before padding to sectors.
inline std::size_t af_material_bytes(std::size_t key_bytes, std::uint32_t stripes) {
  return key_bytes * stripes;
}

}  // namespace cryptmap::crypto

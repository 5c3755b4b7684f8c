// RFC 4648 base64 (standard alphabet, '=' padding) as LUKS2 JSON stores salts and digests.
// Stateless; thread-safe. Decoding is strict: bad characters or bad padding are rejected.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cryptmap::volume::format {

std::string base64_encode(std::span<const std::byte> in);
// nullopt for malformed input.
std::optional<std::vector<std::byte>> base64_decode(std::string_view in);

}  // namespace cryptmap::volume::format

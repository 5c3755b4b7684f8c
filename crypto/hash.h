// Hash functions by their cryptsetup names ("sha1", "sha256", "sha512", "ripemd160",
// "whirlpool", ...). Stateless functions; thread-safe.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <span>
#include <string_view>

#include "base/result.h"

namespace cryptmap::crypto {

// Digest size in bytes, or kUnsupported naming the hash.
Result<std::size_t> hash_digest_size(std::string_view hash);
// out.size() must equal the digest size. Hashes the concatenation of `parts`.
Result<void> hash_digest(std::string_view hash,
                         std::initializer_list<std::span<const std::byte>> parts,
                         std::span<std::byte> out);

}  // namespace cryptmap::crypto

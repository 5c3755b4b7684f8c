// Internal: Argon2 with the optional secret and associated data of RFC 9106 (LUKS2 uses neither;
// the RFC's test vectors do). Private to cryptmap_crypto and its tests.
#pragma once

#include <cstdint>
#include <span>

#include "base/result.h"
#include "crypto/kdf.h"

namespace cryptmap::crypto::internal {

Result<void> argon2_full(Argon2Type type, std::span<const std::byte> password,
                         std::span<const std::byte> salt, std::span<const std::byte> secret,
                         std::span<const std::byte> associated, std::uint32_t time_cost,
                         std::uint32_t memory_kib, std::uint32_t parallel,
                         std::span<std::byte> out);

}  // namespace cryptmap::crypto::internal

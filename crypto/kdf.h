// Password-based key derivation as LUKS uses it. Stateless; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"

namespace cryptmap::crypto {

// PBKDF2-HMAC over a cryptsetup hash name; out.size() bytes are derived.
Result<void> pbkdf2(std::string_view hash, std::span<const std::byte> password,
                    std::span<const std::byte> salt, std::uint32_t iterations,
                    std::span<std::byte> out);

enum class Argon2Type { kArgon2i, kArgon2id };
// Argon2 (libargon2, version 0x13) with cryptsetup's parameter names: time, memory (KiB), cpus.
Result<void> argon2(Argon2Type type, std::span<const std::byte> password,
                    std::span<const std::byte> salt, std::uint32_t time_cost,
                    std::uint32_t memory_kib, std::uint32_t parallel, std::span<std::byte> out);

// Benchmarks, as cryptsetup does for --iter-time: PBKDF2 iterations that take `target_ms`
// for a key of out_len bytes (at least 1000).
Result<std::uint32_t> pbkdf2_iterations_for(std::string_view hash, std::size_t out_len,
                                            std::uint32_t target_ms);
struct Argon2Cost {
  std::uint32_t time_cost;
  std::uint32_t memory_kib;
  std::uint32_t parallel;
};
// Argon2 cost for `target_ms` within `max_memory_kib` (cryptsetup's algorithm: memory first,
// then time, minimum time 4).
Result<Argon2Cost> argon2_cost_for(Argon2Type type, std::uint32_t target_ms,
                                   std::uint32_t max_memory_kib, std::uint32_t parallel);

}  // namespace cryptmap::crypto

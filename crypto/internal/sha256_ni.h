// Internal: SHA-256's block function (FIPS 180-4 §6.2.2) on the x86 SHA extensions (SHA-NI),
// for one message or for two independent messages interleaved. The round instructions'
// latency, not their throughput, bounds one message: two 4 KiB messages hashed together ran at
// 1.8x the rate of one on the bench machine's AMD EPYC (3 259 against 1 785 MB per CPU-second;
// bench/README.md, intj4). Used by the HMAC-SHA256 of authenticated sectors (auth_cipher.cpp),
// which hashes two sectors at a time.
// Private to cryptmap_crypto.
//
// Thread-safety: pure functions (the caller owns the states).
#pragma once

#include <cstddef>
#include <cstdint>

namespace cryptmap::crypto::internal {

// True when the CPU has SHA-NI, SSSE3 and SSE4.1 (checked once).
bool sha256_ni_available() noexcept;

// `state` (H0..H7, FIPS order) absorbs `blocks` 64-byte blocks from `data`.
// REQUIRES: sha256_ni_available().
void sha256_ni_blocks(std::uint32_t* state, const std::byte* data, std::size_t blocks) noexcept;
// The same for two messages at once: `state_a` absorbs `blocks` blocks from `a`, `state_b` as
// many from `b`.
void sha256_ni_blocks_x2(std::uint32_t* state_a, const std::byte* a, std::uint32_t* state_b,
                         const std::byte* b, std::size_t blocks) noexcept;

}  // namespace cryptmap::crypto::internal

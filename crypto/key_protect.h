// Key protection primitives of the foreign formats (BitLocker, FileVault 2): the AES-CCM key
// datum decryption, RFC 3394 AES key unwrap, and BitLocker's SHA-256 stretching KDF.
// docs/bitlk.md §4 states what BitLocker does with them. Stateless; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"

namespace cryptmap::crypto {

// AES-CCM decryption with a 16-byte tag and no associated data (BitLocker's encrypted key
// entries: nonce 12 bytes). `out` must be as long as `ciphertext`. A wrong key or damaged
// data fails the tag check: kBadKey, and `out` is zeroed. kInvalid for bad sizes.
Result<void> aes_ccm_decrypt(std::span<const std::byte> key, std::span<const std::byte> nonce,
                             std::span<const std::byte> ciphertext, std::span<const std::byte> tag,
                             std::span<std::byte> out);
// The inverse (tests, and writers of key entries).
Result<void> aes_ccm_encrypt(std::span<const std::byte> key, std::span<const std::byte> nonce,
                             std::span<const std::byte> plaintext, std::span<std::byte> ciphertext,
                             std::span<std::byte> tag);

// RFC 3394 AES key unwrap with the default IV A6A6A6A6A6A6A6A6. `wrapped` is n+1 64-bit blocks
// (n >= 2), `out` n blocks. An integrity check failure (wrong KEK) is kBadKey.
Result<void> aes_key_unwrap(std::span<const std::byte> kek, std::span<const std::byte> wrapped,
                            std::span<std::byte> out);
Result<void> aes_key_wrap(std::span<const std::byte> kek, std::span<const std::byte> key,
                          std::span<std::byte> wrapped);

// One AES-XTS data unit of any length (a multiple of 16), tweak = LE64(unit) padded with zeros:
// FileVault 2's 8 KiB metadata blocks. Key: 32 or 64 bytes (both halves). In place.
Result<void> aes_xts_decrypt_unit(std::span<const std::byte> key, std::uint64_t unit,
                                  std::span<std::byte> data);

// BitLocker's key stretching: a 88-byte state {last[32], initial[32], salt[16], count u64 LE},
// `last` and `count` starting at 0, hashed `iterations` times (BitLocker: 0x100000) with
// last = SHA-256(state), count++ after each. `out` (32 bytes) receives the final `last`.
inline constexpr std::uint32_t kBitlkStretchIterations = 0x100000;
Result<void> bitlk_stretch(std::span<const std::byte> initial, std::span<const std::byte> salt,
                           std::uint32_t iterations, std::span<std::byte> out);

// CRC-32 (IEEE 802.3, reflected, init and final XOR 0xFFFFFFFF; zlib's crc32) and CRC-32C
// (Castagnoli) with a caller-given seed and no final XOR (FileVault 2's metadata blocks).
std::uint32_t crc32_ieee(std::span<const std::byte> data) noexcept;
std::uint32_t crc32c(std::uint32_t seed, std::span<const std::byte> data) noexcept;

}  // namespace cryptmap::crypto

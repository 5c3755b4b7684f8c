// Internal: multi-lane AES-CBC encryption with AES-NI. CBC encryption is serial inside one unit
// (each block waits for the previous one), so one stream leaves the AES units mostly idle; a
// run of sectors is independent across units, so up to kLanes units are encrypted in lockstep.
// Decryption is already parallel inside a unit and stays with OpenSSL.
// Not thread-safe (one per thread context). Round keys are wiped on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace cryptmap::crypto::internal {

bool aesni_available() noexcept;

class AesniCbcEncryptor {
 public:
  static constexpr std::size_t kLanes = 8;
  // REQUIRES: aesni_available(); key is 16, 24 or 32 bytes.
  explicit AesniCbcEncryptor(std::span<const std::byte> key);
  ~AesniCbcEncryptor();
  AesniCbcEncryptor(const AesniCbcEncryptor&) = delete;
  AesniCbcEncryptor& operator=(const AesniCbcEncryptor&) = delete;

  // Encrypts n <= kLanes units of unit_len bytes (a multiple of 16) in place, unit i with the
  // 16-byte IV ivs[i].
  void encrypt(std::byte* const* units, const std::byte* const* ivs, std::size_t n,
               std::size_t unit_len) const;

 private:
  alignas(16) std::uint8_t round_keys_[15 * 16];
  int rounds_;
};

}  // namespace cryptmap::crypto::internal

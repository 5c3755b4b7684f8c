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

// FIPS-197 key expansion into the byte layout AESENC expects: (rounds + 1) * 16 bytes written
// to `round_keys` (room for 15 * 16). Returns the round count (10, 12, 14).
// REQUIRES: aesni_available(); key is 16, 24 or 32 bytes.
int aesni_expand_key(std::span<const std::byte> key, std::uint8_t* round_keys);

// AES-CBC decryption of one unit with AES-NI, eight blocks in flight (CBC decryption is parallel
// inside a unit); avoids OpenSSL's per-unit EVP call, which dominates at 512-byte sectors.
// Not thread-safe (one per thread context). Round keys are wiped on destruction.
class AesniCbcDecryptor {
 public:
  // REQUIRES: aesni_available(); key is 16, 24 or 32 bytes.
  explicit AesniCbcDecryptor(std::span<const std::byte> key);
  ~AesniCbcDecryptor();
  AesniCbcDecryptor(const AesniCbcDecryptor&) = delete;
  AesniCbcDecryptor& operator=(const AesniCbcDecryptor&) = delete;
  // Decrypts len bytes (a multiple of 16) in place with the 16-byte IV.
  void decrypt(std::byte* unit, std::size_t len, const std::byte* iv) const;

 private:
  alignas(16) std::uint8_t dec_[15 * 16];
  int rounds_;
};

// AES-XTS over whole units with AES-NI, eight blocks in flight, no per-unit library call: the
// 512-byte-sector case is dominated by per-call overhead in OpenSSL's EVP interface.
// Not thread-safe (one per thread context). Round keys are wiped on destruction.
class AesniXts {
 public:
  // REQUIRES: aesni_available(); key is 32 or 64 bytes (two equal-size AES keys: data, tweak).
  // Uses VAES (256-bit, 16 blocks per step) when the CPU has it and allow_vaes.
  explicit AesniXts(std::span<const std::byte> key, bool allow_vaes = true);
  ~AesniXts();
  AesniXts(const AesniXts&) = delete;
  AesniXts& operator=(const AesniXts&) = delete;

  bool uses_vaes() const noexcept { return vaes_; }
  // Encrypts/decrypts one unit in place; `iv` is the 16-byte tweak input (before E_K2).
  void encrypt(std::byte* unit, std::size_t len, const std::byte* iv) const {
    encrypt(unit, unit, len, iv);
  }
  void decrypt(std::byte* unit, std::size_t len, const std::byte* iv) const {
    decrypt(unit, unit, len, iv);
  }
  // The same from `in` into `out`: the same memory, or two that do not overlap at all.
  void encrypt(const std::byte* in, std::byte* out, std::size_t len, const std::byte* iv) const;
  void decrypt(const std::byte* in, std::byte* out, std::size_t len, const std::byte* iv) const;

 private:
  alignas(16) std::uint8_t enc_[15 * 16];
  alignas(16) std::uint8_t dec_[15 * 16];
  alignas(16) std::uint8_t tweak_[15 * 16];
  int rounds_;
  bool vaes_;
};

bool vaes_available() noexcept;

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

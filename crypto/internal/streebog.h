// Internal: Streebog, the GOST R 34.11-2012 hash (RFC 6986), 512- and 256-bit digests, as
// VeraCrypt uses it for PBKDF2-HMAC-Streebog-512 (docs/tcrypt.md §3). No library cryptmap links
// on Debian 12 has it (OpenSSL 3 has no GOST, Crypto++ none). cryptsetup names: "stribog512",
// "stribog256" (its libgcrypt backend's spelling). Private to cryptmap_crypto (and its tests).
//
// Byte order: the message and the digest are byte strings; each 64-byte block is the RFC's
// 512-bit vector in little-endian order (byte 0 holds bits 7..0), as in the Linux kernel,
// libgcrypt and VeraCrypt. The 256-bit digest is the upper half of the final state.
//
// A Streebog object is a running hash; copy it to fork a state (HMAC keeps its keyed inner and
// outer states that way). The state is wiped on destruction and by reset().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

namespace cryptmap::crypto::internal {

class Streebog {
 public:
  static constexpr std::size_t kBlockBytes = 64;
  // digest_bytes: 64 (Streebog-512) or 32 (Streebog-256); anything else is treated as 64.
  explicit Streebog(std::size_t digest_bytes = 64) noexcept;
  Streebog(const Streebog&) noexcept = default;
  Streebog& operator=(const Streebog&) noexcept = default;
  ~Streebog();

  std::size_t digest_size() const noexcept { return digest_bytes_; }
  void reset() noexcept;
  void update(std::span<const std::byte> data) noexcept;
  // Writes min(out.size(), digest_size()) bytes of the digest, then resets.
  void final(std::span<std::byte> out) noexcept;

 private:
  using U512 = std::array<std::uint64_t, 8>;  // little-endian words, word 0 least significant
  void compress(const U512& m) noexcept;      // one block of the message (RFC 6986 §8.2)

  std::size_t digest_bytes_;
  U512 h_{};
  U512 n_{};      // bits processed, mod 2^512
  U512 sigma_{};  // sum of the blocks, mod 2^512
  std::array<std::byte, kBlockBytes> buf_{};
  std::size_t buf_len_ = 0;
};

}  // namespace cryptmap::crypto::internal

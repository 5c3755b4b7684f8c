// Authenticated per-sector encryption as dm-crypt does it over dm-integrity (LUKS2
// `--integrity`, docs/integrity.md §2). Each encryption sector carries a tuple of
// `tag_size()` bytes stored apart from its data: [auth tag][stored IV (random IV modes only)].
// The authenticated data is LE64(s) ‖ IV, s = the sector number relative to the start of the
// volume's data in 512-byte units (docs/architecture.md §4.2): it is computed here, from the
// SectorIndex of the run, by aad_sector() and nowhere else.
//
// Supported compositions (LUKS2 `encryption` + `integrity.type`):
//   aes-xts-plain64 | aes-xts-random + hmac(sha256) | hmac(sha512)    (authenc, encrypt-then-MAC)
//   aes-gcm-random + aead                                             (gcm(aes), 12-byte IV)
//   chacha20-random + poly1305                                        (rfc7539, 12-byte IV)
// Everything else is kUnsupported, naming the composition.
//
// Decrypt verifies before releasing plaintext: HMAC compositions check the tag over the
// ciphertext first and only then decrypt; AEAD compositions decrypt and wipe the sector when
// the tag fails. A failure is Errc::kAuth with sys_errno EILSEQ and object = the failing
// SectorIndex; the other sectors of the run are still processed (each sector has its own
// verdict, the first failure is returned).
//
// Thread-safety: const methods are reentrant (contexts are made per call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/units.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto {

struct AuthComposition {
  std::string encryption;           // "aes-xts-random"
  std::string integrity;            // "hmac(sha256)", "aead", "poly1305"
  std::size_t iv_size = 0;          // IV bytes in the AAD (16 for xts, 12 for gcm/chacha20)
  std::size_t stored_iv_size = 0;   // IV bytes in the tuple (0 for plain64)
  std::size_t auth_size = 0;        // authentication tag bytes
  std::size_t tag_size = 0;         // tuple = auth_size + stored_iv_size (dm-integrity's tag size)
  std::size_t mac_key_size = 0;     // bytes at the end of the volume key for the HMAC (0: none)
  std::size_t cipher_key_size = 0;  // default cipher key bytes (xts 64, gcm 32, chacha20 32)
};

// The composition of a LUKS2 segment, or kUnsupported. `integrity_key_size` is the segment's
// optional integrity.key_size (bytes); HMAC compositions default to the digest size.
Result<AuthComposition> auth_composition(std::string_view encryption, std::string_view integrity,
                                         std::optional<std::size_t> integrity_key_size = {});

// AAD sector of a volume-relative encryption sector: index · (sector_size / 512).
std::uint64_t aad_sector(SectorIndex index, std::uint32_t sector_size) noexcept;

class AuthSectorCipher : public SectorCipher {
 public:
  // One sector: data (sector_size bytes, in place), tuple (tag_size bytes). `iv` forces the IV
  // of a random-IV composition (tests); otherwise a fresh random IV is drawn.
  virtual Result<void> encrypt_sector(std::uint64_t aad_sector, std::span<std::byte> data,
                                      std::span<std::byte> tuple,
                                      std::span<const std::byte> iv = {}) const = 0;
  // kAuth (EILSEQ) when the tag does not verify; then `data` holds no plaintext.
  virtual Result<void> decrypt_sector(std::uint64_t aad_sector, std::span<std::byte> data,
                                      std::span<const std::byte> tuple) const = 0;
  // decrypt() that also records each sector's verdict: failed[i] is set when sector i of the
  // run failed verification (failed.size() = sectors in the run). Returns the first error.
  virtual Result<void> decrypt_verdicts(const SectorRun& run, std::span<bool> failed) const = 0;
  virtual const AuthComposition& composition() const noexcept = 0;
  std::size_t meta_bytes_per_sector() const noexcept override { return composition().tag_size; }
};

// Which code computes HMAC-SHA256 tags in this process: "sha-ni" (the CPU's SHA extensions,
// two sectors at a time) or "openssl" (OpenSSL's SHA-256, the fallback on CPUs without
// SHA-NI). Chosen once, at the first call or the first cipher made: the environment variable
// CRYPTMAP_TEST_HMAC_SHA256=openssl forces the fallback (tests run the known answers and volume
// round trips through it on machines that have SHA-NI; any other value is ignored).
const char* hmac_sha256_implementation() noexcept;

// `key` is the whole LUKS2 volume key: cipher key ‖ MAC key (docs/integrity.md §2).
Result<std::unique_ptr<AuthSectorCipher>> make_auth_sector_cipher(
    std::string_view encryption, std::string_view integrity, std::uint32_t sector_size,
    std::span<const std::byte> key, std::optional<std::size_t> integrity_key_size = {});

}  // namespace cryptmap::crypto

// Keyslot crypto shared by LUKS1 and LUKS2: passphrase -> KDF -> keyslot-area key, and the
// keyslot area itself (AF material encrypted like dm-crypt with 512-byte sectors, IV from 0 at
// the area start; docs/formats.md §1.3/§2.3). Stateless; thread-safe. Keys live in SecretBytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/secret.h"

namespace cryptmap::volume {
class BackingStore;
}

namespace cryptmap::volume::format {

struct KdfParams {
  std::string type;                                  // "pbkdf2", "argon2i", "argon2id"
  std::string hash;                                  // pbkdf2
  std::uint32_t iterations = 0;                      // pbkdf2
  std::uint32_t time = 0, memory_kib = 0, cpus = 0;  // argon2
  std::vector<std::byte> salt;
};

// Derives `out_len` bytes from the passphrase. kUnsupported for an unknown KDF type.
Result<SecretBytes> derive_key(const KdfParams& kdf, std::span<const std::byte> passphrase,
                               std::size_t out_len);

// Bytes of a keyslot area for a key: AF material rounded up to 512-byte sectors.
std::uint64_t keyslot_area_bytes(std::uint64_t key_bytes, std::uint32_t stripes);

// Decrypts a copy of a keyslot area (`encrypted`, at least keyslot_area_bytes() long) with
// `cipher_spec` keyed by `dk`, then AF-merges it into a `key_bytes` key. The caller verifies the
// result against the digest.
Result<SecretBytes> open_keyslot_material(std::span<const std::byte> encrypted,
                                          const std::string& cipher_spec,
                                          std::span<const std::byte> dk, std::uint32_t key_bytes,
                                          std::uint32_t stripes, const std::string& af_hash);

// AF-splits `vk` with fresh random stripes, encrypts with `cipher_spec`/`dk` and writes the area.
Result<void> store_keyslot_area(BackingStore& store, std::uint64_t area_offset,
                                const std::string& cipher_spec, std::span<const std::byte> dk,
                                std::span<const std::byte> vk, std::uint32_t stripes,
                                const std::string& af_hash);

}  // namespace cryptmap::volume::format

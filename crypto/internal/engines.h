// Internal: the SectorCipher implementations and their registry entries.
//
// make_sector_cipher() walks kEngines in priority order (like the kernel crypto API picking the
// highest-priority driver for "xts(aes)"): the first engine whose supports() accepts the
// configuration and whose create() succeeds wins. An engine may refuse a key at create() time
// (OpenSSL rejects XTS keys whose halves are equal) and the next one is tried.
#pragma once

#include <memory>
#include <span>

#include "base/result.h"
#include "crypto/internal/cipher_catalog.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto::internal {

struct EngineEntry {
  const char* name;
  int priority;  // higher wins
  bool (*supports)(const SectorCipherConfig& config, const KeyLayout& layout);
  Result<std::unique_ptr<SectorCipher>> (*create)(const SectorCipherConfig& config,
                                                  const KeyLayout& layout,
                                                  std::span<const std::byte> key);
};

// AES-NI AES-XTS (cryptmap's own, eight blocks in flight, no per-sector library call), same
// configurations as the OpenSSL one below; only on CPUs with AES-NI.
bool aesni_xts_supports(const SectorCipherConfig& config, const KeyLayout& layout);
Result<std::unique_ptr<SectorCipher>> make_aesni_xts_cipher(const SectorCipherConfig& config,
                                                            const KeyLayout& layout,
                                                            std::span<const std::byte> key);

// OpenSSL EVP AES-XTS with IVs that are a pure function of the sector (plain64, plain,
// plain64be, null), one key: the hot path of every modern LUKS volume.
bool openssl_xts_supports(const SectorCipherConfig& config, const KeyLayout& layout);
Result<std::unique_ptr<SectorCipher>> make_openssl_xts_cipher(const SectorCipherConfig& config,
                                                              const KeyLayout& layout,
                                                              std::span<const std::byte> key);

// OpenSSL EVP AES chain modes (cbc/ecb/ctr/xts) under the generic IV generators, multi-key,
// lmk and tcw: every AES spec the dedicated XTS engine does not take.
bool openssl_modes_supports(const SectorCipherConfig& config, const KeyLayout& layout);
Result<std::unique_ptr<SectorCipher>> make_openssl_modes_cipher(const SectorCipherConfig& config,
                                                                const KeyLayout& layout,
                                                                std::span<const std::byte> key);

// Generic engine: any catalogued block cipher (Crypto++), any chain mode, any IV generator.
bool generic_supports(const SectorCipherConfig& config, const KeyLayout& layout);
Result<std::unique_ptr<SectorCipher>> make_generic_cipher(const SectorCipherConfig& config,
                                                          const KeyLayout& layout,
                                                          std::span<const std::byte> key);

// Validates the run against the cipher's sector size (shared by all engines).
Result<void> check_run_shape(const SectorRun& run, std::uint32_t sector_size);

}  // namespace cryptmap::crypto::internal

// SectorCipher — encrypts and decrypts whole encryption sectors in place (and encrypts out of
// place: encrypt_from), exactly as a dm-crypt table line `<spec> <key> <iv_offset> ...
// sector_size:<n> [iv_large_sectors]` does.
//
// Thread-safety: every method is const and reentrant; one SectorCipher serves all I/O threads
// (per-thread cipher contexts are the implementation's business, never shared mutable state).
// Ownership: the cipher copies the key into its own locked memory; the caller may wipe its copy.
//
// Sector numbering (the rule lives here and nowhere else):
//   run.first is a SectorIndex, in units of sector_size, relative to the start of the data segment.
//   unit k of the run uses IvSector = iv_offset + (first + k) * (sector_size / 512)
//                                   or iv_offset/(sector_size/512) + first + k with
//                                   iv_large_sectors.
// Authenticated mode (later): a sector may carry `meta_bytes_per_sector()` bytes of metadata (auth
// tag, random IV) stored apart from its data; encrypt fills run.meta, decrypt verifies it and
// returns kAuth (object = failing SectorIndex) without leaving unverified plaintext in run.data.
// Today every cipher has meta_bytes_per_sector() == 0 and run.meta is empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/result.h"
#include "base/units.h"
#include "crypto/cipher_spec.h"

namespace cryptmap::crypto {

struct SectorRun {
  std::span<std::byte> data;  // count * sector_size bytes
  std::span<std::byte> meta;  // count * meta_bytes_per_sector() bytes (empty when 0)
  SectorIndex first;          // segment-relative index of the first sector
};

class SectorCipher {
 public:
  virtual ~SectorCipher() = default;
  virtual Result<void> encrypt(const SectorRun& run) const = 0;
  virtual Result<void> decrypt(const SectorRun& run) const = 0;
  // Encrypts `plain` (run.data.size() bytes, not overlapping run.data) into run.data, leaving
  // `plain` as it was: exactly what copying it into run.data and encrypt(run) give, without the
  // copy where the implementation reads its input from elsewhere (aesni-xts). The default
  // copies, then encrypts in place. Errors: encrypt's; kInvalid when the sizes differ.
  virtual Result<void> encrypt_from(std::span<const std::byte> plain, const SectorRun& run) const;
  virtual std::uint32_t sector_size() const noexcept = 0;
  virtual std::size_t meta_bytes_per_sector() const noexcept { return 0; }
  // Short name of the implementation, for `status` and benchmarks ("openssl-xts", "cryptopp").
  virtual const char* engine_name() const noexcept = 0;
};

struct SectorCipherConfig {
  CipherSpec spec;
  std::uint32_t sector_size = 512;  // 512, 1024, 2048, 4096
  bool iv_large_sectors = false;
  std::uint64_t iv_offset =
      0;  // dm-crypt <iv_offset> in 512-byte sectors (LUKS2 iv_tweak, plain --skip)
};

// Chooses the highest-priority implementation that supports `config` (a batched AES-XTS engine
// over the generic Crypto++ one, like the kernel crypto API's priorities) and keys it.
// Errors: kUnsupported naming the cipher/mode/ivmode; kInvalid for a key size the spec rejects.
Result<std::unique_ptr<SectorCipher>> make_sector_cipher(const SectorCipherConfig& config,
                                                         std::span<const std::byte> key);

// A cipher cascade (TrueCrypt/VeraCrypt "AES-Twofish-Serpent", which cryptsetup names
// "serpent-twofish-aes"): `configs` in key order, one sector cipher each, all with the same
// sector size; `key` is the concatenation of their keys in that order, in equal shares. Sectors are
// encrypted by configs[0] first and configs[n-1] last, and decrypted in the reverse order, which
// is what cryptsetup's stack of one dm-crypt device per cipher does (docs/tcrypt.md §5).
// One config gives the plain cipher. Several cbc-tcw configs are TrueCrypt's CBC cascade
// instead (crypto/tcrypt_cbc.h: outer or inner CBC, its key layout, not equal shares).
// Errors: kInvalid (no config, key not divisible, mixed sector sizes), make_sector_cipher's.
Result<std::unique_ptr<SectorCipher>> make_cascade_cipher(
    std::span<const SectorCipherConfig> configs, std::span<const std::byte> key);

// Key size in bytes that a spec requires for a given --key-size in bits (validation helper).
Result<void> check_key_size(const CipherSpec& spec, std::size_t key_bytes);

}  // namespace cryptmap::crypto

// FileVault 2 on Core Storage (FVAULT2), as cryptsetup reads it (docs/bitlk.md §8): the
// physical volume header, the disk label, the XTS-encrypted metadata blocks (passphrase-wrapped
// KEK, KEK-wrapped volume key, logical volume size, family UUID and offset), the unlock
// (PBKDF2-SHA256 → RFC 3394 unwrap twice → tweak key from SHA-256) and the single
// aes-xts-plain64 segment of the logical volume. APFS FileVault is not this format.
//
// Thread-safety: a loaded header is immutable; unlock() and dump() are const and reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "base/secret.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;

// True when the image starts with a Core Storage physical volume header (CRC and magic).
bool is_fvault2(const BackingStore& image);

class Fvault2Header {
 public:
  // Errors: kInvalid "not a FVAULT2 device" (no header, CRC, magic), kUnsupported (version,
  // key size), kCorrupt naming the block or field that failed.
  static Result<std::unique_ptr<Fvault2Header>> load(const BackingStore& image);

  const VolumeLayout& layout() const noexcept { return layout_; }
  // The 32-byte XTS volume key; kBadKey "No key available with this passphrase.".
  Result<SecretBytes> unlock(std::span<const std::byte> passphrase) const;
  // cryptsetup fvault2Dump's text.
  std::string dump(const std::string& device) const;

 private:
  Fvault2Header() = default;
  VolumeLayout layout_;
  std::string pv_uuid_, family_uuid_;
  std::array<std::byte, 16> family_bin_{};
  std::uint32_t iterations_ = 0;
  std::array<std::byte, 16> salt_{};
  std::array<std::byte, 24> wrapped_kek_{}, wrapped_vk_{};
  std::uint64_t lv_offset_ = 0, lv_size_ = 0;
};

}  // namespace cryptmap::volume

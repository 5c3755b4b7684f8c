// BitLocker (BITLK) volumes, as cryptsetup reads them (docs/bitlk.md): the boot sector,
// the FVE metadata copies (the first whose CRC-32 checks is used), the volume master key (VMK)
// protectors, the full-volume encryption key (FVEK), and the segment map of the decrypted
// volume (zero ranges over the metadata, the relocated boot sectors, the rest in place).
//
// Unlocking follows cryptsetup's BITLK_get_volume_key: every VMK is tried in metadata order
// with what its protector needs — the passphrase (password VMKs), the passphrase read as a
// recovery password (48 digits in 8 groups), the passphrase read as a .BEK startup-key file,
// or the clear key stored in the metadata (no secret at all). TPM and smart-card protectors
// cannot be used (the key lives outside the image); cryptsetup refuses them too.
//
// Thread-safety: a loaded header is immutable; unlock() and dump() are const and reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/secret.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;

// True when the image starts with a BitLocker boot sector (signature -FVE-FS- or a To Go
// MSWIN4.1 volume carrying the BitLocker GUID). Reads 512 bytes; I/O errors read as false.
bool is_bitlk(const BackingStore& image);

class BitlkHeader {
 public:
  // Reads and checks the boot sector and the metadata copies. Errors: kInvalid "not a BITLK
  // device" (no signature), kUnsupported (Vista version 1, unknown encryption method),
  // kCorrupt naming the field (no valid metadata copy, entries out of bounds, a segment map
  // that does not fit the image).
  static Result<std::unique_ptr<BitlkHeader>> load(const BackingStore& image);
  ~BitlkHeader();

  // The layout without the key (segments filled in; key_bytes set).
  const VolumeLayout& layout() const noexcept { return layout_; }
  // Refusals for activation, as cryptsetup's (encrypt-on-write volumes, volumes still being
  // encrypted or decrypted, TPM-only, ...): kUnsupported with cryptsetup's reason.
  Result<void> check_activation() const;
  // True when a clear-key VMK exists: no passphrase is needed.
  bool has_clear_key() const noexcept;
  // The FVEK, in the layout's key format. kBadKey "No key available with this passphrase."
  // when no VMK opens with it.
  Result<SecretBytes> unlock(std::span<const std::byte> passphrase) const;
  // cryptsetup bitlkDump's text (without the volume key).
  std::string dump(const std::string& device) const;

  struct Vmk;  // implementation detail (bitlk.cpp)

 private:
  BitlkHeader() = default;
  Result<SecretBytes> open_vmk(const Vmk& v, std::span<const std::byte> passphrase) const;

  VolumeLayout layout_;
  std::vector<std::byte> meta_;  // the valid metadata copy (64 KiB at most)
  std::vector<Vmk> vmks_;
  std::uint16_t version_ = 2;
  std::uint16_t method_ = 0;
  std::uint16_t curr_state_ = 0, next_state_ = 0;
  bool togo_ = false;
  bool eow_ = false;
  std::string guid_;
  std::string description_;
  std::uint64_t created_ = 0;  // FILETIME
  std::uint64_t volume_size_ = 0;
  std::array<std::uint64_t, 3> fve_offsets_{};
  std::uint64_t vh_offset_ = 0, vh_size_ = 0;
  // FVEK entry in meta_: nonce (12), tag (16), data.
  std::size_t fvek_at_ = 0, fvek_len_ = 0;
};

}  // namespace cryptmap::volume

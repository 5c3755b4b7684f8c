// The one unlock path: from (header store, data store, type, keyslot, passphrase) to
// (VolumeLayout, volume key), for LUKS1, LUKS2 and plain mode. volume/open.h builds on it; the
// CLI's `open` uses its two steps so that it can check the header before asking for a
// passphrase and ask again after a wrong one (--tries).
//
// For LUKS the header store is the image itself, or the detached header file (--header); the
// data store is the image. For plain mode there is no header (pass the data store twice).
// Stateless apart from the prepared header; thread-safe. Stores are borrowed for the call only.
#pragma once

#include <memory>
#include <optional>
#include <span>

#include "base/result.h"
#include "base/secret.h"
#include "volume/format/loopaes.h"
#include "volume/format/plain.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;
class BitlkHeader;
class Fvault2Header;
class LuksHeader;

struct UnlockOptions {
  // nullopt = any LUKS version (cryptsetup --type luks), or BitLocker when the image has a
  // BitLocker boot sector; kPlain selects plain mode, kBitlk BitLocker, kLoopaes loop-AES
  // (the "passphrase" is then the whole key file).
  std::optional<VolumeType> type;
  std::optional<int> keyslot;        // --key-slot
  PlainOptions plain;                // plain mode only
  bool plain_key_from_file = false;  // plain: --key-file other than stdin (key used raw)
  LoopaesOptions loopaes;            // loop-AES only
  // --test-passphrase: only the key is checked, not whether the data device holds the data
  // segment (cryptsetup checks the device size only when it activates a mapping).
  bool key_only = false;
  // --integrity-no-journal: an authenticated LUKS2 volume is served in dm-integrity's direct
  // mode (data and tags written in place), as the persistent flag `no-journal` does.
  bool integrity_no_journal = false;
};

struct UnlockedVolume {
  VolumeLayout layout;
  SecretBytes volume_key;
  int keyslot = -1;  // -1 for plain mode and loop-AES
};

// Step 1 reads and checks everything that needs no passphrase; step 2 derives the key, as
// often as the caller has passphrases to try.
class Unlocker {
 public:
  // Errors: kInvalid "not a LUKS device" (Device X is not a valid LUKS device), kCorrupt naming
  // the damaged field, kUnsupported (unknown requirement, reencryption, integrity, cipher), the
  // plain options' errors (plain_layout), loop-AES's (loopaes_check_options; kNoSpace for an
  // offset past the image), kNoSpace (object = the data offset, detail = the image's
  // size and name) when the data image is smaller than the data segment (unless key_only).
  static Result<Unlocker> prepare(const BackingStore& header_store, const BackingStore& data_store,
                                  const UnlockOptions& opts);
  Unlocker(Unlocker&&) noexcept;
  Unlocker& operator=(Unlocker&&) noexcept;
  ~Unlocker();

  // The layout without the key length (LUKS: known only once a keyslot is open).
  const VolumeLayout& layout() const noexcept { return layout_; }
  // The BitLocker header when the volume is one (dump, clear key), else nullptr.
  const BitlkHeader* bitlk() const noexcept { return bitlk_.get(); }
  // Errors: kBadKey "No key available with this passphrase.", kNotFound "No usable keyslot is
  // available.", the plain key derivation's errors, loop-AES's key-file errors
  // (loopaes_parse_keyfile).
  Result<UnlockedVolume> unlock(std::span<const std::byte> passphrase) const;
  // open --volume-key-file: LUKS1/LUKS2 only; `volume_key` (layout().key_bytes long) is checked
  // against the header's digest and copied into locked memory. Errors: kBadKey "Volume key does
  // not match the volume.", kUnsupported for plain mode, BitLocker and FileVault 2.
  Result<UnlockedVolume> unlock_with_volume_key(std::span<const std::byte> volume_key) const;

 private:
  Unlocker() = default;
  UnlockOptions opts_;
  VolumeLayout layout_;
  std::uint64_t data_bytes_ = 0;            // loop-AES: the image's size
  std::unique_ptr<LuksHeader> header_;      // null in plain mode and for BitLocker
  std::unique_ptr<BitlkHeader> bitlk_;      // BitLocker only
  std::unique_ptr<Fvault2Header> fvault2_;  // FileVault 2 only
};

// prepare() then unlock(): the errors of both.
Result<UnlockedVolume> unlock_volume(const BackingStore& header_store,
                                     const BackingStore& data_store, const UnlockOptions& opts,
                                     std::span<const std::byte> passphrase);

}  // namespace cryptmap::volume

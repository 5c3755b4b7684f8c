// unlock_volume — the one call the daemon makes to go from (header store, data store, type,
// keyslot, passphrase) to (VolumeLayout, volume key), for LUKS1, LUKS2 and plain mode.
//
// For LUKS the header store is the image itself, or the detached header file (--header); the
// data store is the image. For plain mode there is no header (pass the data store twice).
// Stateless; thread-safe. Stores are borrowed for the call only.
#pragma once

#include <optional>
#include <span>

#include "base/result.h"
#include "base/secret.h"
#include "volume/format/plain.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;

struct UnlockOptions {
  // nullopt = any LUKS version (cryptsetup --type luks); kPlain selects plain mode.
  std::optional<VolumeType> type;
  std::optional<int> keyslot;     // --key-slot
  PlainOptions plain;             // plain mode only
  bool plain_key_from_file = false;  // plain: --key-file other than stdin (key used raw)
};

struct UnlockedVolume {
  VolumeLayout layout;
  SecretBytes volume_key;
  int keyslot = -1;  // -1 for plain mode
};

// Errors: kBadKey "No key available with this passphrase.", kNotFound "No usable keyslot is
// available.", kInvalid "Device X is not a valid LUKS device.", kCorrupt naming the damaged
// field, kUnsupported (unknown requirement, reencryption, integrity, cipher), kNoSpace when the
// data image is smaller than the data offset.
Result<UnlockedVolume> unlock_volume(const BackingStore& header_store, const BackingStore& data_store,
                                     const UnlockOptions& opts, std::span<const std::byte> passphrase);

}  // namespace cryptmap::volume

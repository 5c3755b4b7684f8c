// convert --type luks1|luks2: rewrites a LUKS header in place in the other version, keyslots,
// volume key digest, UUID and data segment carried over, as cryptsetup 2.6.1's crypt_convert
// (docs/formats.md §2.8 has the rules and refusals).
//
// The store is the header store (the image, or the --header file), borrowed for the call.
// Not crash-safe (neither is cryptsetup's): the keyslot areas are moved before the new header
// is written. Thread-safety: one writer per image at a time (the CLI takes the metadata lock).
#pragma once

#include "base/result.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;

// `to` is kLuks1 or kLuks2. Errors are kInvalid with cryptsetup's sentence ("Device is already
// LUKS2 type.", "Cannot convert to LUKS1 format - keyslot 0 is not LUKS1 compatible.", ...);
// every refusal is decided before anything is written.
Result<void> luks_convert(BackingStore& header, VolumeType to);

}  // namespace cryptmap::volume

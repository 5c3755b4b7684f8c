// Reading and unlocking LUKS1 / LUKS2 headers (the "open" half of the format code).
//
// LuksHeader is a parsed, validated header: both LUKS2 binary copies and their checksums and
// seqids are checked before anything is trusted (cryptsetup's hdr_disk_sanity_check_pre +
// hdr_from_disk). Immutable after load; const methods are thread-safe.
// Ownership: load() copies what it needs; the store is borrowed for the call only.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "base/secret.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;

struct UnlockedKey {
  SecretBytes volume_key;
  int keyslot = -1;  // the keyslot that matched
};

class LuksHeader {
 public:
  virtual ~LuksHeader() = default;
  virtual VolumeType type() const noexcept = 0;
  // The dm-crypt mapping of segment 0 (data offset, cipher, sector size, iv tweak, size).
  virtual VolumeLayout layout() const = 0;
  // Tries the keyslots (only `keyslot` when given) in cryptsetup's order; kBadKey with the
  // message "No key available with this passphrase." when none matches.
  virtual Result<UnlockedKey> unlock(std::span<const std::byte> passphrase,
                                     std::optional<int> keyslot) const = 0;
};

// Detects and parses a LUKS header at the start of `store`. `expect` limits the accepted
// version (open --type luks1/luks2). Errors: kCorrupt naming the field for a damaged header,
// kInvalid "not a LUKS device" for anything else, kUnsupported for unknown requirements.
Result<std::unique_ptr<LuksHeader>> load_luks_header(const BackingStore& store,
                                                     std::optional<VolumeType> expect);

}  // namespace cryptmap::volume

// LUKS2 reencryption, offline (the image closed), byte-compatible with cryptsetup 2.6.1's
// `reencrypt`, so that either tool resumes what the other started or left interrupted.
//
//   reencrypt_init()   adds a keyslot with a new volume key (same passphrase) and puts the header
//                      in reencryption: backup segments, reencrypt keyslot, reencryption digest,
//                      requirement online-reencrypt-v2 (cryptsetup reencrypt --init-only).
//   reencrypt_run()    unlocks both volume keys, verifies the reencryption digest, recovers an
//                      interrupted hotzone, then reencrypts hotzone by hotzone (forward) and
//                      finally drops the old keyslots and the reencryption metadata.
//   reencrypt_status() what a header says (for messages and tests).
//   reencrypt_open()   what `open` of an image in reencryption needs: both keys unlocked and the
//                      reencryption digest verified, an interrupted hotzone recovered (as
//                      cryptsetup does at activation), then the layout of the two crypt
//                      segments either side of the boundary (docs/reencrypt.md §9).
//
// The on-disk rules are restated in docs/reencrypt.md. Only mode "reencrypt", direction
// "forward" and the resilience modes checksum, journal and none are implemented; the rest
// (encrypt, decrypt, backward, datashift, a detached header) is refused with kUnsupported naming
// the missing feature. Thread-compatible; the store is borrowed for the call. The caller holds
// the metadata lock and makes sure no one else uses the image (the daemon does not have it open).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "volume/format/luks_admin.h"
#include "volume/format/unlock.h"

namespace cryptmap::volume {

class BackingStore;

struct ReencryptInitOptions {
  std::string cipher;                   // "" = keep the current segment's cipher
  std::uint32_t key_bits = 0;           // 0 = the current volume key's size
  std::uint32_t sector_size = 0;        // 0 = keep the current encryption sector size
  std::string resilience = "checksum";  // checksum | journal | none
  std::string hash = "sha256";          // checksum resilience hash
  PbkdfOptions pbkdf;                   // the new keyslot's KDF
  std::optional<int> key_slot;          // unlock (and re-key) only this keyslot
};

// Errors: kBadKey (wrong passphrase, nothing written), kBusy (already in reencryption),
// kUnsupported (LUKS1, integrity, a cipher cryptmap has not), kInvalid (bad sector size, image
// not aligned to it), kNoSpace (no free keyslot or keyslots area room).
Result<void> reencrypt_init(BackingStore& image, std::span<const std::byte> passphrase,
                            const ReencryptInitOptions& opts);

struct ReencryptStatus {
  bool in_reencryption = false;
  bool crashed = false;  // a hotzone segment is flagged in-reencryption (needs recovery)
  std::string mode, direction, resilience;
  std::uint64_t done_bytes = 0, total_bytes = 0;
};
Result<ReencryptStatus> reencrypt_status(const BackingStore& image);

struct ReencryptRunOptions {
  std::uint64_t max_hotzone_bytes = 0;  // --hotzone-size; 0 = the resilience mode's default
  // Called after every hotzone (and once before the first); returning false stops cleanly
  // after the current hotzone, leaving a header either tool resumes.
  std::function<bool(std::uint64_t done, std::uint64_t total)> progress;
};
struct ReencryptRunResult {
  bool finished = false;  // false: stopped by `progress` (resumable)
  std::uint64_t bytes = 0;
};
// Errors: kNotFound "Device is not in reencryption." (exit 1 as cryptsetup), kBadKey,
// kCorrupt "Reencryption metadata is invalid.", kUnsupported for unimplemented modes, kIo.
Result<ReencryptRunResult> reencrypt_run(BackingStore& image, std::span<const std::byte> passphrase,
                                         const ReencryptRunOptions& opts);

// The volume of an image in reencryption, served while the reencryption is paused. The layout
// has up to two crypt segments (volume/segment/segment_map.h): [0, boundary) under the new key,
// cipher and sector size, [boundary, end) under the old ones; its sector_size is the larger of
// the two, and volume_key is the old key followed by the new one (each segment names its slice).
// A hotzone left flagged in-reencryption is recovered first and the header written (the caller
// holds the metadata lock and nobody serves the image). Errors: reencrypt_run's, before anything
// is written for a wrong passphrase or invalid metadata.
Result<UnlockedVolume> reencrypt_open(BackingStore& image, std::span<const std::byte> passphrase);

}  // namespace cryptmap::volume

// cryptsetup's metadata lock on an image (lib/utils_device_locking.c): flock on the image file
// itself, or on /run/cryptsetup/L_<major>:<minor> for a block device; shared to read, exclusive
// to write. Taking the same lock keeps cryptmap and cryptsetup from rewriting one header at the
// same time. The CLI's LUKS verbs take it; the daemon takes it for an online reencryption run
// (docs/reencrypt.md §10), as cryptsetup's reencrypt process holds it for its run.
//
//   take()      waits for the lock (a path that cannot be opened gives an empty lock: the
//               verb then fails on the image itself, with that error);
//   try_take()  does not wait: kBusy when another open file holds a conflicting lock; an empty
//               lock, as take(), for a path that is no file (an NBD URI).
// Held until release() or the object is destroyed. Move-only; thread-compatible.
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cryptmap::volume {

class MetadataLock {
 public:
  static MetadataLock take(const std::string& path, bool exclusive);
  // Errors: kBusy (held elsewhere), kIo (cannot open the lock file).
  static Result<MetadataLock> try_take(const std::string& path, bool exclusive);
  bool held() const noexcept { return fd_.valid(); }
  void release() noexcept { fd_.reset(); }

 private:
  UniqueFd fd_;  // closing the fd releases the lock
};

// cryptsetup's reencryption lock of a LUKS2 volume (lib/luks2/luks2_reencrypt.c,
// reencrypt_lock_internal): flock on /run/cryptsetup/LN_LUKS2-reencryption-<UUID>, which
// cryptsetup's reencrypt takes exclusively without waiting ("Reencryption process is already
// running." when it cannot). cryptmap's offline reencrypt takes it the same way; the daemon holds
// it shared for as long as it serves a LUKS2 volume, so no other process reencrypts the image
// under the served file (docs/reencrypt.md §10). Where /run/cryptsetup cannot be created or
// opened (an unprivileged user), the lock is empty, as cryptsetup runs without its locks there.
// Move-only; thread-compatible.
class ReencryptLock {
 public:
  // Errors: kBusy (held elsewhere: a reencryption runs, or a daemon serves the volume).
  static Result<ReencryptLock> try_take(const std::string& uuid, bool exclusive);
  bool held() const noexcept { return fd_.valid(); }

 private:
  UniqueFd fd_;
};

}  // namespace cryptmap::volume

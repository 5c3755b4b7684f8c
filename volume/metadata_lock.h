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

}  // namespace cryptmap::volume

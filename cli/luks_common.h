// What the LUKS verbs (luks_commands.cpp, reencrypt_commands.cpp) share: printing an error the
// cryptsetup way with its exit code, and cryptsetup's metadata lock on an image.
#pragma once

#include <string>

#include "base/error.h"
#include "base/unique_fd.h"

namespace cryptmap::cli {

// Prints `e` on stderr (cryptsetup's sentence when the error carries one) and returns the exit
// code for it (base/exit_code.h).
int report(const Error& e);

// cryptsetup's metadata lock (lib/utils_device_locking.c): flock on the image file itself, or on
// /run/cryptsetup/L_<major>:<minor> for a block device; shared to read, exclusive to write.
// Taking the same lock keeps cryptmap and cryptsetup from rewriting one header at the same time.
// Held until the object is destroyed. Move-only.
class MetadataLock {
 public:
  static MetadataLock take(const std::string& path, bool exclusive);

 private:
  UniqueFd fd_;  // closing the fd releases the lock
};

}  // namespace cryptmap::cli

// PosixBackingStore — the BackingStore over a regular file or a block device that
// open_posix_store returns (pread/pwrite through base/posix_io.h; O_DIRECT for aligned requests
// when asked, a buffered fd for the rest).
//
// Declared for the decorators in volume/zone/: a zoned store is this store plus the zone rules
// (write pointers, resets, the emulated drive's sidecar, a real device's zone ioctls), so besides
// positional I/O it needs the file's own operations below. Everyone else uses BackingStore.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

class PosixBackingStore : public BackingStore {
 public:
  // open_posix_store, with the concrete type.
  static Result<std::unique_ptr<PosixBackingStore>> open(const std::string& path,
                                                         const PosixStoreOptions& opts);

  virtual bool block_device() const noexcept = 0;
  // Whether batches go to io_uring (false: it was off or could not be set up at open).
  virtual bool uses_io_uring() const noexcept = 0;
  // The fd every request that is not served by O_DIRECT uses (ioctls, flock). Owned by the store.
  virtual int fd() const noexcept = 0;
  // fsync: data and metadata. A punched hole is an extent-map change that fdatasync (sync())
  // need not commit, so code that must make a hole durable calls this.
  virtual Result<void> sync_all() = 0;
  // Makes [off, off + len) read as zeros: punch a hole, else FALLOC_FL_ZERO_RANGE, else (only when
  // `must`) write zeros. false only when !must and the file system supports neither fallocate mode.
  // Regular files only (kUnsupported on a block device).
  virtual Result<bool> zero_range(ByteOffset off, std::uint64_t len_bytes, bool must) = 0;
  // flock(LOCK_EX, or LOCK_SH when !exclusive) without blocking, held until the store is
  // destroyed; false when another open file holds a conflicting lock.
  virtual Result<bool> try_lock(bool exclusive) = 0;
  // ftruncate a regular file to `size_bytes` (size_bytes() follows).
  virtual Result<void> resize(std::uint64_t size_bytes) = 0;
};

}  // namespace cryptmap::volume

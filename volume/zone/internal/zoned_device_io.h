// Private to volume/zone: the system calls BlockZonedStore makes on a zoned block device, behind an
// interface so the store's logic (cache checks, resync after a device error, management commands)
// can be tested against a hostile fake device built to the same kernel contract. The real
// implementation is a file descriptor plus the linux/blkzoned.h ioctls.
#pragma once

#include <linux/blkzoned.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume::zone_internal {

// Every call returns what the syscall would: byte counts or 0 on success, -errno on failure.
class ZonedDeviceIo {
 public:
  virtual ~ZonedDeviceIo() = default;
  virtual ssize_t pread(void* buf, std::size_t len, std::uint64_t off) = 0;
  virtual ssize_t pwrite(const void* buf, std::size_t len, std::uint64_t off) = 0;
  virtual int fdatasync() = 0;
  // BLKREPORTZONE: `rep` is followed in memory by room for rep->nr_zones descriptors.
  virtual int report_zones(struct blk_zone_report* rep) = 0;
  // BLKRESETZONE / BLKFINISHZONE / BLKOPENZONE / BLKCLOSEZONE.
  virtual int zone_mgmt(unsigned long request, const struct blk_zone_range& range) = 0;
  // BLKDISCARD.
  virtual int discard(std::uint64_t off, std::uint64_t len) = 0;
};

// The ZonedDeviceIo of an open block device fd.
std::unique_ptr<ZonedDeviceIo> make_fd_device_io(UniqueFd fd);

// Builds the store: reports every zone through `io`, validates, builds the map. Errors name `path`.
Result<std::unique_ptr<ZonedStore>> make_block_zoned_store(std::unique_ptr<ZonedDeviceIo> io,
                                                           const std::string& path, bool read_only,
                                                           std::uint64_t zone_size_bytes,
                                                           std::uint64_t nr_zones,
                                                           std::uint32_t logical_block_bytes);

}  // namespace cryptmap::volume::zone_internal

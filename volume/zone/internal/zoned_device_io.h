// Private to volume/zone: the zone commands BlockZonedStore sends to a zoned block device
// (BLKREPORTZONE and the zone management ioctls), behind an interface so the store's logic (cache
// checks, resync after a device error, management commands) can be tested against a hostile fake
// device built to the same kernel contract. The data I/O is not here: BlockZonedStore decorates a
// BackingStore for it (the device's PosixBackingStore; in tests, the fake's store).
#pragma once

#include <linux/blkzoned.h>

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "volume/store/backing_store.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume::zone_internal {

// Every call returns what the ioctl would: 0 on success, -errno on failure.
class ZonedDeviceIo {
 public:
  virtual ~ZonedDeviceIo() = default;
  // BLKREPORTZONE: `rep` is followed in memory by room for rep->nr_zones descriptors.
  virtual int report_zones(struct blk_zone_report* rep) = 0;
  // BLKRESETZONE / BLKFINISHZONE / BLKOPENZONE / BLKCLOSEZONE.
  virtual int zone_mgmt(unsigned long request, const struct blk_zone_range& range) = 0;
};

// The ZonedDeviceIo of an open block device fd (which it owns).
std::unique_ptr<ZonedDeviceIo> make_fd_device_io(UniqueFd fd);

// Builds the store over `device` (data I/O) and `io` (zone commands): reports every zone through
// `io`, validates, builds the map. Errors name `path`.
Result<std::unique_ptr<ZonedStore>> make_block_zoned_store(std::unique_ptr<BackingStore> device,
                                                           std::unique_ptr<ZonedDeviceIo> io,
                                                           const std::string& path, bool read_only,
                                                           std::uint64_t zone_size_bytes,
                                                           std::uint64_t nr_zones,
                                                           std::uint32_t logical_block_bytes);

}  // namespace cryptmap::volume::zone_internal

// ZonedStore — a BackingStore whose image is cut into zones (see zone_map.h), with the zone
// management commands of a zoned block device: report, reset, finish, open, close.
//
// Two implementations, chosen by `open_zoned_store`. Both are decorators: the bytes move through
// an ordinary PosixBackingStore (volume/store/posix_backing_store.h, so O_DIRECT like any image),
// and the zoned store adds the zone rules on top:
//   - EmulatedZonedStore: a regular image file plus a persistent zone-state sidecar (IMAGE.zones).
//     It enforces a host-managed drive's rules exactly (README.md in this folder lists them) so
//     the engine and tests can run on machines without zoned hardware.
//   - BlockZonedStore: a real zoned block device (SMR host-managed/host-aware, ZNS); the zone
//     commands go through the kernel's zone ioctls (linux/blkzoned.h).
//
// Rules for sequential zones, identical in both (the drive's contract):
//   - write_at into a sequential zone must start exactly at the zone's write pointer, be a multiple
//     of logical_block_bytes(), and end at or before the zone's capacity; otherwise kZoneOrder,
//     with object = zone index and detail naming the write offset and the expected wp. A write to
//     a full zone is kZoneOrder; read-only zones kReadOnly; offline zones kIo.
//   - A write crossing a zone boundary fails with kZoneOrder if either side is sequential (a
//     write spanning only conventional zones is allowed, as ZBC allows it).
//   - read_at returns stored data below each zone's wp and zeros at or past it; reads may span
//     zones. Reads past the image end are kIo (BackingStore contract); writes past it kNoSpace.
//   - Sequential-write-preferred (host-aware) zones accept writes anywhere below capacity; their
//     wp is the highest byte written. Admission still keeps the engine's writes sequential.
//   - discard on a sequential zone is kUnsupported: use reset_zone.
//
// Thread-safety: every method is safe from any number of threads. Writes into one zone are
// checked and applied atomically under that zone's lock, so of two concurrent writes aimed at the
// same wp exactly one succeeds, and a reordered pair fails the second one — exactly what the drive
// does. Ordering writes is the caller's job (zone_admission.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "volume/store/backing_store.h"
#include "volume/zone/zone_map.h"

namespace cryptmap::volume {

class ZonedStore : public BackingStore {
 public:
  // Never nullptr for a ZonedStore.
  const ZoneMap* zones() const noexcept override = 0;
  const ZoneMap& zone_map() const noexcept { return *zones(); }

  // Smallest write unit of sequential zones (the device's logical block size).
  virtual std::uint32_t logical_block_bytes() const noexcept = 0;

  // Zone descriptors [first, first + count) clipped to the zone count (BLKREPORTZONE). For a real
  // device this asks the device and refreshes the cached map; kInvalid when first is past the end.
  virtual Result<std::vector<ZoneInfo>> report_zones(std::uint64_t first, std::uint64_t count) = 0;
  // RESET WRITE POINTER: wp := start, cond := empty, data reads as zeros afterwards. Conventional
  // zones: kInvalid. Read-only: kReadOnly. Offline: kIo. Durable before it returns (emulated).
  virtual Result<void> reset_zone(std::uint64_t index) = 0;
  // FINISH ZONE: cond := full (wp := start + len), the unwritten rest reads as zeros.
  virtual Result<void> finish_zone(std::uint64_t index) = 0;
  // OPEN ZONE / CLOSE ZONE (explicit open/close). Optional: kUnsupported by default.
  virtual Result<void> open_zone(std::uint64_t index);
  virtual Result<void> close_zone(std::uint64_t index);
};

// How to open or create a zoned store.
struct ZonedStoreOptions {
  bool read_only = false;
  // Emulated only: create IMAGE (size zone_count * zone_size_bytes, sparse) and IMAGE.zones.
  // Fails with kBusy if IMAGE.zones already exists (never silently reformats). An existing IMAGE
  // file is reused and resized; its sequential zones start empty (reads as zeros).
  bool create = false;
  std::uint64_t zone_size_bytes = 0;      // create: power of two, multiple of logical_block_bytes
  std::uint64_t zone_count = 0;           // create: > 0
  std::uint64_t conventional_zones = 0;   // create: the first N zones are conventional
  std::uint64_t zone_capacity_bytes = 0;  // create: 0 = zone size (ZNS-like when smaller)
  std::uint32_t logical_block_bytes = 4096;  // create: 512 or 4096 (stored in the sidecar)
  ZoneType sequential_type = ZoneType::kSeqWriteRequired;  // create: or kSeqWritePreferred
  // O_DIRECT (the default). Block devices: every request (sequential zones must not go through the
  // page cache, whose writeback does not keep the issue order), so buffers must be aligned.
  // Emulated images: aligned requests, like a plain image (PosixStoreOptions::direct_io).
  bool direct_io = true;
};

// Chooses the implementation:
//   - a block device -> BlockZonedStore (kUnsupported with a clear message when it is not zoned);
//   - `create` -> a new EmulatedZonedStore at `path` (+ `path`.zones);
//   - a regular file with a `path`.zones sidecar -> EmulatedZonedStore;
//   - a regular file without one -> kNotFound naming the missing sidecar.
// Errors name the path and say what to do.
Result<std::unique_ptr<ZonedStore>> open_zoned_store(const std::string& path,
                                                     const ZonedStoreOptions& options);

// The sidecar path of an emulated zoned image: IMAGE + ".zones".
std::string zone_sidecar_path(const std::string& image_path);

// Emulated and block-device constructors, for callers that know which one they want.
Result<std::unique_ptr<ZonedStore>> open_emulated_zoned_store(const std::string& image_path,
                                                              const ZonedStoreOptions& options);
Result<std::unique_ptr<ZonedStore>> open_block_zoned_store(const std::string& device_path,
                                                           const ZonedStoreOptions& options);

// The zoned model sysfs reports for a block device ("none", "host-aware", "host-managed"), read
// from /sys/dev/block/MAJ:MIN/queue/zoned. kInvalid when `device_path` is not a block device.
Result<std::string> block_device_zoned_model(const std::string& device_path);

}  // namespace cryptmap::volume

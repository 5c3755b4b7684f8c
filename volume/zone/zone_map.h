// ZoneMap — the zone layout and live zone state of a zoned backing store (SMR host-managed or
// host-aware disks, NVMe ZNS SSDs, or an emulated zoned image).
//
// A zoned store is cut into `zone_count()` zones of `zone_size_bytes()` each (a power of two; the
// last zone may be shorter, a "runt" zone, as Linux allows). Every zone has
//   - a type: conventional (random writes, no write pointer), sequential-write-required (the
//     host-managed rule: a write must start exactly at the write pointer) or sequential-write-
//     preferred (host-aware: the drive accepts random writes but sequential ones are fast);
//   - a capacity: the writable prefix of the zone (ZNS zones may be shorter than their stride);
//   - a condition (ZBC/ZAC ZC1..ZC7): empty, implicitly/explicitly open, closed, full, read-only,
//     offline; conventional zones are always kNotWp;
//   - a write pointer `wp` (absolute image byte offset). Conventions, as the Linux block layer
//     reports them (drivers/scsi/sd_zbc.c, drivers/nvme/host/zns.c): conventional zones report
//     wp = start + len; full zones report wp = start + len; otherwise start <= wp <= start +
//     capacity. Data at or past wp reads as zeros.
//
// Geometry (zone size, count, per-zone type and capacity) is fixed at construction. The mutable
// part — (wp, cond) per zone — is one 64-bit atomic word per zone, so any thread may take a
// consistent snapshot of a zone without a lock.
//
// Ownership and thread-safety:
//   - The ZonedStore that created the map owns it and is the ONLY writer (`set_state`), always
//   under
//     that zone's lock in the store, and only after the data below the new wp has been written.
//     Everyone else sees a `const ZoneMap*` (BackingStore::zones()).
//   - All const methods are safe from any number of threads concurrently with `set_state`. A
//     snapshot (`zone(i)`) is consistent for one zone; two zones' snapshots are not taken
//     atomically together. A wp read with `zone(i)` covers data that is already readable from the
//     store.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "base/result.h"
#include "base/units.h"

namespace cryptmap::volume {

enum class ZoneType : std::uint8_t {
  kConventional = 1,       // BLK_ZONE_TYPE_CONVENTIONAL
  kSeqWriteRequired = 2,   // BLK_ZONE_TYPE_SEQWRITE_REQ (host-managed)
  kSeqWritePreferred = 3,  // BLK_ZONE_TYPE_SEQWRITE_PREF (host-aware)
};

enum class ZoneCond : std::uint8_t {
  kNotWp = 0x0,         // conventional zone: no write pointer
  kEmpty = 0x1,         // ZC1
  kImplicitOpen = 0x2,  // ZC2: opened by a write
  kExplicitOpen = 0x3,  // ZC3: opened by OPEN ZONE
  kClosed = 0x4,        // ZC4: written, then closed (explicitly or by power cycle)
  kReadOnly = 0xD,      // ZC6
  kFull = 0xE,          // ZC5: wp reached capacity, or FINISH ZONE
  kOffline = 0xF,       // ZC7: neither readable nor writable
};

std::string_view zone_type_name(ZoneType t) noexcept;
std::string_view zone_cond_name(ZoneCond c) noexcept;

// One zone descriptor: a value (what BLKREPORTZONE returns, in bytes instead of 512 B sectors).
struct ZoneInfo {
  std::uint64_t index = 0;
  ByteOffset start{};                // absolute image byte offset of the zone's first byte
  std::uint64_t len_bytes = 0;       // stride: zone_size_bytes, or less for a runt last zone
  std::uint64_t capacity_bytes = 0;  // writable prefix, <= len_bytes
  ByteOffset wp{};                   // see the conventions in the file comment
  ZoneType type = ZoneType::kConventional;
  ZoneCond cond = ZoneCond::kNotWp;

  bool sequential() const noexcept { return type != ZoneType::kConventional; }
  ByteOffset end() const noexcept { return start + len_bytes; }
  ByteOffset capacity_end() const noexcept { return start + capacity_bytes; }
  // Bytes that may still be written at wp (0 for full/read-only/offline/conventional zones).
  std::uint64_t remaining_bytes() const noexcept;
  // Byte offset up to which reads return stored data; beyond it (up to end()) reads are zeros.
  ByteOffset readable_end() const noexcept;
  bool operator==(const ZoneInfo&) const = default;
};

class ZoneMap {
 public:
  // Builds a map from a full zone report. `zone_size_bytes` must be a power of two (>= 512);
  // `zones[i]` must have index i and start i * zone_size_bytes, len == zone_size_bytes except a
  // shorter last zone, 0 < capacity <= len, a condition valid for its type, and a wp that matches
  // the condition (empty: wp == start; implicit open, closed: start < wp < start + capacity;
  // explicit open: start <= wp < start + capacity; full and conventional: wp == start + len;
  // read-only, offline: any wp in [start, start + len]). Starts and wp are multiples of 512.
  // Errors (kCorrupt/kInvalid) name the offending zone in `object`, so a bad device report or
  // sidecar is reported, never trusted.
  static Result<std::unique_ptr<ZoneMap>> create(std::uint64_t zone_size_bytes,
                                                 std::span<const ZoneInfo> zones);

  ZoneMap(const ZoneMap&) = delete;
  ZoneMap& operator=(const ZoneMap&) = delete;
  ~ZoneMap();

  std::uint64_t zone_size_bytes() const noexcept { return zone_size_; }
  std::uint32_t zone_shift() const noexcept { return zone_shift_; }
  std::uint64_t zone_count() const noexcept { return count_; }
  std::uint64_t size_bytes() const noexcept { return size_; }  // sum of all zone lengths
  std::uint64_t conventional_count() const noexcept { return conventional_count_; }

  // Index of the zone holding `off`; kInvalid when off >= size_bytes().
  Result<std::uint64_t> zone_index(ByteOffset off) const;
  // REQUIRES: off < size_bytes(). Branch-free index for hot paths.
  std::uint64_t zone_index_unchecked(ByteOffset off) const noexcept {
    return off.value >> zone_shift_;
  }
  // True when [off, off + len_bytes) touches more than one zone (len_bytes > 0). Ranges running
  // past the end of the map count as crossing.
  bool crosses_boundary(ByteOffset off, std::uint64_t len_bytes) const noexcept;
  // True when any byte of [off, off + len_bytes) lies in a sequential zone.
  bool touches_sequential(ByteOffset off, std::uint64_t len_bytes) const noexcept;

  // Consistent snapshot of one zone. REQUIRES: index < zone_count().
  ZoneInfo zone(std::uint64_t index) const noexcept;
  // Snapshot of the zone holding `off`; kInvalid past the end.
  Result<ZoneInfo> zone_at(ByteOffset off) const;
  // Snapshots of zones [first, first + out.size()) clipped to the map; returns how many were
  // written. kInvalid when first >= zone_count().
  Result<std::size_t> report(std::uint64_t first, std::span<ZoneInfo> out) const;
  ZoneType type(std::uint64_t index) const noexcept;  // immutable; REQUIRES index < zone_count()

  // Store side only (see the file comment): publishes a new (wp, cond) for a sequential zone.
  // REQUIRES: the caller holds the store's lock for this zone, the zone is sequential, the values
  // satisfy the invariants of `create`, and data below wp is already written.
  void set_state(std::uint64_t index, ByteOffset wp, ZoneCond cond) noexcept;

 private:
  struct Zone;
  ZoneMap(std::uint64_t zone_size, std::uint32_t shift, std::uint64_t count, std::uint64_t size,
          std::unique_ptr<Zone[]> zones, std::uint64_t conventional_count);
  static std::uint64_t pack(std::uint64_t wp_rel, ZoneCond cond) noexcept;

  const std::uint64_t zone_size_;
  const std::uint32_t zone_shift_;
  const std::uint64_t count_;
  const std::uint64_t size_;
  const std::unique_ptr<Zone[]> zones_;
  const std::uint64_t conventional_count_;
};

// Validates one (wp, cond) pair against a zone's geometry; used by `create`, sidecar loading and
// the device report translation. `what` names the source in the error ("zone sidecar",
// "BLKREPORTZONE").
Result<void> validate_zone_state(const ZoneInfo& z, const char* what);

}  // namespace cryptmap::volume

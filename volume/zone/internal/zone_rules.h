// Private to volume/zone: the host-managed drive's rules shared by the emulated and the
// block-device stores, the sidecar codec, and the BLKREPORTZONE translation. Included by
// volume/zone/*.cpp and the zone unit tests only.
#pragma once

#include <linux/blkzoned.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "volume/zone/zone_map.h"

namespace cryptmap::volume::zone_internal {

// ---- write rules --------------------------------------------------------------------------------

// Where a write lands once the geometry has been checked.
struct WriteTarget {
  bool sequential = false;  // true: exactly one sequential zone, `zone`
  std::uint64_t zone = 0;
};

// Geometry checks that need no zone lock: the range lies inside the map, and a range touching a
// sequential zone stays inside that one zone. `name` (the image) goes into the error detail.
Result<WriteTarget> classify_write(const ZoneMap& map, ByteOffset off, std::uint64_t len_bytes,
                                   const std::string& name);

// The drive's check of a write into sequential zone `z` (a snapshot taken under the zone's lock).
Result<void> check_sequential_write(const ZoneInfo& z, ByteOffset off, std::uint64_t len_bytes,
                                    std::uint32_t logical_block_bytes);

// The zone's (wp, cond) after a successful write [off, off + len_bytes) that passed
// check_sequential_write (for sequential-write-required zones off == wp).
struct ZoneState {
  ByteOffset wp;
  ZoneCond cond;
};
ZoneState state_after_write(const ZoneInfo& z, ByteOffset off, std::uint64_t len_bytes) noexcept;

// Reads [off, off + out.size()) through `read_stored(off, span)` for the parts below each zone's
// readable end and fills the rest with zeros. Offline zones are kIo; past the map end is kIo.
template <class ReadStored>
Result<void> zoned_read(const ZoneMap& map, ByteOffset off, std::span<std::byte> out,
                        const std::string& name, ReadStored&& read_stored) {
  if (out.empty()) return ok();
  if (off.value >= map.size_bytes() || out.size() > map.size_bytes() - off.value) {
    return make_error_fmt(Errc::kIo, "read zoned image past its end", off.value, "%s",
                          name.c_str());
  }
  std::size_t done = 0;
  while (done < out.size()) {
    const ByteOffset pos = off + done;
    const ZoneInfo z = map.zone(map.zone_index_unchecked(pos));
    const std::size_t in_zone =
        static_cast<std::size_t>(std::min<std::uint64_t>(out.size() - done, z.end() - pos));
    if (z.cond == ZoneCond::kOffline) {
      return make_error_fmt(Errc::kIo, "read offline zone", z.index, "%s", name.c_str());
    }
    const ByteOffset readable = z.readable_end();
    std::size_t stored = 0;
    if (pos < readable)
      stored = static_cast<std::size_t>(std::min<std::uint64_t>(in_zone, readable - pos));
    if (stored > 0) CRYPTMAP_TRY_VOID(read_stored(pos, out.subspan(done, stored)));
    if (stored < in_zone) std::memset(out.data() + done + stored, 0, in_zone - stored);
    done += in_zone;
  }
  return ok();
}

// Zone management commands (reset/finish/open/close): the zone exists, is sequential, the store is
// writable; then, under the zone's lock, the zone is neither offline (kIo) nor read-only.
Result<void> check_management_target(const ZoneMap& map, std::uint64_t index, bool read_only,
                                     const char* what, const std::string& name);
Result<void> check_management_cond(const ZoneInfo& z, const char* what);

// A discard of [off, off + len_bytes) on a zoned store: the store is writable, the range lies
// inside the map and touches no sequential zone (those are reset instead). `what` names the
// operation in the error ("discard zoned image range"); `name` is the image or device.
Result<void> check_discard(const ZoneMap& map, ByteOffset off, std::uint64_t len_bytes,
                           bool read_only, const char* what, const std::string& name);

// ---- CRC-32C (Castagnoli), the sidecar checksum
// --------------------------------------------------
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

// ---- sidecar codec (format documented in volume/zone/README.md) ---------------------------------
inline constexpr char kSidecarMagic[8] = {'C', 'M', 'A', 'P', 'Z', 'O', 'N', 'E'};
inline constexpr std::uint32_t kSidecarVersion = 1;
inline constexpr std::size_t kSidecarHeaderBytes = 64;
inline constexpr std::size_t kSidecarEntryBytes = 16;
inline constexpr std::size_t kSidecarTrailerBytes = 4;
// A sidecar describing more zones than this is refused (1 GiB of state is not a zone table).
inline constexpr std::uint64_t kSidecarMaxZones = std::uint64_t{1} << 26;

struct SidecarZone {
  std::uint64_t wp_rel = 0;  // write pointer relative to the zone start, bytes
  ZoneType type = ZoneType::kConventional;
  ZoneCond cond = ZoneCond::kNotWp;
  bool operator==(const SidecarZone&) const = default;
};
struct Sidecar {
  std::uint64_t zone_size_bytes = 0;
  std::uint64_t zone_capacity_bytes = 0;
  std::uint32_t logical_block_bytes = 0;
  std::uint64_t generation = 0;  // +1 per write of the sidecar
  std::vector<SidecarZone> zones;
};

std::vector<std::byte> encode_sidecar(const Sidecar& s);
// Parses and validates (magic, version, sizes, checksum, geometry); every failure is kCorrupt with
// a static `what` saying which check failed and `path` in the detail.
Result<Sidecar> decode_sidecar(std::span<const std::byte> bytes, const std::string& path);
// The ZoneInfo list a sidecar describes (validated by ZoneMap::create afterwards).
std::vector<ZoneInfo> sidecar_zone_infos(const Sidecar& s);

// ---- BLKREPORTZONE translation
// -------------------------------------------------------------------

// One kernel zone descriptor (512 B sector units) -> ZoneInfo (bytes), normalised like the map
// expects (conventional and full zones: wp = start + len). `report_flags` is blk_zone_report.flags:
// without BLK_ZONE_REP_CAPACITY the capacity is the zone length. Unknown types or conditions, a
// start that is not index * zone size, or an inconsistent wp are kCorrupt naming the zone.
Result<ZoneInfo> zone_info_from_blk_zone(const struct blk_zone& z, std::uint32_t report_flags,
                                         std::uint64_t expected_index,
                                         std::uint64_t zone_size_bytes);
Result<std::vector<ZoneInfo>> zone_infos_from_blk_zones(std::span<const struct blk_zone> zones,
                                                        std::uint32_t report_flags,
                                                        std::uint64_t first_index,
                                                        std::uint64_t zone_size_bytes);

}  // namespace cryptmap::volume::zone_internal

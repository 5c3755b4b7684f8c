// The host-managed drive's rules, the sidecar codec and the BLKREPORTZONE translation shared by
// EmulatedZonedStore and BlockZonedStore (declared in internal/zone_rules.h).
#include <array>
#include <bit>
#include <limits>

#include "base/bytes.h"
#include "volume/zone/internal/zone_rules.h"

namespace cryptmap::volume::zone_internal {
namespace {

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

}  // namespace

// ---- write rules --------------------------------------------------------------------------------

Result<WriteTarget> classify_write(const ZoneMap& map, ByteOffset off, std::uint64_t len_bytes,
                                   const std::string& name) {
  const std::uint64_t size = map.size_bytes();
  if (off.value > size || len_bytes > size - off.value) {
    return make_error_fmt(Errc::kNoSpace, "write past the end of the zoned image", off.value,
                          "%s: %llu bytes at %llu, image holds %llu", name.c_str(), ull(len_bytes),
                          ull(off.value), ull(size));
  }
  if (len_bytes == 0) return WriteTarget{};
  const std::uint64_t first = map.zone_index_unchecked(off);
  const std::uint64_t last = map.zone_index_unchecked(off + (len_bytes - 1));
  if (first == last) {
    return WriteTarget{map.type(first) != ZoneType::kConventional, first};
  }
  for (std::uint64_t i = first; i <= last; ++i) {
    if (map.type(i) != ZoneType::kConventional) {
      return make_error_fmt(Errc::kZoneOrder, "write crosses a zone boundary", first,
                            "write at %llu len %llu spans zones %llu..%llu (sequential)",
                            ull(off.value), ull(len_bytes), ull(first), ull(last));
    }
  }
  return WriteTarget{};  // conventional zones only: one plain write
}

Result<void> check_sequential_write(const ZoneInfo& z, ByteOffset off, std::uint64_t len_bytes,
                                    std::uint32_t logical_block_bytes) {
  switch (z.cond) {
    case ZoneCond::kOffline:
      return make_error_fmt(Errc::kIo, "write to an offline zone", z.index, "zone %llu is offline",
                            ull(z.index));
    case ZoneCond::kReadOnly:
      return make_error_fmt(Errc::kReadOnly, "write to a read-only zone", z.index,
                            "zone %llu is read-only", ull(z.index));
    case ZoneCond::kFull:
      return make_error_fmt(Errc::kZoneOrder, "write to a full zone", z.index,
                            "zone %llu is full: write at %llu; reset the zone first", ull(z.index),
                            ull(off.value));
    default:
      break;
  }
  if (off.value % logical_block_bytes != 0 || len_bytes % logical_block_bytes != 0) {
    return make_error_fmt(Errc::kZoneOrder, "unaligned write to a sequential zone", z.index,
                          "zone %llu: %llu bytes at %llu, block %u", ull(z.index), ull(len_bytes),
                          ull(off.value), logical_block_bytes);
  }
  if (z.type == ZoneType::kSeqWriteRequired && off != z.wp) {
    return make_error_fmt(Errc::kZoneOrder, "write not at the zone write pointer", z.index,
                          "zone %llu: write at %llu, write pointer at %llu", ull(z.index),
                          ull(off.value), ull(z.wp.value));
  }
  if (off + len_bytes > z.capacity_end()) {
    return make_error_fmt(Errc::kZoneOrder, "write past the zone capacity", z.index,
                          "zone %llu: write ends at %llu, capacity ends at %llu", ull(z.index),
                          ull(off.value + len_bytes), ull(z.capacity_end().value));
  }
  return ok();
}

ZoneState state_after_write(const ZoneInfo& z, ByteOffset off, std::uint64_t len_bytes) noexcept {
  // Sequential-write-preferred zones accept writes anywhere; their wp is the highest byte written.
  const ByteOffset end = off + len_bytes;
  const ByteOffset wp = end > z.wp ? end : z.wp;
  if (wp >= z.capacity_end()) return {z.end(), ZoneCond::kFull};
  if (wp == z.start) return {wp, z.cond};  // empty write
  return {wp,
          z.cond == ZoneCond::kExplicitOpen ? ZoneCond::kExplicitOpen : ZoneCond::kImplicitOpen};
}

Result<void> check_management_target(const ZoneMap& map, std::uint64_t index, bool read_only,
                                     const char* what, const std::string& name) {
  if (read_only) {
    return make_error_fmt(Errc::kReadOnly, what, index, "%s is open read-only", name.c_str());
  }
  if (index >= map.zone_count()) {
    return make_error_fmt(Errc::kInvalid, what, index, "%s has %llu zones", name.c_str(),
                          ull(map.zone_count()));
  }
  if (map.type(index) == ZoneType::kConventional) {
    return make_error_fmt(Errc::kInvalid, what, index,
                          "zone %llu is conventional: it has no write pointer", ull(index));
  }
  return ok();
}

Result<void> check_management_cond(const ZoneInfo& z, const char* what) {
  if (z.cond == ZoneCond::kOffline) {
    return make_error_fmt(Errc::kIo, what, z.index, "zone %llu is offline", ull(z.index));
  }
  if (z.cond == ZoneCond::kReadOnly) {
    return make_error_fmt(Errc::kReadOnly, what, z.index, "zone %llu is read-only", ull(z.index));
  }
  return ok();
}

Result<void> check_discard(const ZoneMap& map, ByteOffset off, std::uint64_t len_bytes,
                           bool read_only, const char* what, const std::string& name) {
  if (read_only)
    return make_error_fmt(Errc::kReadOnly, what, off.value, "%s is open read-only", name.c_str());
  if (off.value >= map.size_bytes() || len_bytes > map.size_bytes() - off.value)
    return make_error_fmt(Errc::kInvalid, what, off.value, "%s: the range passes its end",
                          name.c_str());
  if (map.touches_sequential(off, len_bytes))
    return make_error_fmt(Errc::kUnsupported, what, off.value,
                          "%s: the range touches a sequential zone; reset the zone instead",
                          name.c_str());
  return ok();
}

// ---- CRC-32C ------------------------------------------------------------------------------------

namespace {
constexpr std::array<std::uint32_t, 256> make_crc32c_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrc32cTable = make_crc32c_table();
}  // namespace

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  crc = ~crc;
  for (std::byte b : data) {
    crc = kCrc32cTable[(crc ^ std::to_integer<std::uint32_t>(b)) & 0xff] ^ (crc >> 8);
  }
  return ~crc;
}

// ---- sidecar ------------------------------------------------------------------------------------

std::vector<std::byte> encode_sidecar(const Sidecar& s) {
  std::vector<std::byte> out(kSidecarHeaderBytes + s.zones.size() * kSidecarEntryBytes +
                             kSidecarTrailerBytes);
  std::byte* p = out.data();
  std::memcpy(p, kSidecarMagic, sizeof kSidecarMagic);
  store_be32(p + 8, kSidecarVersion);
  store_be32(p + 12, kSidecarHeaderBytes);
  store_be64(p + 16, s.zone_size_bytes);
  store_be64(p + 24, s.zones.size());
  store_be64(p + 32, s.zone_capacity_bytes);
  store_be32(p + 40, s.logical_block_bytes);
  store_be32(p + 44, kSidecarEntryBytes);
  store_be64(p + 48, s.generation);
  // 56..64 reserved, zero
  std::byte* e = p + kSidecarHeaderBytes;
  for (const SidecarZone& z : s.zones) {
    store_be64(e, z.wp_rel);
    e[8] = std::byte{static_cast<std::uint8_t>(z.type)};
    e[9] = std::byte{static_cast<std::uint8_t>(z.cond)};
    e += kSidecarEntryBytes;
  }
  store_be32(e, crc32c({p, static_cast<std::size_t>(e - p)}));
  return out;
}

Result<Sidecar> decode_sidecar(std::span<const std::byte> bytes, const std::string& path) {
  auto corrupt = [&](const char* what, std::uint64_t object = kNoObject) {
    return make_error_fmt(Errc::kCorrupt, what, object, "%s", path.c_str());
  };
  if (bytes.size() < kSidecarHeaderBytes + kSidecarTrailerBytes) {
    return corrupt("zone sidecar truncated (shorter than its header)", bytes.size());
  }
  const std::byte* p = bytes.data();
  if (std::memcmp(p, kSidecarMagic, sizeof kSidecarMagic) != 0) {
    return corrupt("zone sidecar: bad magic (not a cryptmap zone state file)");
  }
  if (load_be32(p + 8) != kSidecarVersion) {
    return corrupt("zone sidecar: unsupported version", load_be32(p + 8));
  }
  if (load_be32(p + 12) != kSidecarHeaderBytes || load_be32(p + 44) != kSidecarEntryBytes) {
    return corrupt("zone sidecar: unexpected header or entry size");
  }
  const std::uint64_t count = load_be64(p + 24);
  if (count == 0 || count > kSidecarMaxZones) {
    return corrupt("zone sidecar: zone count is zero or implausibly large", count);
  }
  const std::uint64_t expect =
      kSidecarHeaderBytes + count * kSidecarEntryBytes + kSidecarTrailerBytes;
  if (bytes.size() != expect) {
    return corrupt(bytes.size() < expect
                       ? "zone sidecar truncated (fewer zone entries than its count)"
                       : "zone sidecar has trailing bytes",
                   bytes.size());
  }
  const std::size_t body = bytes.size() - kSidecarTrailerBytes;
  if (crc32c(bytes.first(body)) != load_be32(p + body)) {
    return corrupt("zone sidecar: checksum mismatch");
  }
  Sidecar s;
  s.zone_size_bytes = load_be64(p + 16);
  s.zone_capacity_bytes = load_be64(p + 32);
  s.logical_block_bytes = load_be32(p + 40);
  s.generation = load_be64(p + 48);
  if (load_be64(p + 56) != 0) return corrupt("zone sidecar: reserved header bytes not zero");
  if (s.logical_block_bytes < kSector512 || s.logical_block_bytes > 65536 ||
      !std::has_single_bit(s.logical_block_bytes)) {
    return corrupt("zone sidecar: logical block size invalid", s.logical_block_bytes);
  }
  if (!std::has_single_bit(s.zone_size_bytes) || s.zone_size_bytes < s.logical_block_bytes ||
      s.zone_size_bytes > (std::uint64_t{1} << 55) ||
      count > (std::numeric_limits<std::uint64_t>::max() / s.zone_size_bytes)) {
    return corrupt("zone sidecar: zone size invalid", s.zone_size_bytes);
  }
  if (s.zone_capacity_bytes == 0 || s.zone_capacity_bytes > s.zone_size_bytes ||
      s.zone_capacity_bytes % s.logical_block_bytes != 0) {
    return corrupt("zone sidecar: zone capacity invalid", s.zone_capacity_bytes);
  }
  s.zones.resize(count);
  const std::byte* e = p + kSidecarHeaderBytes;
  for (std::uint64_t i = 0; i < count; ++i, e += kSidecarEntryBytes) {
    SidecarZone& z = s.zones[i];
    z.wp_rel = load_be64(e);
    const auto type = std::to_integer<std::uint8_t>(e[8]);
    const auto cond = std::to_integer<std::uint8_t>(e[9]);
    for (int k = 10; k < 16; ++k) {
      if (e[k] != std::byte{0}) return corrupt("zone sidecar: reserved entry bytes not zero", i);
    }
    if (type < 1 || type > 3) return corrupt("zone sidecar: unknown zone type", i);
    if (!(cond <= 4 || cond == 0xD || cond == 0xE || cond == 0xF)) {
      return corrupt("zone sidecar: unknown zone condition", i);
    }
    z.type = static_cast<ZoneType>(type);
    z.cond = static_cast<ZoneCond>(cond);
    if (z.wp_rel > s.zone_size_bytes) return corrupt("zone sidecar: write pointer past zone", i);
    if (z.type != ZoneType::kConventional && z.wp_rel % s.logical_block_bytes != 0) {
      return corrupt("zone sidecar: write pointer not block aligned", i);
    }
  }
  return s;
}

std::vector<ZoneInfo> sidecar_zone_infos(const Sidecar& s) {
  std::vector<ZoneInfo> out(s.zones.size());
  for (std::size_t i = 0; i < s.zones.size(); ++i) {
    ZoneInfo& z = out[i];
    z.index = i;
    z.start = ByteOffset{i * s.zone_size_bytes};
    z.len_bytes = s.zone_size_bytes;
    z.type = s.zones[i].type;
    z.capacity_bytes =
        z.type == ZoneType::kConventional ? s.zone_size_bytes : s.zone_capacity_bytes;
    z.cond = s.zones[i].cond;
    z.wp = z.start + s.zones[i].wp_rel;
  }
  return out;
}

// ---- BLKREPORTZONE ------------------------------------------------------------------------------

Result<ZoneInfo> zone_info_from_blk_zone(const struct blk_zone& z, std::uint32_t report_flags,
                                         std::uint64_t expected_index,
                                         std::uint64_t zone_size_bytes) {
  auto bad = [&](const char* what) {
    return make_error_fmt(Errc::kCorrupt, what, expected_index,
                          "zone %llu: start %llu len %llu wp %llu type %u cond %u (sectors)",
                          ull(expected_index), ull(z.start), ull(z.len), ull(z.wp),
                          unsigned{z.type}, unsigned{z.cond});
  };
  constexpr std::uint64_t kMaxSectors =
      std::numeric_limits<std::uint64_t>::max() >> kSectorShift512;
  if (z.start > kMaxSectors || z.len > kMaxSectors || z.wp > kMaxSectors ||
      z.capacity > kMaxSectors) {
    return bad("BLKREPORTZONE: sector number overflows a byte offset");
  }
  ZoneInfo info;
  info.index = expected_index;
  info.start = ByteOffset{z.start << kSectorShift512};
  info.len_bytes = z.len << kSectorShift512;
  info.capacity_bytes =
      (report_flags & BLK_ZONE_REP_CAPACITY) ? z.capacity << kSectorShift512 : info.len_bytes;
  info.wp = ByteOffset{z.wp << kSectorShift512};
  if (zone_size_bytes == 0 || expected_index > kMaxSectors / (zone_size_bytes >> kSectorShift512) ||
      info.start.value != expected_index * zone_size_bytes) {
    return bad("BLKREPORTZONE: zone start is not index * zone size");
  }
  switch (z.type) {
    case BLK_ZONE_TYPE_CONVENTIONAL:
      info.type = ZoneType::kConventional;
      break;
    case BLK_ZONE_TYPE_SEQWRITE_REQ:
      info.type = ZoneType::kSeqWriteRequired;
      break;
    case BLK_ZONE_TYPE_SEQWRITE_PREF:
      info.type = ZoneType::kSeqWritePreferred;
      break;
    default:
      return bad("BLKREPORTZONE: unknown zone type");
  }
  switch (z.cond) {
    case BLK_ZONE_COND_NOT_WP:
      info.cond = ZoneCond::kNotWp;
      break;
    case BLK_ZONE_COND_EMPTY:
      info.cond = ZoneCond::kEmpty;
      break;
    case BLK_ZONE_COND_IMP_OPEN:
      info.cond = ZoneCond::kImplicitOpen;
      break;
    case BLK_ZONE_COND_EXP_OPEN:
      info.cond = ZoneCond::kExplicitOpen;
      break;
    case BLK_ZONE_COND_CLOSED:
      info.cond = ZoneCond::kClosed;
      break;
    case BLK_ZONE_COND_READONLY:
      info.cond = ZoneCond::kReadOnly;
      break;
    case BLK_ZONE_COND_FULL:
      info.cond = ZoneCond::kFull;
      break;
    case BLK_ZONE_COND_OFFLINE:
      info.cond = ZoneCond::kOffline;
      break;
    default:
      return bad("BLKREPORTZONE: unknown zone condition");
  }
  if (info.type == ZoneType::kConventional && info.cond != ZoneCond::kNotWp) {
    return bad("BLKREPORTZONE: conventional zone with a write-pointer condition");
  }
  // The kernel's own normalisation (sd_zbc.c, zns.c): no meaningful wp for these two.
  if (info.cond == ZoneCond::kNotWp || info.cond == ZoneCond::kFull) info.wp = info.end();
  if (auto v = validate_zone_state(info, "BLKREPORTZONE: inconsistent zone"); !v) return v.error();
  return info;
}

Result<std::vector<ZoneInfo>> zone_infos_from_blk_zones(std::span<const struct blk_zone> zones,
                                                        std::uint32_t report_flags,
                                                        std::uint64_t first_index,
                                                        std::uint64_t zone_size_bytes) {
  std::vector<ZoneInfo> out;
  out.reserve(zones.size());
  for (std::size_t i = 0; i < zones.size(); ++i) {
    CRYPTMAP_TRY(info,
                 zone_info_from_blk_zone(zones[i], report_flags, first_index + i, zone_size_bytes));
    out.push_back(info);
  }
  return out;
}

}  // namespace cryptmap::volume::zone_internal

#include "volume/zone/zone_map.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <limits>
#include <new>

#include "base/check.h"

namespace cryptmap::volume {

std::string_view zone_type_name(ZoneType t) noexcept {
  switch (t) {
    case ZoneType::kConventional:
      return "conventional";
    case ZoneType::kSeqWriteRequired:
      return "sequential-write-required";
    case ZoneType::kSeqWritePreferred:
      return "sequential-write-preferred";
  }
  return "unknown";
}

std::string_view zone_cond_name(ZoneCond c) noexcept {
  switch (c) {
    case ZoneCond::kNotWp:
      return "not-write-pointer";
    case ZoneCond::kEmpty:
      return "empty";
    case ZoneCond::kImplicitOpen:
      return "implicit-open";
    case ZoneCond::kExplicitOpen:
      return "explicit-open";
    case ZoneCond::kClosed:
      return "closed";
    case ZoneCond::kReadOnly:
      return "read-only";
    case ZoneCond::kFull:
      return "full";
    case ZoneCond::kOffline:
      return "offline";
  }
  return "unknown";
}

std::uint64_t ZoneInfo::remaining_bytes() const noexcept {
  switch (cond) {
    case ZoneCond::kEmpty:
    case ZoneCond::kImplicitOpen:
    case ZoneCond::kExplicitOpen:
    case ZoneCond::kClosed:
      return capacity_end() - wp;
    default:
      return 0;
  }
}

ByteOffset ZoneInfo::readable_end() const noexcept {
  switch (cond) {
    case ZoneCond::kNotWp:
    case ZoneCond::kReadOnly:
    case ZoneCond::kFull:
      return capacity_end();  // past capacity (ZNS) there is nothing stored: zeros
    case ZoneCond::kOffline:
      return start;
    default:
      return wp;
  }
}

Result<void> validate_zone_state(const ZoneInfo& z, const char* what) {
  auto bad = [&](const char* why) {
    return make_error_fmt(Errc::kCorrupt, what, z.index, "zone %llu (%s, %s, wp +%llu): %s",
                          static_cast<unsigned long long>(z.index), zone_type_name(z.type).data(),
                          zone_cond_name(z.cond).data(),
                          static_cast<unsigned long long>(z.wp.value - z.start.value), why);
  };
  if (z.wp < z.start || z.wp > z.end()) return bad("write pointer outside the zone");
  if (z.wp.value % kSector512 != 0) return bad("write pointer not a multiple of 512 bytes");
  const bool seq = z.type == ZoneType::kSeqWriteRequired || z.type == ZoneType::kSeqWritePreferred;
  if (z.type != ZoneType::kConventional && !seq) return bad("unknown zone type");
  if (!seq) {
    if (z.cond != ZoneCond::kNotWp) return bad("conventional zone with a zone condition");
    if (z.wp != z.end()) return bad("conventional zone wp must be start + len");
    return ok();
  }
  switch (z.cond) {
    case ZoneCond::kEmpty:
      if (z.wp != z.start) return bad("empty zone with wp past its start");
      return ok();
    case ZoneCond::kImplicitOpen:
    case ZoneCond::kClosed:
      if (z.wp == z.start) return bad("open/closed zone with wp at its start");
      [[fallthrough]];
    case ZoneCond::kExplicitOpen:
      if (z.wp >= z.capacity_end()) return bad("open/closed zone with wp at or past capacity");
      return ok();
    case ZoneCond::kFull:
      if (z.wp != z.end()) return bad("full zone wp must be start + len");
      return ok();
    case ZoneCond::kReadOnly:
    case ZoneCond::kOffline:
      return ok();
    case ZoneCond::kNotWp:
      return bad("sequential zone without a write pointer");
  }
  return bad("unknown zone condition");
}

// Per-zone storage: immutable geometry + one atomic word (wp relative to start << 8 | cond).
struct ZoneMap::Zone {
  std::uint64_t len = 0;
  std::uint64_t capacity = 0;
  ZoneType type = ZoneType::kConventional;
  std::atomic<std::uint64_t> state{0};
};

std::uint64_t ZoneMap::pack(std::uint64_t wp_rel, ZoneCond cond) noexcept {
  return (wp_rel << 8) | static_cast<std::uint8_t>(cond);
}

ZoneMap::ZoneMap(std::uint64_t zone_size, std::uint32_t shift, std::uint64_t count,
                 std::uint64_t size, std::unique_ptr<Zone[]> zones,
                 std::uint64_t conventional_count)
    : zone_size_(zone_size),
      zone_shift_(shift),
      count_(count),
      size_(size),
      zones_(std::move(zones)),
      conventional_count_(conventional_count) {}

ZoneMap::~ZoneMap() = default;

Result<std::unique_ptr<ZoneMap>> ZoneMap::create(std::uint64_t zone_size_bytes,
                                                 std::span<const ZoneInfo> zones) {
  if (zone_size_bytes < kSector512 || !std::has_single_bit(zone_size_bytes) ||
      zone_size_bytes > (std::uint64_t{1} << 55)) {
    return make_error_fmt(Errc::kInvalid, "zone map: zone size", zone_size_bytes,
                          "zone size %llu bytes is not a power of two between 512 B and 2^55",
                          static_cast<unsigned long long>(zone_size_bytes));
  }
  if (zones.empty()) return make_error(Errc::kInvalid, "zone map: no zones");
  const auto shift = static_cast<std::uint32_t>(std::countr_zero(zone_size_bytes));
  if (zones.size() > (std::numeric_limits<std::uint64_t>::max() >> shift)) {
    return make_error(Errc::kInvalid, "zone map: zone count overflows 64-bit offsets",
                      zones.size());
  }
  std::unique_ptr<Zone[]> out;
  try {
    out = std::make_unique<Zone[]>(zones.size());
  } catch (const std::bad_alloc&) {
    return make_error(Errc::kNoSpace, "zone map: out of memory for zones", zones.size());
  }
  std::uint64_t size = 0;
  std::uint64_t conventional = 0;
  for (std::size_t i = 0; i < zones.size(); ++i) {
    const ZoneInfo& z = zones[i];
    const bool last = i + 1 == zones.size();
    auto bad = [&](const char* why) {
      return make_error_fmt(Errc::kCorrupt, "zone map: zone descriptor", i, "zone %zu: %s", i, why);
    };
    if (z.index != i) return bad("index out of order");
    if (z.start.value != (std::uint64_t{i} << shift)) return bad("start is not index * zone size");
    if (z.len_bytes == 0 || z.len_bytes > zone_size_bytes ||
        (!last && z.len_bytes != zone_size_bytes)) {
      return bad("length differs from the zone size (only the last zone may be shorter)");
    }
    if (z.len_bytes % kSector512 != 0) return bad("length not a multiple of 512 bytes");
    if (z.capacity_bytes == 0 || z.capacity_bytes > z.len_bytes ||
        z.capacity_bytes % kSector512 != 0) {
      return bad("capacity is zero, larger than the zone, or not a multiple of 512 bytes");
    }
    CRYPTMAP_TRY_VOID(validate_zone_state(z, "zone map: zone state"));
    out[i].len = z.len_bytes;
    out[i].capacity = z.capacity_bytes;
    out[i].type = z.type;
    out[i].state.store(pack(z.wp - z.start, z.cond), std::memory_order_relaxed);
    if (z.type == ZoneType::kConventional) ++conventional;
    size += z.len_bytes;
  }
  return std::unique_ptr<ZoneMap>(
      new ZoneMap(zone_size_bytes, shift, zones.size(), size, std::move(out), conventional));
}

Result<std::uint64_t> ZoneMap::zone_index(ByteOffset off) const {
  if (off.value >= size_) {
    return make_error_fmt(Errc::kInvalid, "zone map: offset past the last zone", off.value,
                          "offset %llu >= zoned size %llu",
                          static_cast<unsigned long long>(off.value),
                          static_cast<unsigned long long>(size_));
  }
  return off.value >> zone_shift_;
}

bool ZoneMap::crosses_boundary(ByteOffset off, std::uint64_t len_bytes) const noexcept {
  if (len_bytes == 0) return false;
  if (off.value >= size_ || len_bytes > size_ - off.value) return true;
  return (off.value >> zone_shift_) != ((off.value + len_bytes - 1) >> zone_shift_);
}

bool ZoneMap::touches_sequential(ByteOffset off, std::uint64_t len_bytes) const noexcept {
  if (len_bytes == 0 || off.value >= size_) return false;
  const std::uint64_t last_byte = off.value + std::min(len_bytes, size_ - off.value) - 1;
  for (std::uint64_t i = off.value >> zone_shift_; i <= (last_byte >> zone_shift_); ++i) {
    if (zones_[i].type != ZoneType::kConventional) return true;
  }
  return false;
}

ZoneInfo ZoneMap::zone(std::uint64_t index) const noexcept {
  CRYPTMAP_CHECK(index < count_);
  const Zone& z = zones_[index];
  const std::uint64_t st = z.state.load(std::memory_order_acquire);
  ZoneInfo info;
  info.index = index;
  info.start = ByteOffset{index << zone_shift_};
  info.len_bytes = z.len;
  info.capacity_bytes = z.capacity;
  info.wp = info.start + (st >> 8);
  info.type = z.type;
  info.cond = static_cast<ZoneCond>(st & 0xff);
  return info;
}

Result<ZoneInfo> ZoneMap::zone_at(ByteOffset off) const {
  CRYPTMAP_TRY(i, zone_index(off));
  return zone(i);
}

Result<std::size_t> ZoneMap::report(std::uint64_t first, std::span<ZoneInfo> out) const {
  if (first >= count_) {
    return make_error_fmt(Errc::kInvalid, "zone map: report past the last zone", first,
                          "first zone %llu >= zone count %llu",
                          static_cast<unsigned long long>(first),
                          static_cast<unsigned long long>(count_));
  }
  const std::size_t n =
      static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), count_ - first));
  for (std::size_t i = 0; i < n; ++i) out[i] = zone(first + i);
  return n;
}

ZoneType ZoneMap::type(std::uint64_t index) const noexcept {
  CRYPTMAP_CHECK(index < count_);
  return zones_[index].type;
}

void ZoneMap::set_state(std::uint64_t index, ByteOffset wp, ZoneCond cond) noexcept {
  CRYPTMAP_CHECK(index < count_);
  Zone& z = zones_[index];
  const ByteOffset start{index << zone_shift_};
  CRYPTMAP_CHECK(z.type != ZoneType::kConventional);
  CRYPTMAP_CHECK(wp >= start && wp - start <= z.len);
  z.state.store(pack(wp - start, cond), std::memory_order_release);
}

}  // namespace cryptmap::volume

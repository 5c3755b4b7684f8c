// ZonedWritePath — see zoned_path.h.
#include "volume/engine/zoned_path.h"

#include <algorithm>

namespace cryptmap::volume {

ZonedWritePath::ZonedWritePath(ZonedStore& store, std::uint32_t sector_size,
                               std::unique_ptr<ZoneAdmission> admission)
    : store_(store), ss_(sector_size), admission_(std::move(admission)) {}

ZonedWritePath::~ZonedWritePath() { shutdown(); }

Result<std::unique_ptr<ZonedWritePath>> ZonedWritePath::create(
    ZonedStore& store, std::uint32_t sector_size, std::uint32_t max_inflight_per_zone) {
  const ZoneMap& map = store.zone_map();
  if (sector_size == 0 || map.zone_size_bytes() % sector_size != 0) {
    return make_error_fmt(Errc::kInvalid, "open zoned volume: sector size", sector_size,
                          "does not divide the %llu-byte zones of %s",
                          static_cast<unsigned long long>(map.zone_size_bytes()),
                          store.name().c_str());
  }
  ZoneAdmissionOptions o;
  o.max_inflight_per_zone = std::max<std::uint32_t>(1, max_inflight_per_zone);
  o.alignment_bytes = store.logical_block_bytes();
  CRYPTMAP_TRY(adm, ZoneAdmission::create(map, o));
  return std::unique_ptr<ZonedWritePath>(new ZonedWritePath(store, sector_size, std::move(adm)));
}

Result<ZoneTicket> ZonedWritePath::admit(std::uint64_t off, std::uint64_t len,
                                         std::chrono::milliseconds wait_ahead) {
  if (off % ss_ != 0 || len % ss_ != 0) {
    return make_error_fmt(Errc::kZoneOrder, "write into a sequential zone",
                          store_.zone_map().zone_index_unchecked(ByteOffset{off}),
                          "unaligned: %llu bytes at %llu are not whole %u-byte sectors",
                          static_cast<unsigned long long>(len),
                          static_cast<unsigned long long>(off), ss_);
  }
  return admission_->admit(ByteOffset{off}, len, wait_ahead);
}

Result<void> ZonedWritePath::discard(std::uint64_t off, std::uint64_t len,
                                     bool allow_conventional) {
  const ZoneMap& map = store_.zone_map();
  const std::uint64_t end = off + len;
  if (len == 0) return ok();
  if (end > map.size_bytes() || end < off) {
    return make_error_fmt(Errc::kInvalid, "discard", off, "range ends past the %llu-byte image",
                          static_cast<unsigned long long>(map.size_bytes()));
  }
  // Check every piece first, so a refused discard changes nothing.
  const std::uint64_t first = map.zone_index_unchecked(ByteOffset{off});
  const std::uint64_t last = map.zone_index_unchecked(ByteOffset{end - 1});
  for (std::uint64_t i = first; i <= last; ++i) {
    const ZoneInfo z = map.zone(i);
    const std::uint64_t lo = std::max(off, z.start.value);
    const std::uint64_t hi = std::min(end, z.end().value);
    if (!z.sequential()) {
      if (!allow_conventional) {
        return make_error_fmt(Errc::kUnsupported, "discard", i,
                              "zone %llu of %s is conventional and discards are not allowed "
                              "(open with --allow-discards)",
                              static_cast<unsigned long long>(i), store_.name().c_str());
      }
      continue;
    }
    if (lo != z.start.value || hi != z.end().value) {
      return make_error_fmt(Errc::kInvalid, "discard on a sequential zone", i,
                            "zone %llu is [%llu, %llu): reset whole zones only",
                            static_cast<unsigned long long>(i),
                            static_cast<unsigned long long>(z.start.value),
                            static_cast<unsigned long long>(z.end().value));
    }
    const ZoneAdmissionStatus st = admission_->status(i);
    if (st.completed != st.next_seq) {
      return make_error_fmt(Errc::kBusy, "reset zone", i, "zone %llu has writes in flight",
                            static_cast<unsigned long long>(i));
    }
  }
  for (std::uint64_t i = first; i <= last; ++i) {
    const ZoneInfo z = map.zone(i);
    if (!z.sequential()) {
      const std::uint64_t lo = std::max(off, z.start.value);
      const std::uint64_t hi = std::min(end, z.end().value);
      CRYPTMAP_TRY_VOID(store_.discard(ByteOffset{lo}, hi - lo));
      continue;
    }
    if (z.cond != ZoneCond::kEmpty) CRYPTMAP_TRY_VOID(store_.reset_zone(i));
    CRYPTMAP_TRY_VOID(admission_->resync_zone(map.zone(i)));
  }
  return ok();
}

void ZonedWritePath::shutdown() {
  admission_->cancel();
  admission_->wait_drained();
}

}  // namespace cryptmap::volume

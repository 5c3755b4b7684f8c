// EmulatedZonedStore — a host-managed zoned drive emulated on a regular image file plus a zone
// state sidecar (IMAGE.zones). See zoned_store.h for the rules and README.md for the format.
//
// Structure: a decorator over the PosixBackingStore of the image file. That store does every
// byte of I/O (O_DIRECT for aligned requests, like a plain image) and owns the fd with the image
// lock; this class adds the drive's rules, the live write pointers and the sidecar.
//
// Durability (the decision, see README.md "Crash consistency"):
//   The live wp (in ZoneMap) advances as soon as a write's write_at has returned. The sidecar is
//   rewritten only by sync(), reset_zone(), finish_zone() and the destructor, always as
//   "snapshot live states -> fdatasync(image) -> write sidecar atomically". Because a wp is
//   published only after its data's write_at returned, every byte below a snapshotted wp was handed
//   to the kernel (page cache, or the device with O_DIRECT) before the fdatasync started, and
//   fdatasync covers the whole inode whichever of the image store's fds wrote it, so the persisted
//   wp never runs ahead of durable data. Writes after the last sync may be lost in a crash: the
//   zone comes back with the older wp and the bytes past it read as zeros, exactly like a drive
//   that lost its volatile write cache. reset_zone persists "empty" BEFORE punching the data (a
//   crash in between leaves old bytes past wp, which read as zeros); finish_zone zeroes [wp, end)
//   and makes that durable BEFORE it persists "full" (a crash in between leaves the old wp over
//   zeros).
//
// Locking: one mutex per zone stripe (kStripes, zone % kStripes) serialises check+write+publish
// for a zone; `meta_mu_` serialises sidecar writers. Lock order: stripe -> meta_mu_. Reads take no
// lock (atomic zone snapshot, then the image store's read_at).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <limits>

#include "base/mutex.h"
#include "base/posix_io.h"
#include "base/unique_fd.h"
#include "volume/store/posix_backing_store.h"
#include "volume/zone/internal/zone_io.h"
#include "volume/zone/internal/zone_rules.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {
namespace {

using zone_internal::Sidecar;
using zone_internal::SidecarZone;

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

constexpr std::size_t kStripes = 64;

class EmulatedZonedStore final : public ZonedStore {
 public:
  // `image` does the I/O and holds the image lock; its name is the image path.
  EmulatedZonedStore(std::unique_ptr<PosixBackingStore> image, bool read_only,
                     std::unique_ptr<ZoneMap> map, std::uint32_t block, std::uint64_t capacity,
                     Sidecar persisted)
      : image_(std::move(image)),
        path_(image_->name()),
        sidecar_path_(zone_sidecar_path(path_)),
        read_only_(read_only),
        map_(std::move(map)),
        block_(block),
        capacity_(capacity),
        persisted_(std::move(persisted)) {}

  ~EmulatedZonedStore() override {
    if (read_only_) return;
    MutexLock meta(meta_mu_);
    (void)persist_locked();  // best effort; on failure the last persisted state stays consistent
  }

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return zone_internal::zoned_read(
        *map_, off, out, path_,
        [&](ByteOffset pos, std::span<std::byte> part) { return image_->read_at(pos, part); });
  }

  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "write zoned image", off.value, "%s is open read-only",
                            path_.c_str());
    }
    CRYPTMAP_TRY(target, zone_internal::classify_write(*map_, off, in.size(), path_));
    if (in.empty()) return ok();
    if (!target.sequential) return image_->write_at(off, in);
    // The drive's contract: check and apply under the zone's lock, so concurrent writers see a
    // linear history of the write pointer.
    MutexLock lock(stripe(target.zone));
    const ZoneInfo z = map_->zone(target.zone);
    CRYPTMAP_TRY_VOID(zone_internal::check_sequential_write(z, off, in.size(), block_));
    CRYPTMAP_TRY_VOID(image_->write_at(off, in));
    const auto st = zone_internal::state_after_write(z, off, in.size());
    map_->set_state(target.zone, st.wp, st.cond);
    return ok();
  }

  Result<void> sync() override {
    if (read_only_) return ok();
    MutexLock meta(meta_mu_);
    return persist_locked();
  }

  Result<void> discard(ByteOffset off, std::uint64_t len_bytes) override {
    if (len_bytes == 0 && !read_only_) return ok();
    CRYPTMAP_TRY_VOID(zone_internal::check_discard(*map_, off, len_bytes, read_only_,
                                                   "discard zoned image range", path_));
    CRYPTMAP_TRY(zeroed, image_->zero_range(off, len_bytes, /*must=*/false));
    if (!zeroed) {
      return make_error_fmt(Errc::kUnsupported, "discard zoned image range", off.value,
                            "file system of %s cannot punch holes", path_.c_str());
    }
    return ok();
  }

  std::uint64_t size_bytes() const noexcept override { return map_->size_bytes(); }
  bool read_only() const noexcept override { return read_only_; }
  const std::string& name() const noexcept override { return path_; }
  const ZoneMap* zones() const noexcept override { return map_.get(); }
  std::uint32_t logical_block_bytes() const noexcept override { return block_; }

  Result<std::vector<ZoneInfo>> report_zones(std::uint64_t first, std::uint64_t count) override {
    if (first >= map_->zone_count()) {
      return make_error_fmt(Errc::kInvalid, "report zones past the last zone", first,
                            "%s has %llu zones", path_.c_str(), ull(map_->zone_count()));
    }
    std::vector<ZoneInfo> out(
        static_cast<std::size_t>(std::min(count, map_->zone_count() - first)));
    CRYPTMAP_TRY(n, map_->report(first, out));
    out.resize(n);
    return out;
  }

  Result<void> reset_zone(std::uint64_t index) override {
    CRYPTMAP_TRY_VOID(management_target(index, "reset zone"));
    MutexLock lock(stripe(index));
    const ZoneInfo z = map_->zone(index);
    CRYPTMAP_TRY_VOID(management_allowed(z, "reset zone"));
    if (z.cond == ZoneCond::kEmpty) return ok();
    // 1. Persist "empty" first: a crash after this leaves old bytes past wp = start (zeros to
    //    readers), never a wp over punched data.
    map_->set_state(index, z.start, ZoneCond::kEmpty);
    {
      MutexLock meta(meta_mu_);
      if (auto r = persist_locked(); !r) {
        map_->set_state(index, z.wp, z.cond);
        return r;
      }
    }
    // 2. Give the space back; not needed for correctness (reads past wp are zeros, finish zeroes
    //    what it exposes), so an unsupported punch is not an error.
    CRYPTMAP_TRY_VOID(image_->zero_range(z.start, z.len_bytes, /*must=*/false));
    return ok();
  }

  Result<void> finish_zone(std::uint64_t index) override {
    CRYPTMAP_TRY_VOID(management_target(index, "finish zone"));
    MutexLock lock(stripe(index));
    const ZoneInfo z = map_->zone(index);
    CRYPTMAP_TRY_VOID(management_allowed(z, "finish zone"));
    if (z.cond == ZoneCond::kFull) return ok();
    // 1. Zero what finishing exposes: bytes past wp may hold data of writes a crash dropped.
    CRYPTMAP_TRY_VOID(image_->zero_range(z.wp, z.end() - z.wp, /*must=*/true));
    // 2. Publish and persist "full". A punched hole is an extent-map change, so this persist uses
    //    a full fsync (fdatasync need not commit it) before the sidecar says "full".
    map_->set_state(index, z.end(), ZoneCond::kFull);
    MutexLock meta(meta_mu_);
    if (auto r = persist_locked(/*full_fsync=*/true); !r) {
      map_->set_state(index, z.wp, z.cond);
      return r;
    }
    return ok();
  }

  Result<void> open_zone(std::uint64_t index) override {
    CRYPTMAP_TRY_VOID(management_target(index, "open zone"));
    MutexLock lock(stripe(index));
    const ZoneInfo z = map_->zone(index);
    CRYPTMAP_TRY_VOID(management_allowed(z, "open zone"));
    if (z.cond == ZoneCond::kFull) return ok();  // ZBC: no effect on a full zone
    map_->set_state(index, z.wp, ZoneCond::kExplicitOpen);
    return ok();
  }

  Result<void> close_zone(std::uint64_t index) override {
    CRYPTMAP_TRY_VOID(management_target(index, "close zone"));
    MutexLock lock(stripe(index));
    const ZoneInfo z = map_->zone(index);
    CRYPTMAP_TRY_VOID(management_allowed(z, "close zone"));
    if (z.cond != ZoneCond::kImplicitOpen && z.cond != ZoneCond::kExplicitOpen) return ok();
    map_->set_state(index, z.wp, z.wp == z.start ? ZoneCond::kEmpty : ZoneCond::kClosed);
    return ok();
  }

 private:
  Mutex& stripe(std::uint64_t zone) const { return stripes_[zone % kStripes]; }

  Result<void> management_target(std::uint64_t index, const char* what) const {
    return zone_internal::check_management_target(*map_, index, read_only_, what, path_);
  }
  static Result<void> management_allowed(const ZoneInfo& z, const char* what) {
    return zone_internal::check_management_cond(z, what);
  }

  // Snapshot -> fdatasync(image) (fsync when full_fsync) -> sidecar. Caller must hold meta_mu_.
  Result<void> persist_locked(bool full_fsync = false) REQUIRES(meta_mu_) {
    Sidecar snap;
    snap.zone_size_bytes = map_->zone_size_bytes();
    snap.zone_capacity_bytes = capacity_;
    snap.logical_block_bytes = block_;
    snap.zones.resize(static_cast<std::size_t>(map_->zone_count()));
    for (std::size_t i = 0; i < snap.zones.size(); ++i) {
      const ZoneInfo z = map_->zone(i);  // acquire: data below wp was pwritten before this load
      snap.zones[i] = SidecarZone{z.wp - z.start, z.type, z.cond};
    }
    CRYPTMAP_TRY_VOID(full_fsync ? image_->sync_all() : image_->sync());
    if (snap.zones == persisted_.zones) return ok();
    snap.generation = persisted_.generation + 1;
    const std::vector<std::byte> bytes = zone_internal::encode_sidecar(snap);
    CRYPTMAP_TRY_VOID(zone_internal::write_file_atomic(sidecar_path_, bytes));
    persisted_ = std::move(snap);
    return ok();
  }

  // Does the I/O; holds flock(LOCK_EX) (LOCK_SH when read-only) for the store's lifetime.
  const std::unique_ptr<PosixBackingStore> image_;
  const std::string path_;
  const std::string sidecar_path_;
  const bool read_only_;
  const std::unique_ptr<ZoneMap> map_;
  const std::uint32_t block_;
  const std::uint64_t capacity_;
  // Stripe -> meta_mu_ (the order is not annotated: ACQUIRED_AFTER cannot name an array element).
  mutable std::array<Mutex, kStripes> stripes_;
  Mutex meta_mu_;
  Sidecar persisted_ GUARDED_BY(meta_mu_);  // what the sidecar on disk says
};

// The image's store (O_DIRECT when asked), locked: one process per image, since two writers would
// each keep their own write pointers.
Result<std::unique_ptr<PosixBackingStore>> open_and_lock_image(const std::string& path,
                                                               bool read_only, bool create,
                                                               bool direct_io) {
  if (create) {
    CRYPTMAP_TRY(
        raw, open_retrying(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600, "create zoned image"));
    UniqueFd created(raw);  // the store below reopens it
  }
  CRYPTMAP_TRY(image,
               PosixBackingStore::open(path, {.read_only = read_only, .direct_io = direct_io}));
  if (image->block_device()) {
    return make_error_fmt(Errc::kInvalid, "emulated zoned image must be a regular file", kNoObject,
                          "%s", path.c_str());
  }
  CRYPTMAP_TRY(locked, image->try_lock(/*exclusive=*/!read_only));
  if (!locked) {
    return make_error_fmt(Errc::kBusy, "zoned image is in use by another process", kNoObject, "%s",
                          path.c_str());
  }
  return image;
}

Result<std::unique_ptr<ZoneMap>> map_from_sidecar(const Sidecar& s, const std::string& sidecar) {
  std::vector<ZoneInfo> infos = zone_internal::sidecar_zone_infos(s);
  for (ZoneInfo& z : infos) {
    // A power cycle closes open zones (ZBC): explicit opens do not survive a restart.
    if (z.cond == ZoneCond::kImplicitOpen || z.cond == ZoneCond::kExplicitOpen) {
      z.cond = z.wp == z.start ? ZoneCond::kEmpty : ZoneCond::kClosed;
    }
  }
  auto map = ZoneMap::create(s.zone_size_bytes, infos);
  if (!map) {
    const Error& e = map.error();
    return make_error_fmt(Errc::kCorrupt, "zone sidecar: inconsistent zone state", e.object,
                          "%s: %s", sidecar.c_str(), e.detail.data());
  }
  return std::move(*map);
}

Result<std::unique_ptr<ZonedStore>> create_emulated(const std::string& path,
                                                    const ZonedStoreOptions& o) {
  const std::string sidecar = zone_sidecar_path(path);
  auto invalid = [&](const char* what, std::uint64_t v) {
    return make_error_fmt(Errc::kInvalid, what, v, "creating %s", path.c_str());
  };
  if (o.read_only) return invalid("create zoned image: cannot create read-only", kNoObject);
  const std::uint32_t block = o.logical_block_bytes;
  if (block < kSector512 || block > 65536 || !std::has_single_bit(block)) {
    return invalid("create zoned image: logical block must be a power of two, 512..65536", block);
  }
  if (!std::has_single_bit(o.zone_size_bytes) || o.zone_size_bytes < block ||
      o.zone_size_bytes > (std::uint64_t{1} << 55)) {
    return invalid("create zoned image: zone size must be a power of two >= the logical block",
                   o.zone_size_bytes);
  }
  if (o.zone_count == 0 || o.zone_count > zone_internal::kSidecarMaxZones ||
      o.zone_count > std::numeric_limits<std::int64_t>::max() / o.zone_size_bytes) {
    return invalid("create zoned image: zone count out of range", o.zone_count);
  }
  if (o.conventional_zones > o.zone_count) {
    return invalid("create zoned image: more conventional zones than zones", o.conventional_zones);
  }
  const std::uint64_t capacity =
      o.zone_capacity_bytes == 0 ? o.zone_size_bytes : o.zone_capacity_bytes;
  if (capacity > o.zone_size_bytes || capacity % block != 0) {
    return invalid("create zoned image: zone capacity must be <= zone size, in whole blocks",
                   capacity);
  }
  if (o.sequential_type == ZoneType::kConventional) {
    return invalid("create zoned image: sequential_type must be a sequential type", kNoObject);
  }
  struct stat st {};
  if (::stat(sidecar.c_str(), &st) == 0) {
    return make_error_fmt(Errc::kBusy, "create zoned image: zone sidecar already exists", kNoObject,
                          "%s: open it, or delete it to reformat", sidecar.c_str());
  }
  CRYPTMAP_TRY(image, open_and_lock_image(path, false, true, o.direct_io));
  CRYPTMAP_TRY_VOID(image->resize(o.zone_count * o.zone_size_bytes));
  Sidecar s;
  s.zone_size_bytes = o.zone_size_bytes;
  s.zone_capacity_bytes = capacity;
  s.logical_block_bytes = block;
  s.generation = 1;
  s.zones.resize(static_cast<std::size_t>(o.zone_count));
  for (std::uint64_t i = 0; i < o.zone_count; ++i) {
    if (i < o.conventional_zones) {
      s.zones[i] = SidecarZone{o.zone_size_bytes, ZoneType::kConventional, ZoneCond::kNotWp};
    } else {
      s.zones[i] = SidecarZone{0, o.sequential_type, ZoneCond::kEmpty};
      // Reused file: give back old data (reads past wp are zeros regardless).
      CRYPTMAP_TRY_VOID(
          image->zero_range(ByteOffset{i * o.zone_size_bytes}, o.zone_size_bytes, false));
    }
  }
  CRYPTMAP_TRY_VOID(image->sync_all());
  CRYPTMAP_TRY_VOID(zone_internal::write_file_atomic(sidecar, zone_internal::encode_sidecar(s)));
  CRYPTMAP_TRY(map, map_from_sidecar(s, sidecar));
  return std::unique_ptr<ZonedStore>(std::make_unique<EmulatedZonedStore>(
      std::move(image), false, std::move(map), block, capacity, std::move(s)));
}

}  // namespace

std::string zone_sidecar_path(const std::string& image_path) { return image_path + ".zones"; }

Result<std::unique_ptr<ZonedStore>> open_emulated_zoned_store(const std::string& image_path,
                                                              const ZonedStoreOptions& options) {
  if (options.create) return create_emulated(image_path, options);
  const std::string sidecar = zone_sidecar_path(image_path);
  CRYPTMAP_TRY(image, open_and_lock_image(image_path, options.read_only, false, options.direct_io));
  const std::size_t max_bytes =
      zone_internal::kSidecarHeaderBytes +
      zone_internal::kSidecarMaxZones * zone_internal::kSidecarEntryBytes +
      zone_internal::kSidecarTrailerBytes;
  auto bytes = zone_internal::read_small_file(sidecar, max_bytes);
  if (!bytes) {
    if (bytes.error().code == Errc::kNotFound) {
      return make_error_fmt(Errc::kNotFound, "zone sidecar missing", kNoObject,
                            "%s: create the zoned image first", sidecar.c_str());
    }
    return bytes.error();
  }
  CRYPTMAP_TRY(s, zone_internal::decode_sidecar(*bytes, sidecar));
  CRYPTMAP_TRY(map, map_from_sidecar(s, sidecar));
  if (image->size_bytes() < map->size_bytes()) {
    return make_error_fmt(Errc::kCorrupt, "zoned image shorter than its zones", image->size_bytes(),
                          "%s needs %llu bytes", image_path.c_str(), ull(map->size_bytes()));
  }
  const std::uint32_t block = s.logical_block_bytes;
  const std::uint64_t capacity = s.zone_capacity_bytes;
  return std::unique_ptr<ZonedStore>(std::make_unique<EmulatedZonedStore>(
      std::move(image), options.read_only, std::move(map), block, capacity, std::move(s)));
}

}  // namespace cryptmap::volume

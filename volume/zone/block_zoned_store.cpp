// BlockZonedStore — a real zoned block device (SMR host-managed / host-aware, NVMe ZNS) through
// the kernel's zone ioctls (linux/blkzoned.h): BLKGETZONESZ, BLKGETNRZONES, BLKREPORTZONE,
// BLKRESETZONE, BLKFINISHZONE, BLKOPENZONE, BLKCLOSEZONE; the zoned model from sysfs
// (/sys/dev/block/MAJ:MIN/queue/zoned, chunk_sectors as a fallback zone size).
//
// The device owns the write pointers and enforces the rules; this store keeps a cached ZoneMap so
// the engine can query zones without a syscall, and checks writes against it first, so a misordered
// write fails with the same kZoneOrder message as the emulated drive instead of a bare EIO. When
// the device fails a sequential write anyway, the zone is re-reported so the cache follows the
// device. Locking as in the emulated store: a zone stripe lock around check+write+publish.
//
// Structure: a decorator. The data I/O (reads, writes, fdatasync, BLKDISCARD) goes through the
// BackingStore it wraps — the device's PosixBackingStore, opened direct-only (every request
// through O_DIRECT: page-cache writeback would not keep the issue order sequential zones need);
// the zone ioctls go through ZonedDeviceIo (internal/zoned_device_io.h), which holds the O_EXCL
// fd. Tests put a hostile fake device under both.
//
// Durability: the wp lives on the device; sync() is the store's fdatasync (a cache flush), so what
// the drive reports after a power loss is, by its contract, durable.
#include <fcntl.h>
#include <linux/blkzoned.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <new>

#include "base/mutex.h"
#include "base/posix_io.h"
#include "base/unique_fd.h"
#include "volume/store/posix_backing_store.h"
#include "volume/zone/internal/zone_rules.h"
#include "volume/zone/internal/zoned_device_io.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {
namespace {

using zone_internal::ZonedDeviceIo;

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

constexpr std::size_t kStripes = 64;
constexpr std::uint32_t kReportBatch = 256;

Result<std::string> read_sysfs_line(const std::string& file) {
  std::ifstream in(file);
  if (!in)
    return make_error_fmt(Errc::kNotFound, "read sysfs attribute", kNoObject, "%s", file.c_str());
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return line;
}

// The queue/ directory of a block device (a partition's queue is its disk's).
Result<std::string> sysfs_queue_dir(const struct stat& st) {
  const std::string base = "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" +
                           std::to_string(minor(st.st_rdev));
  for (const char* q : {"/queue", "/../queue"}) {
    struct stat qs {};
    const std::string dir = base + q;
    if (::stat(dir.c_str(), &qs) == 0 && S_ISDIR(qs.st_mode)) return dir;
  }
  return make_error_fmt(Errc::kNotFound, "find sysfs queue directory of block device", kNoObject,
                        "%s", base.c_str());
}

// The real device's zone ioctls, on an fd of its own (O_EXCL when writable).
class FdDeviceIo final : public ZonedDeviceIo {
 public:
  explicit FdDeviceIo(UniqueFd fd) : fd_(std::move(fd)) {}
  int report_zones(struct blk_zone_report* rep) override {
    return ::ioctl(fd_.get(), BLKREPORTZONE, rep) == 0 ? 0 : -errno;
  }
  int zone_mgmt(unsigned long request, const struct blk_zone_range& range) override {
    struct blk_zone_range r = range;
    return ::ioctl(fd_.get(), request, &r) == 0 ? 0 : -errno;
  }

 private:
  UniqueFd fd_;
};

// Asks the device for zones [first, first + count). Returns fewer at the end of the device.
Result<std::vector<ZoneInfo>> device_report(ZonedDeviceIo& io, std::uint64_t first,
                                            std::uint64_t count, std::uint64_t zone_size_bytes,
                                            const std::string& path) {
  std::vector<ZoneInfo> out;
  const std::uint64_t zone_sectors = zone_size_bytes >> kSectorShift512;
  const std::uint32_t batch =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(count, kReportBatch));
  if (batch == 0) return out;
  const std::size_t bytes = sizeof(struct blk_zone_report) + batch * sizeof(struct blk_zone);
  // Backing store for the report: blk_zone_report is 16 bytes and blk_zone 64, both 8-aligned.
  std::unique_ptr<std::uint64_t[]> buf(new (std::nothrow) std::uint64_t[bytes / 8 + 1]);
  if (!buf) return make_error(Errc::kNoSpace, "report zones: out of memory", count);
  std::uint64_t next = first;
  while (next < first + count) {
    std::memset(buf.get(), 0, bytes);
    auto* rep = reinterpret_cast<struct blk_zone_report*>(buf.get());
    rep->sector = next * zone_sectors;
    const std::uint32_t asked =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(batch, first + count - next));
    rep->nr_zones = asked;
    int rc = 0;
    while ((rc = io.report_zones(rep)) == -EINTR) {
    }
    if (rc < 0) return sys_error_on(-rc, "report zones (BLKREPORTZONE)", next, path);
    if (rep->nr_zones == 0) break;  // end of the device
    if (rep->nr_zones > asked) {
      return make_error_fmt(Errc::kCorrupt, "BLKREPORTZONE returned more zones than asked", next,
                            "%s", path.c_str());
    }
    const auto* zones = reinterpret_cast<const struct blk_zone*>(rep + 1);
    CRYPTMAP_TRY(infos, zone_internal::zone_infos_from_blk_zones({zones, rep->nr_zones}, rep->flags,
                                                                 next, zone_size_bytes));
    out.insert(out.end(), infos.begin(), infos.end());
    next += rep->nr_zones;
  }
  return out;
}

class BlockZonedStore final : public ZonedStore {
 public:
  // `device` does the data I/O, `io` the zone commands; messages name `path`.
  BlockZonedStore(std::unique_ptr<BackingStore> device, std::unique_ptr<ZonedDeviceIo> io,
                  std::string path, bool read_only, std::unique_ptr<ZoneMap> map,
                  std::uint32_t block)
      : device_(std::move(device)),
        io_(std::move(io)),
        path_(std::move(path)),
        read_only_(read_only),
        map_(std::move(map)),
        block_(block) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return zone_internal::zoned_read(
        *map_, off, out, path_,
        [&](ByteOffset pos, std::span<std::byte> part) { return device_->read_at(pos, part); });
  }

  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "write zoned device", off.value,
                            "%s is open read-only", path_.c_str());
    }
    CRYPTMAP_TRY(target, zone_internal::classify_write(*map_, off, in.size(), path_));
    if (in.empty()) return ok();
    if (!target.sequential) return device_->write_at(off, in);
    MutexLock lock(stripe(target.zone));
    const ZoneInfo z = map_->zone(target.zone);
    CRYPTMAP_TRY_VOID(zone_internal::check_sequential_write(z, off, in.size(), block_));
    if (auto w = device_->write_at(off, in); !w) {
      (void)refresh_locked(target.zone);  // the device's wp is the truth; keep the cache honest
      return w;
    }
    const auto st = zone_internal::state_after_write(z, off, in.size());
    map_->set_state(target.zone, st.wp, st.cond);
    return ok();
  }

  Result<void> sync() override { return device_->sync(); }

  Result<void> discard(ByteOffset off, std::uint64_t len_bytes) override {
    if (len_bytes == 0 && !read_only_) return ok();
    CRYPTMAP_TRY_VOID(zone_internal::check_discard(*map_, off, len_bytes, read_only_,
                                                   "discard zoned device range", path_));
    return device_->discard(off, len_bytes);  // BLKDISCARD; kUnsupported where the device has none
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
    count = std::min(count, map_->zone_count() - first);
    CRYPTMAP_TRY(infos, device_report(*io_, first, count, map_->zone_size_bytes(), path_));
    for (const ZoneInfo& z : infos) publish(z);
    return infos;
  }

  Result<void> reset_zone(std::uint64_t index) override {
    return manage(index, BLKRESETZONE, "reset zone (BLKRESETZONE)");
  }
  Result<void> finish_zone(std::uint64_t index) override {
    return manage(index, BLKFINISHZONE, "finish zone (BLKFINISHZONE)");
  }
  Result<void> open_zone(std::uint64_t index) override {
    return manage(index, BLKOPENZONE, "open zone (BLKOPENZONE)");
  }
  Result<void> close_zone(std::uint64_t index) override {
    return manage(index, BLKCLOSEZONE, "close zone (BLKCLOSEZONE)");
  }

 private:
  Mutex& stripe(std::uint64_t zone) const { return stripes_[zone % kStripes]; }

  void publish(const ZoneInfo& z) {
    if (!z.sequential()) return;
    MutexLock lock(stripe(z.index));
    map_->set_state(z.index, z.wp, z.cond);
  }

  // Re-reads one zone from the device into the cache. Caller must hold the zone's stripe lock.
  Result<void> refresh_locked(std::uint64_t index) REQUIRES(stripe(index)) {
    CRYPTMAP_TRY(infos, device_report(*io_, index, 1, map_->zone_size_bytes(), path_));
    if (infos.size() != 1 || infos[0].type != map_->type(index) ||
        infos[0].len_bytes != map_->zone(index).len_bytes) {
      return make_error_fmt(Errc::kCorrupt, "zoned device changed its zone layout", index, "%s",
                            path_.c_str());
    }
    map_->set_state(index, infos[0].wp, infos[0].cond);
    return ok();
  }

  Result<void> manage(std::uint64_t index, unsigned long request, const char* what) {
    CRYPTMAP_TRY_VOID(
        zone_internal::check_management_target(*map_, index, read_only_, what, path_));
    MutexLock lock(stripe(index));
    const ZoneInfo z = map_->zone(index);
    CRYPTMAP_TRY_VOID(zone_internal::check_management_cond(z, what));
    struct blk_zone_range range {};
    range.sector = z.start.value >> kSectorShift512;
    range.nr_sectors = z.len_bytes >> kSectorShift512;
    int rc = 0;
    while ((rc = io_->zone_mgmt(request, range)) == -EINTR) {
    }
    if (rc < 0) {
      (void)refresh_locked(index);
      return sys_error_on(-rc, what, index, path_);
    }
    return refresh_locked(index);  // the device decides the resulting condition
  }

  const std::unique_ptr<BackingStore> device_;
  const std::unique_ptr<ZonedDeviceIo> io_;
  const std::string path_;
  const bool read_only_;
  const std::unique_ptr<ZoneMap> map_;
  const std::uint32_t block_;
  mutable std::array<Mutex, kStripes> stripes_;  // zone % kStripes: check+write+publish
};

}  // namespace

namespace zone_internal {

std::unique_ptr<ZonedDeviceIo> make_fd_device_io(UniqueFd fd) {
  return std::make_unique<FdDeviceIo>(std::move(fd));
}

Result<std::unique_ptr<ZonedStore>> make_block_zoned_store(std::unique_ptr<BackingStore> device,
                                                           std::unique_ptr<ZonedDeviceIo> io,
                                                           const std::string& path, bool read_only,
                                                           std::uint64_t zone_size_bytes,
                                                           std::uint64_t nr_zones,
                                                           std::uint32_t logical_block_bytes) {
  if (nr_zones == 0 || zone_size_bytes == 0 || zone_size_bytes % logical_block_bytes != 0) {
    return make_error_fmt(Errc::kUnsupported, "zoned device geometry unusable", nr_zones,
                          "%s: zone size %llu, block %u", path.c_str(), ull(zone_size_bytes),
                          logical_block_bytes);
  }
  CRYPTMAP_TRY(infos, device_report(*io, 0, nr_zones, zone_size_bytes, path));
  if (infos.size() != nr_zones) {
    return make_error_fmt(Errc::kCorrupt, "zoned device reported fewer zones than it has",
                          infos.size(), "%s: BLKGETNRZONES says %llu", path.c_str(), ull(nr_zones));
  }
  auto map = ZoneMap::create(zone_size_bytes, infos);
  if (!map) {
    const Error& e = map.error();
    return make_error_fmt(e.code, e.what, e.object, "%s: %s", path.c_str(), e.detail.data());
  }
  return std::unique_ptr<ZonedStore>(std::make_unique<BlockZonedStore>(
      std::move(device), std::move(io), path, read_only, std::move(*map), logical_block_bytes));
}

}  // namespace zone_internal

Result<std::string> block_device_zoned_model(const std::string& device_path) {
  struct stat st {};
  if (::stat(device_path.c_str(), &st) != 0) {
    return sys_error_on(errno, "stat zoned device", kNoObject, device_path);
  }
  if (!S_ISBLK(st.st_mode)) {
    return make_error_fmt(Errc::kInvalid, "not a block device", kNoObject, "%s",
                          device_path.c_str());
  }
  CRYPTMAP_TRY(queue, sysfs_queue_dir(st));
  auto model = read_sysfs_line(queue + "/zoned");
  if (!model) return std::string("none");  // kernels without zoned support have no attribute
  return *model;
}

Result<std::unique_ptr<ZonedStore>> open_block_zoned_store(const std::string& device_path,
                                                           const ZonedStoreOptions& options) {
  if (options.create) {
    return make_error_fmt(Errc::kInvalid, "create zoned store on a block device", kNoObject,
                          "%s: zoned block devices are formatted by their drive; open without "
                          "create",
                          device_path.c_str());
  }
  CRYPTMAP_TRY(model, block_device_zoned_model(device_path));
  if (model != "host-managed" && model != "host-aware") {
    return make_error_fmt(Errc::kUnsupported, "not a zoned block device", kNoObject,
                          "%s: queue/zoned is '%s'; use an emulated image", device_path.c_str(),
                          model.c_str());
  }
  // The zone commands' fd: O_EXCL claims the device against mounts and other exclusive openers.
  const int flags = (options.read_only ? O_RDONLY : (O_RDWR | O_EXCL)) | O_CLOEXEC;
  CRYPTMAP_TRY(raw, open_retrying(device_path.c_str(), flags, 0, "open zoned device"));
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISBLK(st.st_mode)) {
    return make_error_fmt(Errc::kInvalid, "not a block device", kNoObject, "%s",
                          device_path.c_str());
  }
  std::uint32_t zone_sectors = 0;
  if (::ioctl(fd.get(), BLKGETZONESZ, &zone_sectors) != 0 || zone_sectors == 0) {
    // Older kernels: the zone size is the queue's chunk_sectors.
    CRYPTMAP_TRY(queue, sysfs_queue_dir(st));
    CRYPTMAP_TRY(chunk, read_sysfs_line(queue + "/chunk_sectors"));
    zone_sectors = static_cast<std::uint32_t>(std::strtoul(chunk.c_str(), nullptr, 10));
  }
  if (zone_sectors == 0) {
    return make_error_fmt(Errc::kUnsupported, "zoned device reports no zone size", kNoObject, "%s",
                          device_path.c_str());
  }
  std::uint32_t nr_zones = 0;
  if (::ioctl(fd.get(), BLKGETNRZONES, &nr_zones) != 0) {
    return sys_error_on(errno, "get zone count (BLKGETNRZONES)", kNoObject, device_path);
  }
  int lbs = 0;
  if (::ioctl(fd.get(), BLKSSZGET, &lbs) != 0 || lbs < 512) {
    return sys_error_on(errno, "get logical block size (BLKSSZGET)", kNoObject, device_path);
  }
  const std::uint64_t zone_size = std::uint64_t{zone_sectors} << kSectorShift512;
  CRYPTMAP_TRY(device, PosixBackingStore::open(device_path, {.read_only = options.read_only,
                                                             .direct_io = options.direct_io,
                                                             .direct_only = options.direct_io}));
  return zone_internal::make_block_zoned_store(
      std::move(device), zone_internal::make_fd_device_io(std::move(fd)), device_path,
      options.read_only, zone_size, nr_zones, static_cast<std::uint32_t>(lbs));
}

}  // namespace cryptmap::volume

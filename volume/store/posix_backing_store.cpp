// PosixBackingStore — BackingStore over a regular file or a block device (pread/pwrite through
// base/posix_io.h). The zoned stores in volume/zone/ decorate it (posix_backing_store.h).
//
// Thread-safety: positional I/O on shared fds is safe from any number of threads; the only
// mutable state is the size of a growing regular file (atomic).
//
// Direct I/O (why): the daemon sits under a loop device's writeback. A buffered pwrite() to the
// image allocates page-cache folios charged to the caller's memory cgroup; at the limit, reclaim
// in *our* thread waits for writeback of dirty pages that only we can complete (loop -> FUSE ->
// us) — the dm-crypt mempool deadlock, in userspace. PR_SET_IO_FLUSHER prevents that but needs
// CAP_SYS_RESOURCE, which containers often drop. With O_DIRECT the image I/O allocates no page
// cache at all, so with `direct_io` every request that meets the file's direct-I/O alignment
// (statx STATX_DIOALIGN, or the logical block size of a block device) goes through an O_DIRECT
// fd; an unaligned request (rare: a 512-byte RMW on a 4 KiB-aligned file system) uses a second,
// buffered fd. The kernel keeps the two coherent (direct I/O writes back and invalidates the
// page-cache range first). The sector cache above is the only cache, so nothing is lost.
//
// Batches go to io_uring (internal/uring_batch.h) when the rings could be set up at open, else
// (and when every ring is busy) through BackingStore's loop; a setup failure is one log line.
#include "volume/store/posix_backing_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/stat.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/posix_io.h"
#include "base/unique_fd.h"
#include "volume/store/internal/uring_batch.h"

namespace cryptmap::volume {
namespace {

// Rings per store and submission entries per ring: a ring per FUSE worker (16), the flusher
// and the read-ahead threads mostly find one free; 32 pieces of one batch in flight at once.
constexpr unsigned kRings = 16;
constexpr unsigned kRingEntries = 32;

// Set by the first store whose io_uring setup failed (the fallback's one log line).
std::atomic<bool> g_uring_failure_logged{false};

constexpr const char* kReadOp = "read image";
constexpr const char* kReadPastEnd =
    "read image past its end (image shorter than the volume needs)";
constexpr const char* kWriteOp = "write image";

class PosixFileStore final : public PosixBackingStore {
 public:
  // `direct` is an O_DIRECT fd on the same file (invalid when direct I/O is off or
  // unsupported); requests aligned to dio_offset_align/dio_mem_align use it.
  PosixFileStore(UniqueFd fd, UniqueFd direct, std::uint32_t dio_offset_align,
                 std::uint32_t dio_mem_align, std::string path, std::uint64_t size, bool read_only,
                 bool block_device, bool direct_only, std::unique_ptr<UringRings> rings)
      : fd_(std::move(fd)),
        direct_fd_(std::move(direct)),
        dio_offset_align_(dio_offset_align),
        dio_mem_align_(dio_mem_align),
        path_(std::move(path)),
        size_(size),
        read_only_(read_only),
        block_device_(block_device),
        direct_only_(direct_only),
        rings_(std::move(rings)) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    const IoNames names{.op = kReadOp, .past_end = kReadPastEnd, .name = path_};
    // The fd is chosen per step: the rest of a short transfer may no longer be aligned.
    CRYPTMAP_TRY_VOID(read_loop(
        [this](void* buf, std::size_t len, std::uint64_t at) -> ssize_t {
          const ssize_t n = ::pread(fd_for(at, buf, len), buf, len, static_cast<off_t>(at));
          return n < 0 ? -errno : n;
        },
        off.value, out, names, AtEof::kFail));
    return ok();
  }

  Result<void> read_batch(std::span<ReadPiece> pieces) const override {
    if (!rings_ || pieces.size() < 2) return BackingStore::read_batch(pieces);
    ReadView view(*this, pieces);
    if (!rings_->run(view, /*write=*/false)) return BackingStore::read_batch(pieces);
    return first_error(pieces);
  }

  Result<void> write_batch(std::span<WritePiece> pieces) override {
    if (!rings_ || pieces.size() < 2 || read_only_) return BackingStore::write_batch(pieces);
    WriteView view(*this, pieces);
    if (!rings_->run(view, /*write=*/true)) return BackingStore::write_batch(pieces);
    for (const WritePiece& p : pieces) {
      if (p.result) grow_to(p.off.value + p.in.size());
    }
    return first_error(pieces);
  }

  // Reads: each piece's work runs as its completion is reaped, while the rest are in flight.
  // Writes: each piece is prepared and submitted in turn, so it is in flight while the next
  // is prepared (a staged batch, internal/uring_batch.h).
  Result<void> read_batch_each(std::span<ReadPiece> pieces, PieceWork on_read) const override {
    if (!rings_ || pieces.size() < 2) {
      return BackingStore::read_batch_each(pieces, std::move(on_read));
    }
    ReadView view(*this, pieces, &on_read);
    if (!rings_->run(view, /*write=*/false)) {
      return BackingStore::read_batch_each(pieces, std::move(on_read));
    }
    return first_error(pieces);
  }

  Result<void> write_batch_each(std::span<WritePiece> pieces, PieceWork prepare) override {
    if (!rings_ || pieces.size() < 2 || read_only_) {
      return BackingStore::write_batch_each(pieces, std::move(prepare));
    }
    WriteView view(*this, pieces, &prepare);
    if (!rings_->run(view, /*write=*/true)) {
      return BackingStore::write_batch_each(pieces, std::move(prepare));
    }
    for (const WritePiece& p : pieces) {
      if (p.result) grow_to(p.off.value + p.in.size());
    }
    return first_error(pieces);
  }

  bool uses_io_uring() const noexcept override { return rings_ != nullptr; }

  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return write_with(off, in, 0);
  }

  // pwritev2(RWF_DSYNC): each step is durable when it returns, as if the file were opened
  // O_DSYNC (a block device's FUA write through O_DIRECT; on a file, its data and the metadata
  // needed to read it back). A kernel without RWF_DSYNC (before 4.7) refuses the flag with
  // EOPNOTSUPP: then write and fdatasync.
  Result<void> write_fua(ByteOffset off, std::span<const std::byte> in) override {
    Result<void> r = write_with(off, in, RWF_DSYNC);
    if (r || r.error().sys_errno != EOPNOTSUPP) return r;
    return BackingStore::write_fua(off, in);
  }

  Result<void> sync() override {
    return sync_fd(fd_.get(), /*data_only=*/true, {.op = "sync image (fdatasync)", .name = path_});
  }
  // Writes sit in the page cache or the device's cache until fdatasync; write_fua is RWF_DSYNC.
  StoreDurability durability() const noexcept override {
    return {.volatile_writes = true, .flush = true, .fua = true};
  }

  // write_at with pwritev2's `flags` (0: a plain pwrite).
  Result<void> write_with(ByteOffset off, std::span<const std::byte> in, int flags) {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "write image", off.value, "%s is open read-only",
                            path_.c_str());
    }
    CRYPTMAP_TRY_VOID(write_loop(
        [this, flags](const void* buf, std::size_t len, std::uint64_t at) -> ssize_t {
          iovec v{const_cast<void*>(buf), len};
          const ssize_t n = ::pwritev2(fd_for(at, buf, len), &v, 1, static_cast<off_t>(at), flags);
          return n < 0 ? -errno : n;
        },
        off.value, in, {.op = kWriteOp, .name = path_}));
    grow_to(off.value + in.size());
    return ok();
  }

  Result<void> sync_all() override {
    return sync_fd(fd_.get(), /*data_only=*/false, {.op = "sync image (fsync)", .name = path_});
  }

  Result<void> discard(ByteOffset off, std::uint64_t len_bytes) override {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "discard image range", off.value,
                            "%s is open read-only", path_.c_str());
    }
    if (len_bytes == 0) return ok();
    if (block_device_) {
      std::uint64_t range[2] = {off.value, len_bytes};
      if (::ioctl(fd_.get(), BLKDISCARD, range) != 0) {
        const int err = errno;
        if (err == EOPNOTSUPP || err == ENOTTY) {
          return make_error_fmt(Errc::kUnsupported, "discard image range", off.value,
                                "%s does not support BLKDISCARD", path_.c_str());
        }
        return sys_error_on(err, "discard image range (BLKDISCARD)", off.value, path_);
      }
      return ok();
    }
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(off.value), static_cast<off_t>(len_bytes)) != 0) {
      const int err = errno;
      if (err == EOPNOTSUPP) {
        return make_error_fmt(Errc::kUnsupported, "discard image range", off.value,
                              "file system of %s cannot punch holes", path_.c_str());
      }
      return sys_error_on(err, "discard image range (punch hole)", off.value, path_);
    }
    return ok();
  }

  Result<bool> zero_range(ByteOffset off, std::uint64_t len_bytes, bool must) override {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "zero image range", off.value, "%s is open read-only",
                            path_.c_str());
    }
    if (block_device_) {
      return make_error_fmt(Errc::kUnsupported, "zero image range", off.value,
                            "%s is a block device", path_.c_str());
    }
    if (len_bytes == 0) return true;
    const auto o = static_cast<off_t>(off.value);
    const auto l = static_cast<off_t>(len_bytes);
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, o, l) == 0) return true;
    if (errno != EOPNOTSUPP) {
      return sys_error_on(errno, "zero image range (punch hole)", off.value, path_);
    }
    if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, o, l) == 0) return true;
    if (errno != EOPNOTSUPP) {
      return sys_error_on(errno, "zero image range (zero range)", off.value, path_);
    }
    if (!must) return false;
    std::vector<std::byte> zeros(std::min<std::uint64_t>(len_bytes, 1u << 20));
    for (std::uint64_t done = 0; done < len_bytes;) {
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), len_bytes - done));
      CRYPTMAP_TRY_VOID(pwrite_full(fd_.get(), off.value + done, {zeros.data(), n},
                                    {.op = "zero image range (write zeros)", .name = path_}));
      done += n;
    }
    return true;
  }

  Result<bool> try_lock(bool exclusive) override {
    while (::flock(fd_.get(), (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno == EWOULDBLOCK) return false;
      return sys_error_on(errno, "lock image (flock)", kNoObject, path_);
    }
    return true;
  }

  Result<void> resize(std::uint64_t size_bytes) override {
    if (block_device_ || read_only_) {
      return make_error_fmt(Errc::kInvalid, "resize image", size_bytes,
                            "%s is a block device or open read-only", path_.c_str());
    }
    if (::ftruncate(fd_.get(), static_cast<off_t>(size_bytes)) != 0) {
      return sys_error_on(errno, "size image (ftruncate)", size_bytes, path_);
    }
    size_.store(size_bytes, std::memory_order_relaxed);
    return ok();
  }

  std::uint64_t size_bytes() const noexcept override {
    return size_.load(std::memory_order_relaxed);
  }
  Result<std::uint64_t> refresh_size() override {
    std::uint64_t size = 0;
    if (block_device_) {
      if (::ioctl(fd_.get(), BLKGETSIZE64, &size) != 0)
        return sys_error_on(errno, "get block device size (BLKGETSIZE64)", kNoObject, path_);
    } else {
      struct stat st {};
      if (::fstat(fd_.get(), &st) != 0) return sys_error_on(errno, "stat image", kNoObject, path_);
      size = static_cast<std::uint64_t>(st.st_size);
    }
    size_.store(size, std::memory_order_relaxed);
    return size;
  }
  bool read_only() const noexcept override { return read_only_; }
  // A block device's topology as cryptsetup reads it (device_topology_alignment): the larger of
  // the minimum and the optimal I/O size.
  std::uint64_t optimal_io_bytes() const noexcept override {
    if (!block_device_) return 0;
    unsigned int min_io = 0, opt_io = 0;
    if (::ioctl(fd_.get(), BLKIOMIN, &min_io) != 0) min_io = 0;
    if (::ioctl(fd_.get(), BLKIOOPT, &opt_io) != 0) opt_io = 0;
    return std::max(min_io, opt_io);
  }
  const std::string& name() const noexcept override { return path_; }
  bool block_device() const noexcept override { return block_device_; }
  int fd() const noexcept override { return fd_.get(); }

 private:
  // A batch as the rings see it; the results land in the pieces, worded as read_at's/write_at's.
  template <class Piece>
  class View final : public BatchView {
   public:
    // `work`: the caller's work on each piece (read_batch_each: after its read succeeded;
    // write_batch_each: before it is submitted), or null.
    View(const PosixFileStore& store, std::span<Piece> pieces, PieceWork* work = nullptr)
        : store_(store), pieces_(pieces), work_(work) {}
    std::size_t size() const noexcept override { return pieces_.size(); }
    std::byte* buf(std::size_t i) const noexcept override {
      if constexpr (std::is_same_v<Piece, ReadPiece>) {
        return pieces_[i].out.data();
      } else {
        // io_uring takes one pointer type for both directions; a write only reads it.
        return const_cast<std::byte*>(pieces_[i].in.data());
      }
    }
    std::size_t len(std::size_t i) const noexcept override {
      if constexpr (std::is_same_v<Piece, ReadPiece>) {
        return pieces_[i].out.size();
      } else {
        return pieces_[i].in.size();
      }
    }
    std::uint64_t off(std::size_t i) const noexcept override { return pieces_[i].off.value; }
    int fd_for(std::uint64_t off, const void* buf, std::size_t len) const noexcept override {
      return store_.fd_for(off, buf, len);
    }
    void finish(std::size_t i, int err, std::uint64_t at) noexcept override {
      constexpr bool kRead = std::is_same_v<Piece, ReadPiece>;
      if (err == 0) {
        pieces_[i].result = ok();
        if constexpr (kRead) {
          if (work_ != nullptr) pieces_[i].result = (*work_)(i);
        }
      } else if (err == kPastEnd) {
        Error e = sys_error_on(0, kReadPastEnd, at, store_.path_);
        e.code = Errc::kIo;
        pieces_[i].result = e;
      } else {
        pieces_[i].result = sys_error_on(err, kRead ? kReadOp : kWriteOp, at, store_.path_);
      }
    }

    bool staged() const noexcept override {
      return !std::is_same_v<Piece, ReadPiece> && work_ != nullptr;
    }
    bool prepare(std::size_t i) noexcept override {
      const Result<void> r = (*work_)(i);
      if (r) return true;
      for (std::size_t j = i; j < pieces_.size(); ++j) pieces_[j].result = r;
      return false;
    }

   private:
    const PosixFileStore& store_;
    std::span<Piece> pieces_;
    PieceWork* work_;
  };
  using ReadView = View<ReadPiece>;
  using WriteView = View<WritePiece>;

  template <class Piece>
  static Result<void> first_error(std::span<Piece> pieces) {
    for (const Piece& p : pieces) {
      if (!p.result) return p.result;
    }
    return ok();
  }

  // A regular file grows when written past its end; keep size_bytes() truthful.
  void grow_to(std::uint64_t end) noexcept {
    if (block_device_) return;
    std::uint64_t cur = size_.load(std::memory_order_relaxed);
    while (end > cur && !size_.compare_exchange_weak(cur, end, std::memory_order_relaxed)) {
    }
  }

  int fd_for(std::uint64_t off, const void* buf, std::size_t len) const noexcept {
    if (!direct_fd_.valid()) return fd_.get();
    if (direct_only_) return direct_fd_.get();
    const bool aligned = off % dio_offset_align_ == 0 && len % dio_offset_align_ == 0 &&
                         reinterpret_cast<std::uintptr_t>(buf) % dio_mem_align_ == 0;
    return aligned ? direct_fd_.get() : fd_.get();
  }

  UniqueFd fd_;         // buffered
  UniqueFd direct_fd_;  // O_DIRECT, or invalid
  const std::uint32_t dio_offset_align_;
  const std::uint32_t dio_mem_align_;
  const std::string path_;
  std::atomic<std::uint64_t> size_;
  const bool read_only_;
  const bool block_device_;
  const bool direct_only_;             // every request through direct_fd_, aligned or not
  std::unique_ptr<UringRings> rings_;  // null: batches run the plain loop
};

}  // namespace

// The file's direct-I/O alignment: statx(STATX_DIOALIGN) where the kernel and file system
// report it, the logical block size for a block device, else a conservative 4096.
void dio_alignment(int fd, bool block_device, std::uint32_t* offset_align,
                   std::uint32_t* mem_align) {
  *offset_align = 4096;
  *mem_align = 4096;
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN) != 0 && stx.stx_dio_offset_align != 0) {
    *offset_align = stx.stx_dio_offset_align;
    *mem_align = stx.stx_dio_mem_align != 0 ? stx.stx_dio_mem_align : 1;
    return;
  }
  int lbs = 0;
  if (block_device && ::ioctl(fd, BLKSSZGET, &lbs) == 0 && lbs > 0) {
    *offset_align = static_cast<std::uint32_t>(lbs);
    *mem_align = static_cast<std::uint32_t>(lbs);
  }
}

Result<std::unique_ptr<PosixBackingStore>> PosixBackingStore::open(const std::string& path,
                                                                   const PosixStoreOptions& opts) {
  const int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  CRYPTMAP_TRY(raw, open_retrying(path.c_str(), flags, 0, "open image"));
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error_on(errno, "stat image", kNoObject, path);
  std::uint64_t size = 0;
  bool block_device = false;
  if (S_ISBLK(st.st_mode)) {
    block_device = true;
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
      return sys_error_on(errno, "get block device size (BLKGETSIZE64)", kNoObject, path);
    }
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<std::uint64_t>(st.st_size);
  } else {
    return make_error_fmt(Errc::kInvalid, "open image", kNoObject,
                          "%s is neither a regular file nor a block device", path.c_str());
  }
  UniqueFd direct;
  std::uint32_t offset_align = 4096, mem_align = 4096;
  if (opts.direct_io) {
    // Reopen by the same inode (not the path, which may have been replaced meanwhile).
    const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
    auto d = open_retrying(self.c_str(), flags | O_DIRECT, 0, "open image (O_DIRECT)");
    if (d) {
      direct.reset(*d);
      dio_alignment(direct.get(), block_device, &offset_align, &mem_align);
    } else if (opts.direct_only) {
      Error e = d.error();
      set_detail(e, path);
      return e;
    }
    // else: the file system has no O_DIRECT (tmpfs before 6.6, some FUSE file systems);
    // buffered I/O it is.
  }
  std::unique_ptr<UringRings> rings;
  if (opts.io_uring) {
    auto r = UringRings::create(kRings, kRingEntries);
    if (r) {
      rings = std::move(*r);
    } else if (!g_uring_failure_logged.exchange(true)) {
      // Once per process: the cause (sysctl, seccomp, kernel) is the same for every image.
      spdlog::warn("image {}: io_uring unavailable ({}); store I/O runs one request at a time",
                   path, r.error().message());
    }
  }
  return std::unique_ptr<PosixBackingStore>(std::make_unique<PosixFileStore>(
      std::move(fd), std::move(direct), offset_align, mem_align, path, size, opts.read_only,
      block_device, opts.direct_io && opts.direct_only, std::move(rings)));
}

Result<std::unique_ptr<BackingStore>> open_posix_store(const std::string& path,
                                                       const PosixStoreOptions& opts) {
  CRYPTMAP_TRY(store, PosixBackingStore::open(path, opts));
  return std::unique_ptr<BackingStore>(std::move(store));
}

}  // namespace cryptmap::volume

// PosixBackingStore — BackingStore over a regular file or a block device (pread/pwrite).
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
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/stat.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdint>
#include <memory>
#include <string>

#include "base/unique_fd.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

// Errors name the image path in `detail` (truncated to fit) so a user sees which file failed.
Error path_error(int err, const char* what, std::uint64_t object, const std::string& path) {
  Error e = make_sys_error(err, what, object);
  std::snprintf(e.detail.data(), e.detail.size(), "%s", path.c_str());
  return e;
}

class PosixBackingStore final : public BackingStore {
 public:
  // `direct` is an O_DIRECT fd on the same file (invalid when direct I/O is off or
  // unsupported); requests aligned to dio_offset_align/dio_mem_align use it.
  PosixBackingStore(UniqueFd fd, UniqueFd direct, std::uint32_t dio_offset_align,
                    std::uint32_t dio_mem_align, std::string path, std::uint64_t size,
                    bool read_only, bool block_device)
      : fd_(std::move(fd)),
        direct_fd_(std::move(direct)),
        dio_offset_align_(dio_offset_align),
        dio_mem_align_(dio_mem_align),
        path_(std::move(path)),
        size_(size),
        read_only_(read_only),
        block_device_(block_device) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_for(off.value + done, out.data() + done, out.size() - done),
                                out.data() + done, out.size() - done,
                                static_cast<off_t>(off.value + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return path_error(errno, "read image", off.value + done, path_);
      }
      if (n == 0) {
        Error e = make_error_fmt(Errc::kIo, "read image past its end", off.value + done,
                                 "%s is shorter than the volume needs", path_.c_str());
        return e;
      }
      done += static_cast<std::size_t>(n);
    }
    return ok();
  }

  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "write image", off.value,
                            "%s is open read-only", path_.c_str());
    }
    std::size_t done = 0;
    while (done < in.size()) {
      const ssize_t n = ::pwrite(fd_for(off.value + done, in.data() + done, in.size() - done),
                                 in.data() + done, in.size() - done,
                                 static_cast<off_t>(off.value + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return path_error(errno, "write image", off.value + done, path_);
      }
      if (n == 0) return path_error(ENOSPC, "write image", off.value + done, path_);
      done += static_cast<std::size_t>(n);
    }
    if (!block_device_) {
      // A regular file grows when written past its end; keep size_bytes() truthful.
      const std::uint64_t end = off.value + in.size();
      std::uint64_t cur = size_.load(std::memory_order_relaxed);
      while (end > cur && !size_.compare_exchange_weak(cur, end, std::memory_order_relaxed)) {
      }
    }
    return ok();
  }

  Result<void> sync() override {
    while (::fdatasync(fd_.get()) != 0) {
      if (errno == EINTR) continue;
      return path_error(errno, "sync image (fdatasync)", kNoObject, path_);
    }
    return ok();
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
        return path_error(err, "discard image range (BLKDISCARD)", off.value, path_);
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
      return path_error(err, "discard image range (punch hole)", off.value, path_);
    }
    return ok();
  }

  std::uint64_t size_bytes() const noexcept override {
    return size_.load(std::memory_order_relaxed);
  }
  bool read_only() const noexcept override { return read_only_; }
  const std::string& name() const noexcept override { return path_; }

 private:
  int fd_for(std::uint64_t off, const void* buf, std::size_t len) const noexcept {
    if (!direct_fd_.valid()) return fd_.get();
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

Result<std::unique_ptr<BackingStore>> open_posix_store(const std::string& path,
                                                       const PosixStoreOptions& opts) {
  const int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  int raw = -1;
  do {
    raw = ::open(path.c_str(), flags);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) return path_error(errno, "open image", kNoObject, path);
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return path_error(errno, "stat image", kNoObject, path);
  std::uint64_t size = 0;
  bool block_device = false;
  if (S_ISBLK(st.st_mode)) {
    block_device = true;
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
      return path_error(errno, "get block device size (BLKGETSIZE64)", kNoObject, path);
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
    do {
      raw = ::open(self.c_str(), flags | O_DIRECT);
    } while (raw < 0 && errno == EINTR);
    if (raw >= 0) {
      direct.reset(raw);
      dio_alignment(direct.get(), block_device, &offset_align, &mem_align);
    }
    // else: the file system has no O_DIRECT (tmpfs before 6.6, some FUSE file systems);
    // buffered I/O it is.
  }
  return std::unique_ptr<BackingStore>(std::make_unique<PosixBackingStore>(
      std::move(fd), std::move(direct), offset_align, mem_align, path, size, opts.read_only,
      block_device));
}

}  // namespace cryptmap::volume

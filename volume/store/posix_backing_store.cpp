// PosixBackingStore — BackingStore over a regular file or a block device (pread/pwrite).
//
// Thread-safety: positional I/O on one shared fd is safe from any number of threads; the only
// mutable state is the size of a growing regular file (atomic).
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

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
  PosixBackingStore(UniqueFd fd, std::string path, std::uint64_t size, bool read_only,
                    bool block_device, bool direct)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        size_(size),
        read_only_(read_only),
        block_device_(block_device),
        direct_(direct) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done,
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
      const ssize_t n = ::pwrite(fd_.get(), in.data() + done, in.size() - done,
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
  UniqueFd fd_;
  const std::string path_;
  std::atomic<std::uint64_t> size_;
  const bool read_only_;
  const bool block_device_;
  [[maybe_unused]] const bool direct_;
};

}  // namespace

Result<std::unique_ptr<BackingStore>> open_posix_store(const std::string& path,
                                                       const PosixStoreOptions& opts) {
  int flags = (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (opts.direct_io) flags |= O_DIRECT;
  int raw = -1;
  do {
    raw = ::open(path.c_str(), flags);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) {
    const int err = errno;
    if (err == EINVAL && opts.direct_io) {
      return make_error_fmt(Errc::kUnsupported, "open image with O_DIRECT", kNoObject,
                            "%s: file system refuses O_DIRECT; open without direct I/O",
                            path.c_str());
    }
    return path_error(err, "open image", kNoObject, path);
  }
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
  return std::unique_ptr<BackingStore>(std::make_unique<PosixBackingStore>(
      std::move(fd), path, size, opts.read_only, block_device, opts.direct_io));
}

}  // namespace cryptmap::volume

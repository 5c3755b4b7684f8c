// Positional I/O helpers of the zoned stores (internal/zone_io.h).
#include "volume/zone/internal/zone_io.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "base/unique_fd.h"

namespace cryptmap::volume::zone_internal {

Error path_error(int err, const char* what, std::uint64_t object, const std::string& path) {
  Error e = make_sys_error(err, what, object);
  std::snprintf(e.detail.data(), e.detail.size(), "%s", path.c_str());
  return e;
}

Result<void> pread_all(int fd, ByteOffset off, std::span<std::byte> out, const std::string& path) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                              static_cast<off_t>(off.value + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return path_error(errno, "read zoned image", off.value + done, path);
    }
    if (n == 0) {
      return make_error_fmt(Errc::kIo, "read zoned image past its end", off.value + done, "%s",
                            path.c_str());
    }
    done += static_cast<std::size_t>(n);
  }
  return ok();
}

Result<void> pwrite_all(int fd, ByteOffset off, std::span<const std::byte> in,
                        const std::string& path) {
  std::size_t done = 0;
  while (done < in.size()) {
    const ssize_t n = ::pwrite(fd, in.data() + done, in.size() - done,
                               static_cast<off_t>(off.value + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return path_error(errno, "write zoned image", off.value + done, path);
    }
    if (n == 0) return path_error(ENOSPC, "write zoned image", off.value + done, path);
    done += static_cast<std::size_t>(n);
  }
  return ok();
}

Result<bool> zero_file_range(int fd, ByteOffset off, std::uint64_t len_bytes, bool must,
                             const std::string& path) {
  if (len_bytes == 0) return true;
  const auto o = static_cast<off_t>(off.value);
  const auto l = static_cast<off_t>(len_bytes);
  if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, o, l) == 0) return true;
  if (errno != EOPNOTSUPP) return path_error(errno, "zero zone data (punch hole)", off.value, path);
  if (::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, o, l) == 0) return true;
  if (errno != EOPNOTSUPP) return path_error(errno, "zero zone data (zero range)", off.value, path);
  if (!must) return false;
  std::vector<std::byte> zeros(std::min<std::uint64_t>(len_bytes, 1u << 20));
  for (std::uint64_t done = 0; done < len_bytes;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), len_bytes - done));
    CRYPTMAP_TRY_VOID(pwrite_all(fd, off + done, {zeros.data(), n}, path));
    done += n;
  }
  return true;
}

Result<std::vector<std::byte>> read_small_file(const std::string& path, std::size_t max_bytes) {
  int raw = -1;
  do {
    raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) return path_error(errno, "open zone sidecar", kNoObject, path);
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return path_error(errno, "stat zone sidecar", kNoObject, path);
  if (!S_ISREG(st.st_mode)) {
    return make_error_fmt(Errc::kCorrupt, "zone sidecar is not a regular file", kNoObject, "%s",
                          path.c_str());
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    return make_error_fmt(Errc::kCorrupt, "zone sidecar implausibly large",
                          static_cast<std::uint64_t>(st.st_size), "%s", path.c_str());
  }
  std::vector<std::byte> out(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return path_error(errno, "read zone sidecar", done, path);
    }
    if (n == 0) break;  // shrank under us: the decoder reports the truncation
    done += static_cast<std::size_t>(n);
  }
  out.resize(done);
  return out;
}

Result<void> write_file_atomic(const std::string& path, std::span<const std::byte> bytes) {
  const std::string tmp = path + ".tmp";
  int raw = -1;
  do {
    raw = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) return path_error(errno, "create zone sidecar temp file", kNoObject, tmp);
  UniqueFd fd(raw);
  CRYPTMAP_TRY_VOID(pwrite_all(fd.get(), ByteOffset{0}, bytes, tmp));
  while (::fsync(fd.get()) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::unlink(tmp.c_str());
    return path_error(err, "fsync zone sidecar temp file", kNoObject, tmp);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return path_error(err, "rename zone sidecar into place", kNoObject, path);
  }
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  do {
    raw = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) return path_error(errno, "open directory of zone sidecar", kNoObject, dir);
  UniqueFd dfd(raw);
  while (::fsync(dfd.get()) != 0) {
    if (errno == EINTR) continue;
    return path_error(errno, "fsync directory of zone sidecar", kNoObject, dir);
  }
  return ok();
}

}  // namespace cryptmap::volume::zone_internal

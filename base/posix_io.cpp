// Full-length I/O on file descriptors (posix_io.h).
#include "base/posix_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace cryptmap {

Error sys_error_on(int err, const char* what, std::uint64_t object, std::string_view name) {
  Error e = make_sys_error(err, what, object);
  set_detail(e, name);
  return e;
}

namespace {

auto pread_step(int fd) {
  return [fd](void* buf, std::size_t len, std::uint64_t off) -> ssize_t {
    const ssize_t n = ::pread(fd, buf, len, static_cast<off_t>(off));
    return n < 0 ? -errno : n;
  };
}

}  // namespace

Result<void> pread_full(int fd, std::uint64_t off, std::span<std::byte> out, const IoNames& names) {
  CRYPTMAP_TRY_VOID(read_loop(pread_step(fd), off, out, names, AtEof::kFail));
  return ok();
}

Result<std::size_t> pread_upto(int fd, std::uint64_t off, std::span<std::byte> out,
                               const IoNames& names) {
  return read_loop(pread_step(fd), off, out, names, AtEof::kStop);
}

Result<void> pwrite_full(int fd, std::uint64_t off, std::span<const std::byte> in,
                         const IoNames& names) {
  return write_loop(
      [fd](const void* buf, std::size_t len, std::uint64_t at) -> ssize_t {
        const ssize_t n = ::pwrite(fd, buf, len, static_cast<off_t>(at));
        return n < 0 ? -errno : n;
      },
      off, in, names);
}

Result<void> sync_fd(int fd, bool data_only, const IoNames& names) {
  while ((data_only ? ::fdatasync(fd) : ::fsync(fd)) != 0) {
    if (errno == EINTR) continue;
    return sys_error_on(errno, names.op, kNoObject, names.name);
  }
  return ok();
}

Result<int> open_retrying(const char* path, int flags, unsigned mode, const char* what) {
  int fd = -1;
  do {
    fd = ::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return sys_error_on(errno, what, kNoObject, path);
  return fd;
}

}  // namespace cryptmap

// Small-file I/O of the zone sidecar (internal/zone_io.h).
#include "volume/zone/internal/zone_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/posix_io.h"
#include "base/unique_fd.h"

namespace cryptmap::volume::zone_internal {

Result<std::vector<std::byte>> read_small_file(const std::string& path, std::size_t max_bytes) {
  CRYPTMAP_TRY(raw, open_retrying(path.c_str(), O_RDONLY | O_CLOEXEC, 0, "open zone sidecar"));
  UniqueFd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error_on(errno, "stat zone sidecar", kNoObject, path);
  if (!S_ISREG(st.st_mode)) {
    return make_error_fmt(Errc::kCorrupt, "zone sidecar is not a regular file", kNoObject, "%s",
                          path.c_str());
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    return make_error_fmt(Errc::kCorrupt, "zone sidecar implausibly large",
                          static_cast<std::uint64_t>(st.st_size), "%s", path.c_str());
  }
  std::vector<std::byte> out(static_cast<std::size_t>(st.st_size));
  // Shrank under us: pread_upto stops at end of file and the decoder reports the truncation.
  CRYPTMAP_TRY(done, pread_upto(fd.get(), 0, out, {.op = "read zone sidecar", .name = path}));
  out.resize(done);
  return out;
}

Result<void> write_file_atomic(const std::string& path, std::span<const std::byte> bytes) {
  const std::string tmp = path + ".tmp";
  CRYPTMAP_TRY(raw, open_retrying(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600,
                                  "create zone sidecar temp file"));
  UniqueFd fd(raw);
  auto written =
      pwrite_full(fd.get(), 0, bytes, {.op = "write zone sidecar temp file", .name = tmp});
  if (written)
    written = sync_fd(fd.get(), false, {.op = "fsync zone sidecar temp file", .name = tmp});
  if (!written) {
    ::unlink(tmp.c_str());
    return written;
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return sys_error_on(err, "rename zone sidecar into place", kNoObject, path);
  }
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  CRYPTMAP_TRY(dir_raw, open_retrying(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0,
                                      "open directory of zone sidecar"));
  UniqueFd dfd(dir_raw);
  CRYPTMAP_TRY_VOID(
      sync_fd(dfd.get(), false, {.op = "fsync directory of zone sidecar", .name = dir}));
  return ok();
}

}  // namespace cryptmap::volume::zone_internal

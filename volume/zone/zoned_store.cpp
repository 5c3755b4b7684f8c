// ZonedStore defaults and the open_zoned_store factory.
#include "volume/zone/zoned_store.h"

#include <sys/stat.h>

#include <cerrno>

#include "base/posix_io.h"

namespace cryptmap::volume {

Result<void> ZonedStore::open_zone(std::uint64_t index) {
  return make_error_fmt(Errc::kUnsupported, "open zone", index, "%s does not support OPEN ZONE",
                        name().c_str());
}

Result<void> ZonedStore::close_zone(std::uint64_t index) {
  return make_error_fmt(Errc::kUnsupported, "close zone", index, "%s does not support CLOSE ZONE",
                        name().c_str());
}

Result<std::unique_ptr<ZonedStore>> open_zoned_store(const std::string& path,
                                                     const ZonedStoreOptions& options) {
  struct stat st {};
  const bool exists = ::stat(path.c_str(), &st) == 0;
  const int stat_errno = exists ? 0 : errno;
  if (exists && S_ISBLK(st.st_mode)) return open_block_zoned_store(path, options);
  if (options.create) return open_emulated_zoned_store(path, options);
  if (!exists) return sys_error_on(stat_errno, "open zoned store", kNoObject, path);
  if (!S_ISREG(st.st_mode)) {
    return make_error_fmt(Errc::kInvalid, "open zoned store", kNoObject,
                          "%s is neither a regular file nor a block device", path.c_str());
  }
  struct stat side {};
  const std::string sidecar = zone_sidecar_path(path);
  if (::stat(sidecar.c_str(), &side) != 0) {
    return make_error_fmt(Errc::kNotFound, "not a zoned image: zone sidecar missing", kNoObject,
                          "%s: create one (zone size/count) or open as a plain image",
                          sidecar.c_str());
  }
  return open_emulated_zoned_store(path, options);
}

}  // namespace cryptmap::volume

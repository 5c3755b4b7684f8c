#include "volume/metadata_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>

#include "base/posix_io.h"

namespace cryptmap::volume {
namespace {

// The file whose flock is the lock: the image itself, or cryptsetup's per-device lock file.
UniqueFd open_lock_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return UniqueFd();
  if (S_ISBLK(st.st_mode)) {
    ::mkdir("/run/cryptsetup", 0700);
    const std::string res = "/run/cryptsetup/L_" + std::to_string(major(st.st_rdev)) + ":" +
                            std::to_string(minor(st.st_rdev));
    return UniqueFd(::open(res.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  }
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

}  // namespace

MetadataLock MetadataLock::take(const std::string& path, bool exclusive) {
  MetadataLock l;
  l.fd_ = open_lock_file(path);
  if (l.fd_.valid()) {
    while (::flock(l.fd_.get(), exclusive ? LOCK_EX : LOCK_SH) != 0 && errno == EINTR) {
    }
  }
  return l;
}

Result<MetadataLock> MetadataLock::try_take(const std::string& path, bool exclusive) {
  MetadataLock l;
  l.fd_ = open_lock_file(path);
  if (!l.fd_.valid() && errno == ENOENT) return l;  // no such file (an NBD URI): as take()
  if (!l.fd_.valid()) return fail(sys_error_on(errno, "open metadata lock", kNoObject, path));
  while (::flock(l.fd_.get(), (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK)
      return fail(make_error_fmt(Errc::kBusy, "metadata lock", kNoObject,
                                 "the metadata of %s is locked by another process", path.c_str()));
    return fail(sys_error_on(errno, "metadata lock (flock)", kNoObject, path));
  }
  return l;
}

Result<ReencryptLock> ReencryptLock::try_take(const std::string& uuid, bool exclusive) {
  ReencryptLock l;
  if (uuid.empty() || uuid.find('/') != std::string::npos) return l;
  ::mkdir("/run/cryptsetup", 0700);
  const std::string res = "/run/cryptsetup/LN_LUKS2-reencryption-" + uuid;
  l.fd_ = UniqueFd(::open(res.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!l.fd_.valid()) return l;  // no lock directory for this user: run without, as cryptsetup
  while (::flock(l.fd_.get(), (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK)
      return fail(make_error_fmt(Errc::kBusy, "reencryption lock", kNoObject,
                                 "LUKS2 volume %s: reencrypted or served in another process",
                                 uuid.c_str()));
    return fail(sys_error_on(errno, "reencryption lock (flock)", kNoObject, res));
  }
  return l;
}

}  // namespace cryptmap::volume

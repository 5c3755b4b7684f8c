#include "base/exit_code.h"

#include <cerrno>

namespace cryptmap {

int exit_code_for(const Error& e) noexcept {
  switch (e.code) {
    case Errc::kBadKey:
      return kExitPermission;
    case Errc::kBusy:
      return kExitBusy;
    case Errc::kNotFound:
      return kExitBadDevice;
    case Errc::kIo:
      if (e.sys_errno == ENOENT || e.sys_errno == EACCES || e.sys_errno == ENOTDIR ||
          e.sys_errno == ENXIO || e.sys_errno == EPERM)
        return kExitBadDevice;
      return kExitUsage;
    case Errc::kNoSpace:
      return e.sys_errno == ENOMEM || e.sys_errno == EAGAIN ? kExitNoMemory : kExitUsage;
    default:
      return kExitUsage;
  }
}

}  // namespace cryptmap

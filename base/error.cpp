#include "base/error.h"

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace cryptmap {

Error make_error(Errc code, const char* what, std::uint64_t object) {
  Error e;
  e.code = code;
  e.what = what;
  e.object = object;
  return e;
}

Error make_sys_error(int sys_errno, const char* what, std::uint64_t object) {
  Errc code = Errc::kIo;
  switch (sys_errno) {
    case ENOSPC:
    case EDQUOT:
      code = Errc::kNoSpace;
      break;
    case EROFS:
    case EACCES:
    case EPERM:
      code = Errc::kReadOnly;
      break;
    case ENOENT:
    case ENXIO:
    case ENODEV:
      code = Errc::kNotFound;
      break;
    case EBUSY:
    case EAGAIN:
      code = Errc::kBusy;
      break;
    case EINVAL:
    case EFBIG:
    case ENAMETOOLONG:
      code = Errc::kInvalid;
      break;
    case ENOTSUP:
      code = Errc::kUnsupported;
      break;
    default:
      code = Errc::kIo;
      break;
  }
  Error e = make_error(code, what, object);
  e.sys_errno = sys_errno;
  return e;
}

namespace {

// A detail that did not fit ends in the mark, so a reader sees it was cut.
void mark_truncated(Error& e) noexcept {
  const std::size_t end = e.detail.size() - 1;
  std::memcpy(e.detail.data() + end - kTruncationMark.size(), kTruncationMark.data(),
              kTruncationMark.size());
  e.detail[end] = '\0';
}

}  // namespace

Error make_error_fmt(Errc code, const char* what, std::uint64_t object, const char* fmt, ...) {
  Error e = make_error(code, what, object);
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(e.detail.data(), e.detail.size(), fmt, ap);
  va_end(ap);
  if (n > 0 && static_cast<std::size_t>(n) >= e.detail.size()) mark_truncated(e);
  return e;
}

void set_detail(Error& e, std::string_view text) noexcept {
  const std::size_t n = std::min(text.size(), e.detail.size() - 1);
  std::memcpy(e.detail.data(), text.data(), n);
  e.detail[n] = '\0';
  if (n < text.size()) mark_truncated(e);
}

std::string Error::message() const {
  std::string m = what;
  if (object != kNoObject) {
    m += " [";
    m += std::to_string(object);
    m += "]";
  }
  if (detail[0] != '\0') {
    m += ": ";
    m += detail.data();
  }
  if (sys_errno != 0) {
    char buf[128];
    m += " (";
    m += strerror_r(sys_errno, buf, sizeof buf);
    m += ")";
  }
  return m;
}

int to_errno(const Error& e) noexcept {
  switch (e.code) {
    case Errc::kIo:
      return EIO;
    case Errc::kNoSpace:
      return ENOSPC;
    case Errc::kReadOnly:
      return EROFS;
    case Errc::kAuth:
      return EIO;  // dm-crypt: BLK_STS_PROTECTION surfaces as EIO (EILSEQ internally)
    case Errc::kCorrupt:
      return EIO;
    case Errc::kBadKey:
      return EPERM;
    case Errc::kUnsupported:
      return EOPNOTSUPP;
    case Errc::kInvalid:
      return EINVAL;
    case Errc::kZoneOrder:
      return EIO;  // a host-managed drive fails unaligned writes with EIO
    case Errc::kBusy:
      return EBUSY;
    case Errc::kCancelled:
      return ECANCELED;
    case Errc::kNotFound:
      return ENOENT;
  }
  return EIO;
}

std::string_view errc_name(Errc code) noexcept {
  switch (code) {
    case Errc::kIo:
      return "I/O error";
    case Errc::kNoSpace:
      return "no space";
    case Errc::kReadOnly:
      return "read-only";
    case Errc::kAuth:
      return "integrity check failed";
    case Errc::kCorrupt:
      return "corrupt";
    case Errc::kBadKey:
      return "bad key";
    case Errc::kUnsupported:
      return "unsupported";
    case Errc::kInvalid:
      return "invalid";
    case Errc::kZoneOrder:
      return "zone order violation";
    case Errc::kBusy:
      return "busy";
    case Errc::kCancelled:
      return "cancelled";
    case Errc::kNotFound:
      return "not found";
  }
  return "unknown";
}

}  // namespace cryptmap

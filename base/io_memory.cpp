#include "base/io_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace cryptmap {

bool prefault_io_memory(void* p, std::size_t len) noexcept {
  if (len == 0) return true;
  if (::mlock(p, len) == 0) {
    // mlock populates the whole range, except under sanitizer runtimes, which turn mlock()
    // into a no-op that reports success: populate for sure (a page-table walk otherwise).
    (void)::madvise(p, len, MADV_POPULATE_WRITE);
    return true;
  }
  const int mlock_errno = errno;
  if (::madvise(p, len, MADV_POPULATE_WRITE) != 0) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    auto* bytes = static_cast<volatile unsigned char*>(p);
    for (std::size_t off = 0; off < len; off += page) bytes[off] = 0;
  }
  errno = mlock_errno;  // the caller reports why it is not locked
  return false;
}

}  // namespace cryptmap

#include "base/io_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace cryptmap {

bool prefault_io_memory(void* p, std::size_t len) noexcept {
  if (len == 0) return true;
  if (::mlock(p, len) == 0) return true;  // mlock populates the whole range
  if (::madvise(p, len, MADV_POPULATE_WRITE) == 0) return false;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto* bytes = static_cast<volatile unsigned char*>(p);
  for (std::size_t off = 0; off < len; off += page) bytes[off] = 0;
  return false;
}

}  // namespace cryptmap

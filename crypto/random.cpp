#include "crypto/random.h"

#include <sys/random.h>

#include <cerrno>

namespace cryptmap::crypto {

Result<void> random_bytes(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_sys_error(errno, "read random bytes (getrandom)");
    }
    done += static_cast<std::size_t>(n);
  }
  return ok();
}

}  // namespace cryptmap::crypto

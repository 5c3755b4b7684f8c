#include "base/check.h"

#include <cstdio>
#include <cstdlib>

namespace cryptmap::detail {
void check_failed(const char* cond, const char* file, int line) noexcept {
  std::fprintf(stderr, "cryptmap: BUG: check failed: %s at %s:%d\n", cond, file, line);
  std::abort();
}
}  // namespace cryptmap::detail

#include "fs/cli/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cryptmap::fs {

bool Progress::wanted(const CommandContext& ctx) {
  return !ctx.batch_mode && ::isatty(STDERR_FILENO) == 1;
}

void Progress::step(int i, int n, const std::string& what) {
  if (!enabled_) return;
  std::fprintf(stderr, "[%d/%d] %s\n", i, n, what.c_str());
  std::fflush(stderr);
}

}  // namespace cryptmap::fs

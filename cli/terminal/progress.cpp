#include "cli/terminal/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cryptmap::cli {

bool Progress::wanted(const CommandContext& ctx) {
  return !ctx.batch_mode && ::isatty(STDERR_FILENO) == 1;
}

void Progress::step(int i, int n, const std::string& what) {
  if (!enabled_) return;
  std::fprintf(stderr, "[%d/%d] %s\n", i, n, what.c_str());
  std::fflush(stderr);
}

void Progress::percent(const std::string& what, std::uint64_t done, std::uint64_t total) {
  if (!enabled_ || total == 0) return;
  const int pct = static_cast<int>(done * 100 / total);
  if (pct == last_percent_) return;
  last_percent_ = pct;
  std::fprintf(stderr, "\r%s: %3d%% (%llu of %llu MiB)%s", what.c_str(), pct,
               static_cast<unsigned long long>(done >> 20),
               static_cast<unsigned long long>(total >> 20), done >= total ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace cryptmap::cli

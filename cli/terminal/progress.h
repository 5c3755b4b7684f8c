// Progress lines for long CLI operations (vault create, ...): on a terminal the user sees what
// step runs and how far it is; in scripts, services and with --batch-mode nothing is printed,
// so captured output stays clean.
//
// Lines go to stderr (stdout stays for results), one whole line per step, so a passphrase
// prompt from a step's subprocess never lands in the middle of one.
//
// Thread-safety: one object per operation, used from one thread.
#pragma once

#include <cstdint>
#include <string>

#include "cli/commands.h"

namespace cryptmap::cli {

class Progress {
 public:
  // Shown when stderr is a terminal and the user did not ask for --batch-mode.
  static bool wanted(const CommandContext& ctx);

  explicit Progress(bool enabled) : enabled_(enabled) {}

  // "[i/n] what" as one line.
  void step(int i, int n, const std::string& what);
  // "\rwhat: P% (D of T MiB)", redrawn in place when the percentage changes; a newline at the
  // end (done == total).
  void percent(const std::string& what, std::uint64_t done, std::uint64_t total);
  bool enabled() const noexcept { return enabled_; }

 private:
  bool enabled_;
  int last_percent_ = -1;
};

}  // namespace cryptmap::cli

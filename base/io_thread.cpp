#include "base/io_thread.h"

#include <spdlog/spdlog.h>
#include <sys/prctl.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace cryptmap {

namespace {
// 0 = not tried on this thread (or only quietly), 1 = marked, 2 = failed and logged.
thread_local int io_thread_state = 0;
}  // namespace

bool mark_io_thread_quietly() noexcept {
  if (io_thread_state == 0 && ::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0) io_thread_state = 1;
  return io_thread_state == 1;
}

bool mark_io_thread() noexcept {
  if (io_thread_state != 0) return io_thread_state == 1;
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0) {
    io_thread_state = 1;
    return true;
  }
  const int err = errno;
  io_thread_state = 2;
  static std::atomic<bool> logged{false};
  if (!logged.exchange(true)) {
    char buf[128];
    spdlog::warn(
        "cannot mark I/O threads with PR_SET_IO_FLUSHER ({}); under memory pressure the "
        "daemon may stall writeback it serves. Run with CAP_SYS_RESOURCE to avoid this.",
        strerror_r(err, buf, sizeof buf));
  }
  return false;
}

}  // namespace cryptmap

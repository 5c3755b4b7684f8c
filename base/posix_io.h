// Full-length I/O on file descriptors: the one place the "retry EINTR, continue short transfers"
// loop lives, so every caller reports failures the same way.
//
// Contract:
//   - pread_full / pwrite_full move exactly the span at the given absolute offset, or fail.
//     EINTR is retried; a short transfer is continued from where it stopped.
//   - A read that meets end of file first fails with Errc::kIo, sys_errno 0 and
//     `IoNames::past_end` as `what` (distinct from a syscall failure, which carries errno and
//     `IoNames::op`); object = the offset at which the file ended.
//   - pread_upto stops quietly at end of file and returns how many bytes it read.
//   - A write that makes no progress is ENOSPC (how a full device shows itself).
//   - Every error names the operation (`what`), the absolute byte offset (`object`) and the file
//     (`detail`, truncated to fit), so a user sees which file failed where.
// read_loop / write_loop run the same loop over any step function: device seams that are not
// plain fds, an fd chosen per step, non-positional fds such as pipes.
// Thread-safety: no state; positional I/O on a shared fd is safe from any number of threads.
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"

namespace cryptmap {

// What a failed transfer says about itself. Both strings are static (Error::what keeps the
// pointer); `name` is copied into the error.
struct IoNames {
  const char* op;                                          // "read image"
  const char* past_end = "read past the end of the file";  // a read that met end of file
  std::string_view name = {};                              // the file or device path
};

// An Error from a failed syscall: code from errno, `what`, `object`, `name` in the detail.
Error sys_error_on(int err, const char* what, std::uint64_t object, std::string_view name);

enum class AtEof { kFail, kStop };

// A step moves up to `len` bytes at absolute offset `off` and returns the count, 0 at end of
// file, or -errno: ssize_t step(void* buf, std::size_t len, std::uint64_t off).
template <class Step>
Result<std::size_t> read_loop(Step&& step, std::uint64_t off, std::span<std::byte> out,
                              const IoNames& names, AtEof at_eof) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = step(out.data() + done, out.size() - done, off + done);
    if (n == -EINTR) continue;
    if (n < 0) return sys_error_on(static_cast<int>(-n), names.op, off + done, names.name);
    if (n == 0) {
      if (at_eof == AtEof::kStop) break;
      Error e = sys_error_on(0, names.past_end, off + done, names.name);
      e.code = Errc::kIo;
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  return done;
}

// ssize_t step(const void* buf, std::size_t len, std::uint64_t off), as for read_loop.
template <class Step>
Result<void> write_loop(Step&& step, std::uint64_t off, std::span<const std::byte> in,
                        const IoNames& names) {
  std::size_t done = 0;
  while (done < in.size()) {
    const ssize_t n = step(in.data() + done, in.size() - done, off + done);
    if (n == -EINTR) continue;
    if (n < 0) return sys_error_on(static_cast<int>(-n), names.op, off + done, names.name);
    if (n == 0) return sys_error_on(ENOSPC, names.op, off + done, names.name);
    done += static_cast<std::size_t>(n);
  }
  return ok();
}

// pread/pwrite on `fd` through the loops above.
Result<void> pread_full(int fd, std::uint64_t off, std::span<std::byte> out, const IoNames& names);
Result<std::size_t> pread_upto(int fd, std::uint64_t off, std::span<std::byte> out,
                               const IoNames& names);
Result<void> pwrite_full(int fd, std::uint64_t off, std::span<const std::byte> in,
                         const IoNames& names);

// fdatasync (data_only) or fsync, EINTR retried; errors as above with object = kNoObject.
Result<void> sync_fd(int fd, bool data_only, const IoNames& names);

// open(2) with EINTR retried; a failure names `path` with `what`.
Result<int> open_retrying(const char* path, int flags, unsigned mode, const char* what);

}  // namespace cryptmap

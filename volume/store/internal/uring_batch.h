// UringRings — the io_uring instances a PosixBackingStore submits its batches to.
//
//   auto rings = UringRings::create(kRings, kEntries);  // at open; an error means: use the loop
//   if (!rings->run(view, /*write=*/false)) { ...no ring free: run the plain loop... }
//
// A batch borrows one whole ring for its duration, so its completions are its own (no thread
// ever reaps another's) and everything it needs — the ring, a fixed array of in-flight slots —
// exists from open on: nothing on the I/O path allocates. A batch larger than the ring waits
// for completions and submits the rest (a full ring waits, never fails). Short transfers are
// continued and -EINTR/-EAGAIN completions resubmitted; each piece ends in exactly one
// BatchView::finish (which may do the caller's work on the piece while others are in flight). A
// staged view prepares each piece just before it is submitted. With every ring busy, run() returns
// false at once and the caller runs the batch itself. A ring that refuses io_uring_enter for good
// fails the batch's unfinished pieces, but only once the kernel is done with each piece's buffer
// (cancelled or completed; never while a transfer may still land in it), and is retired.
// docs/async-store-io.md has the why, the IO_FLUSHER finding and the fallback.
//
// Thread-safety: run() from any number of threads; create() and destruction are not concurrent
// with run().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "base/result.h"

namespace cryptmap::volume {

// What a batch looks like to the rings: pieces 0..size()-1, each one transfer.
class BatchView {
 public:
  // finish()'s `err` when a read met the end of the file before its piece was complete.
  static constexpr int kPastEnd = -1;

  virtual std::size_t size() const noexcept = 0;
  virtual std::byte* buf(std::size_t i) const noexcept = 0;
  virtual std::size_t len(std::size_t i) const noexcept = 0;
  virtual std::uint64_t off(std::size_t i) const noexcept = 0;
  // The fd for the rest of a piece (it may change after a short transfer, as alignment does).
  virtual int fd_for(std::uint64_t off, const void* buf, std::size_t len) const noexcept = 0;
  // Called once per piece: err 0 (done), an errno, or kPastEnd; `at` = where it stopped.
  virtual void finish(std::size_t i, int err, std::uint64_t at) noexcept = 0;
  // Staged batches (a view whose staged() is true) get prepare(i) before piece i is submitted,
  // in piece order, and each piece is submitted as soon as it is prepared, so the kernel works
  // on it while the next one is prepared. prepare() false: the view has finished piece i and
  // every later piece itself (not submitted); the ring submits nothing more of the batch.
  virtual bool staged() const noexcept { return false; }
  virtual bool prepare(std::size_t i) noexcept {
    (void)i;
    return true;
  }

 protected:
  ~BatchView() = default;
};

class UringRings {
 public:
  // `count` rings of `entries` submission slots each, set up by the calling thread. Fails (errno in
  // the error) where io_uring is unavailable: disabled by the kernel.io_uring_disabled sysctl,
  // filtered by seccomp, an old kernel; or when the environment variable
  // CRYPTMAP_IO_URING_FAIL_SETUP=1 asks for that (tests of the fallback).
  static Result<std::unique_ptr<UringRings>> create(unsigned count, unsigned entries);
  ~UringRings();

  // Runs every piece of `view` on a free ring and returns true when all have finished; false
  // (nothing done) when every ring is busy.
  bool run(BatchView& view, bool write) noexcept;

  // Test seam: the next io_uring_enter of run() that would submit and wait fails with `err`, as
  // from a broken ring: after the batch's prepared transfers were submitted (kAfterSubmit: they
  // are in the kernel) or before (kBeforeSubmit: they are still in the submission queue).
  enum class EnterFault { kAfterSubmit, kBeforeSubmit };
  void fail_next_enter_for_testing(EnterFault where, int err) noexcept;

  struct Ring;

 private:
  UringRings() = default;
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cryptmap::volume

// UringRings (internal/uring_batch.h): fixed rings, one batch per ring at a time.
#include "volume/store/internal/uring_batch.h"

#include <liburing.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/check.h"
#include "base/mutex.h"
#include "base/posix_io.h"

namespace cryptmap::volume {
namespace {

// One SQE moves at most this much (its length field is 32 bits); the rest is a continuation.
constexpr std::size_t kMaxTransfer = std::size_t{1} << 30;

// Submission errors that mean "try again" (io_uring_enter(2)): interrupted, no request memory
// for the moment, completions to reap first.
bool transient(int err) { return err == EINTR || err == EAGAIN || err == EBUSY; }

// user_data of the SQEs that belong to no slot (a failed batch's cancellation and the no-ops it
// leaves in the submission queue, below): their completions are dropped.
constexpr std::uint64_t kNoSlot = ~std::uint64_t{0};

}  // namespace

struct UringRings::Ring {
  struct Slot {
    std::size_t piece = 0;
    std::size_t done = 0;
  };
  io_uring ring{};
  bool live = false;
  std::vector<Slot> slots;           // one per submission entry, sized at create()
  std::vector<unsigned> free_slots;  // capacity reserved at create()
};

class UringRings::Impl {
 public:
  std::vector<std::unique_ptr<Ring>> rings;
  Mutex mu;
  std::vector<Ring*> free GUARDED_BY(mu);  // capacity reserved at create()
  // fail_next_enter_for_testing(): 0, or the errno and where (kBeforeSubmit negative).
  std::atomic<int> fault{0};

  Ring* acquire() {
    MutexLock lock(mu);
    if (free.empty()) return nullptr;
    Ring* r = free.back();
    free.pop_back();
    return r;
  }
  void release(Ring* r) {
    MutexLock lock(mu);
    free.push_back(r);
  }
};

Result<std::unique_ptr<UringRings>> UringRings::create(unsigned count, unsigned entries) {
  if (const char* f = std::getenv("CRYPTMAP_IO_URING_FAIL_SETUP"); f != nullptr && f[0] == '1') {
    return sys_error_on(EPERM, "set up io_uring (CRYPTMAP_IO_URING_FAIL_SETUP=1)", kNoObject, "");
  }
  std::unique_ptr<UringRings> self(new UringRings());
  self->impl_ = std::make_unique<Impl>();
  Impl& impl = *self->impl_;
  // Created by the opening thread, unmarked: an io-wq worker copies the flags of the thread that
  // submits to the ring, never those of the ring's creator (docs/async-store-io.md §3), and every
  // thread that submits here is marked. Marking here would only log a useless warning in CLI
  // commands without CAP_SYS_RESOURCE.
  int err = 0;
  for (unsigned i = 0; i < count && err == 0; ++i) {
    auto r = std::make_unique<Ring>();
    if (const int rc = io_uring_queue_init(entries, &r->ring, 0); rc < 0) {
      err = -rc;
      break;
    }
    r->live = true;
    const unsigned n = r->ring.sq.ring_entries;
    r->slots.resize(n);
    r->free_slots.reserve(n);
    for (unsigned s = n; s-- > 0;) r->free_slots.push_back(s);
    impl.rings.push_back(std::move(r));
  }
  if (err != 0) return sys_error_on(err, "set up io_uring (io_uring_queue_init)", kNoObject, "");
  MutexLock lock(impl.mu);
  impl.free.reserve(impl.rings.size());
  for (auto& r : impl.rings) impl.free.push_back(r.get());
  return self;
}

UringRings::~UringRings() {
  if (!impl_) return;
  for (auto& r : impl_->rings) {
    if (r->live) io_uring_queue_exit(&r->ring);
  }
}

bool UringRings::run(BatchView& v, bool write) noexcept {
  Ring* r = impl_->acquire();
  if (r == nullptr) return false;
  const std::size_t n = v.size();
  std::size_t next = 0;  // first piece not yet started
  std::size_t busy = 0;  // slots whose transfer is submitted or prepared
  // Prepares the rest of slot `s`'s piece. An SQE is always there: a slot has at most one
  // unconsumed SQE and there are as many slots as SQ entries.
  auto prep = [&](unsigned s) {
    io_uring_sqe* sqe = io_uring_get_sqe(&r->ring);
    CRYPTMAP_CHECK(sqe != nullptr);
    const Ring::Slot& slot = r->slots[s];
    std::byte* b = v.buf(slot.piece) + slot.done;
    const std::size_t len = std::min(v.len(slot.piece) - slot.done, kMaxTransfer);
    const std::uint64_t at = v.off(slot.piece) + slot.done;
    const int fd = v.fd_for(at, b, len);
    if (write) {
      io_uring_prep_write(sqe, fd, b, static_cast<unsigned>(len), at);
    } else {
      io_uring_prep_read(sqe, fd, b, static_cast<unsigned>(len), at);
    }
    io_uring_sqe_set_data64(sqe, s);
  };
  auto done_with = [&](unsigned s, int err) {
    const Ring::Slot& slot = r->slots[s];
    v.finish(slot.piece, err, v.off(slot.piece) + slot.done);
    r->free_slots.push_back(s);
    --busy;
  };
  // The ring refused io_uring_enter for good (EBADFD, ENXIO, EOWNERDEAD: not seen in practice;
  // or the test fault). Requests of the batch may still be in the kernel, and a read in flight
  // writes its buffer whenever it completes: a buffer may go back to the caller only after its
  // request's completion was reaped, cancelled or not (axboe/liburing#733); closing the ring
  // would not wait for them either (it cancels in the background: axboe/liburing#329). So:
  //  1. the SQEs the kernel has not consumed yet (from its head to our tail: without SQPOLL it
  //     consumes them only inside our io_uring_enter) become no-ops, which touch no buffer:
  //     their pieces fail at once;
  //  2. one IORING_OP_ASYNC_CANCEL of every request of the ring (IORING_ASYNC_CANCEL_ANY, Linux
  //     5.19; an older kernel fails just the cancellation) ends what can be ended early, a read
  //     waiting for data;
  //  3. every other piece fails when its completion is reaped (a piece whose transfer had
  //     completed in full keeps its success): io_uring_wait_cqe, and where the ring refuses that
  //     too, a look at the completion queue every millisecond (the kernel posts a completion by
  //     task work that runs whenever this thread leaves a system call). Waiting for a request
  //     that never ends would hang this batch; handing its buffer back would corrupt memory.
  // Then the pieces not started fail too, and the ring is retired (never given back).
  auto fail_batch = [&](int err) {
    io_uring_sq& sq = r->ring.sq;
    for (unsigned i = *sq.khead; i != sq.sqe_tail; ++i) {
      io_uring_sqe* sqe = &sq.sqes[i & sq.ring_mask];
      const std::uint64_t s = sqe->user_data;
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data64(sqe, kNoSlot);
      if (s != kNoSlot) done_with(static_cast<unsigned>(s), err);
    }
    if (busy > 0) {
      if (io_uring_sqe* sqe = io_uring_get_sqe(&r->ring); sqe != nullptr) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, kNoSlot);
        (void)io_uring_submit(&r->ring);
      }
    }
    while (busy > 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_peek_cqe(&r->ring, &cqe) != 0) {
        const int rc = io_uring_wait_cqe(&r->ring, &cqe);
        if (rc < 0 && !transient(-rc) && rc != -ETIME) {
          const timespec ms{0, 1000 * 1000};
          (void)nanosleep(&ms, nullptr);
        }
        continue;
      }
      const std::uint64_t s = io_uring_cqe_get_data64(cqe);
      const int res = cqe->res;
      io_uring_cqe_seen(&r->ring, cqe);
      if (s == kNoSlot) continue;
      const Ring::Slot& slot = r->slots[s];
      const bool complete =
          res > 0 && slot.done + static_cast<std::size_t>(res) == v.len(slot.piece);
      done_with(static_cast<unsigned>(s), complete ? 0 : err);
    }
    for (; next < n; ++next) v.finish(next, err, v.off(next));
  };
  // The enter of the loop below, or the test fault instead of it.
  auto submit_and_wait = [&]() -> int {
    if (impl_->fault.load(std::memory_order_relaxed) == 0) {
      return io_uring_submit_and_wait(&r->ring, 1);
    }
    const int f = impl_->fault.exchange(0);
    if (f > 0) (void)io_uring_submit(&r->ring);  // kAfterSubmit: in flight, then the error
    return f > 0 ? -f : f;
  };
  const bool staged = v.staged();
  unsigned spins = 0;
  for (;;) {
    while (next < n && !r->free_slots.empty()) {
      if (staged && !v.prepare(next)) {
        next = n;  // the view finished this piece and the rest
        break;
      }
      if (v.len(next) == 0) {
        v.finish(next, 0, v.off(next));
        ++next;
        continue;
      }
      const unsigned s = r->free_slots.back();
      r->free_slots.pop_back();
      r->slots[s] = {next, 0};
      prep(s);
      ++next;
      ++busy;
      // A staged piece goes to the kernel now, before the next one is prepared. An error here
      // is the one io_uring_submit_and_wait below meets and handles: the SQE stays queued.
      if (staged && next < n) (void)io_uring_submit(&r->ring);
    }
    if (busy == 0) break;
    const int rc = submit_and_wait();
    if (rc < 0 && !transient(-rc)) {
      fail_batch(-rc);
      return true;
    }
    if (rc < 0 && -rc != EINTR && ++spins > 16) sched_yield();  // EAGAIN/EBUSY: let others run
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
      const auto s = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
      const int res = cqe->res;
      io_uring_cqe_seen(&r->ring, cqe);
      Ring::Slot& slot = r->slots[s];
      if (res == -EINTR || res == -EAGAIN) {
        prep(s);  // resubmitted as it was
      } else if (res < 0) {
        done_with(s, -res);
      } else if (res == 0) {
        done_with(s, write ? ENOSPC : BatchView::kPastEnd);  // as write_loop / read_loop
      } else {
        slot.done += static_cast<std::size_t>(res);
        if (slot.done < v.len(slot.piece)) {
          prep(s);  // a short transfer: continue from where it stopped
        } else {
          done_with(s, 0);
        }
      }
    }
  }
  impl_->release(r);
  return true;
}

void UringRings::fail_next_enter_for_testing(EnterFault where, int err) noexcept {
  impl_->fault.store(where == EnterFault::kAfterSubmit ? err : -err);
}

}  // namespace cryptmap::volume

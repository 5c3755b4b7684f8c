// UringRings (internal/uring_batch.h): fixed rings, one batch per ring at a time.
#include "volume/store/internal/uring_batch.h"

#include <liburing.h>
#include <sched.h>

#include <algorithm>
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
    const int rc = io_uring_submit_and_wait(&r->ring, 1);
    if (rc < 0 && !transient(-rc)) {
      // Not seen in practice (a broken ring: EBADFD, ENXIO). Nothing more can be submitted or
      // reaped; the unfinished pieces fail with the error, and the ring is retired (never given
      // back), so nobody submits its leftover SQEs later.
      for (unsigned s = 0; s < r->slots.size(); ++s) {
        if (std::find(r->free_slots.begin(), r->free_slots.end(), s) == r->free_slots.end()) {
          done_with(s, -rc);
        }
      }
      for (; next < n; ++next) v.finish(next, -rc, v.off(next));
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

}  // namespace cryptmap::volume

// RangeLock — orders requests on overlapping sector ranges (gocryptfs ContentLock, refined to
// ranges; nbdkit's single RMW lock, refined).
//
// A request registers [begin, end) as shared (reads) or exclusive (writes, which may
// read-modify-write partial sectors). Registration takes a ticket; a request proceeds when no
// *earlier* ticket with an overlapping range conflicts with it (shared+shared never conflicts).
// Hence overlapping writes run in arrival order at the lock, readers never starve writers, and
// there is no deadlock (every wait points to an earlier ticket).
//
// The table has a fixed number of slots, sized at open: acquiring when every slot is taken waits
// (admission backpressure) and nothing is allocated.
//
// Thread-safety: fully thread-safe. Guard is move-only; destroying it releases the range.
// Lock order: RangeLock is taken before any cache shard mutex and before the crypto pools;
// never while holding them.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "base/mutex.h"

namespace cryptmap::volume {

class RangeLock {
 public:
  explicit RangeLock(std::size_t slots);
  RangeLock(const RangeLock&) = delete;
  RangeLock& operator=(const RangeLock&) = delete;

  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& o) noexcept : lock_(std::exchange(o.lock_, nullptr)), slot_(o.slot_) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        release();
        lock_ = std::exchange(o.lock_, nullptr);
        slot_ = o.slot_;
      }
      return *this;
    }
    ~Guard() { release(); }
    void release() noexcept;
    explicit operator bool() const noexcept { return lock_ != nullptr; }

   private:
    friend class RangeLock;
    Guard(RangeLock* l, std::size_t s) : lock_(l), slot_(s) {}
    RangeLock* lock_ = nullptr;
    std::size_t slot_ = 0;
  };

  // Blocks until the range may be used. REQUIRES: begin < end.
  Guard acquire(std::uint64_t begin, std::uint64_t end, bool exclusive) EXCLUDES(mu_);
  // Never blocks: an empty Guard when a slot or the range is not available right now.
  Guard try_acquire(std::uint64_t begin, std::uint64_t end, bool exclusive) EXCLUDES(mu_);

  std::size_t slots() const noexcept { return slot_count_; }
  // Tickets taken and not released (holders and waiters): for tests and diagnostics.
  std::size_t tickets() EXCLUDES(mu_);

 private:
  struct Slot {
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
    std::uint64_t ticket = 0;
    bool exclusive = false;
    bool used = false;
  };
  bool blocked(std::size_t self) const REQUIRES(mu_);
  void release(std::size_t slot) noexcept EXCLUDES(mu_);

  const std::size_t slot_count_;  // slots_.size(), fixed at construction: read without mu_
  Mutex mu_;
  CondVar cv_;
  std::vector<Slot> slots_ GUARDED_BY(mu_);
  std::vector<std::size_t> free_ GUARDED_BY(mu_);
  std::uint64_t next_ticket_ GUARDED_BY(mu_) = 0;
};

}  // namespace cryptmap::volume

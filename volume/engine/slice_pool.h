// SlicePool — a fixed set of worker threads that run the slices of a fan-out (slice i for every
// i in [0, n)), and sleep when nothing is posted.
//
//  * post(f) queues a fan-out and wakes as many sleeping workers as it has slices; run(f) posts
//    it and joins it; join(f) has the calling thread claim the slices no worker took yet, then
//    blocks until every slice of f has returned. A fan-out is therefore always finished by
//    its joiner even when every worker is busy or blocked: no slice waits for a free worker.
//  * Idle workers block on a condition variable: they do not spin or yield while the volume
//    is idle or between requests (issue #13: TBB's idle workers spent ~20 % of the daemon's
//    samples in sched_yield). A worker marks itself with mark_io_thread() before its first
//    slice (docs/architecture.md §4.1).
//  * Nothing allocates after construction: a FanOut is caller-owned (on the caller's
//    stack) and linked into the queue intrusively.
//
// Thread-safety: post/join/run from any number of threads at once. A FanOut is posted at most
// once and joined exactly once; it must stay alive until join() returns.
#pragma once

#include <cstddef>
#include <thread>
#include <vector>

#include "base/mutex.h"

namespace cryptmap::volume {

class SlicePool {
 public:
  class FanOut {
   public:
    using Fn = void (*)(void* context, std::size_t slice);
    void set(std::size_t slices, Fn fn, void* context) noexcept {
      n_ = slices;
      fn_ = fn;
      context_ = context;
    }

   private:
    friend class SlicePool;
    std::size_t n_ = 0;
    Fn fn_ = nullptr;
    void* context_ = nullptr;
    // Owned by the pool's mutex while posted.
    std::size_t next_ = 0;  // the next slice to claim
    std::size_t done_ = 0;  // slices that returned
    FanOut* prev_ = nullptr;
    FanOut* after_ = nullptr;
    bool queued_ = false;
    CondVar finished_;
  };

  // Starts `workers` threads (std::system_error when the system refuses one).
  explicit SlicePool(unsigned workers);
  ~SlicePool();  // REQUIRES: nothing posted and not joined; stops and joins the workers
  SlicePool(const SlicePool&) = delete;
  SlicePool& operator=(const SlicePool&) = delete;

  void post(FanOut& f) EXCLUDES(mu_);
  void join(FanOut& f) EXCLUDES(mu_);
  void run(FanOut& f) EXCLUDES(mu_) {
    post(f);
    join(f);
  }

 private:
  void work() EXCLUDES(mu_);
  // Claims f's next slice; unlinks f from the queue when it was the last one.
  std::size_t claim(FanOut& f) REQUIRES(mu_);
  void unlink(FanOut& f) REQUIRES(mu_);

  Mutex mu_;
  CondVar work_;
  FanOut* head_ GUARDED_BY(mu_) = nullptr;
  FanOut* tail_ GUARDED_BY(mu_) = nullptr;
  bool stop_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace cryptmap::volume

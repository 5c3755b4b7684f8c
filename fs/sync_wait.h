// Blocking on an asynchronous volume::Volume call, for the control plane (flush on close),
// the FUSE write path (which must keep libfuse's receive buffer alive until the volume is done
// with it) and tests.
//
// SyncWaiter: one-shot signal. signal() may run on any thread and is the completion's last
// touch of the waiter, so the waiter may live on the waiting thread's stack.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <utility>

#include "base/result.h"
#include "volume/volume.h"

namespace cryptmap::fs {

class SyncWaiter {
 public:
  void signal() noexcept {
    std::lock_guard lock(mu_);
    done_ = true;
    cv_.notify_one();  // under the lock: the waiter cannot return (and destroy us) before this
  }
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return done_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

// Runs `start(completion)` and waits for the completion; returns its result.
template <class Start>
Result<std::size_t> wait_for_completion(Start&& start) {
  SyncWaiter waiter;
  Result<std::size_t> result = make_error(Errc::kCancelled, "completion never ran");
  std::forward<Start>(start)(volume::Completion([&](Result<std::size_t> r) {
    result = std::move(r);
    waiter.signal();
  }));
  waiter.wait();
  return result;
}

}  // namespace cryptmap::fs

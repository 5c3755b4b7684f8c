#include "volume/engine/slice_pool.h"

#include <algorithm>

#include "base/check.h"
#include "base/io_thread.h"

namespace cryptmap::volume {

SlicePool::SlicePool(unsigned workers) {
  threads_.reserve(workers);
  try {
    for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  } catch (...) {
    {
      MutexLock lock(mu_);
      stop_ = true;
    }
    work_.notify_all();
    for (auto& t : threads_) t.join();
    throw;
  }
}

SlicePool::~SlicePool() {
  {
    MutexLock lock(mu_);
    CRYPTMAP_CHECK(head_ == nullptr);
    stop_ = true;
  }
  work_.notify_all();
  for (auto& t : threads_) t.join();
}

void SlicePool::unlink(FanOut& f) {
  if (f.prev_ != nullptr)
    f.prev_->after_ = f.after_;
  else
    head_ = f.after_;
  if (f.after_ != nullptr)
    f.after_->prev_ = f.prev_;
  else
    tail_ = f.prev_;
  f.prev_ = f.after_ = nullptr;
  f.queued_ = false;
}

std::size_t SlicePool::claim(FanOut& f) {
  const std::size_t i = f.next_++;
  if (f.next_ == f.n_ && f.queued_) unlink(f);
  return i;
}

void SlicePool::post(FanOut& f) {
  f.next_ = 0;
  f.done_ = 0;
  if (f.n_ == 0) return;
  const std::size_t wake = std::min<std::size_t>(f.n_, threads_.size());
  {
    MutexLock lock(mu_);
    CRYPTMAP_CHECK(!f.queued_);
    f.queued_ = true;
    f.prev_ = tail_;
    f.after_ = nullptr;
    if (tail_ != nullptr)
      tail_->after_ = &f;
    else
      head_ = &f;
    tail_ = &f;
  }
  if (wake >= threads_.size()) {
    work_.notify_all();
  } else {
    for (std::size_t i = 0; i < wake; ++i) work_.notify_one();
  }
}

void SlicePool::join(FanOut& f) {
  MutexLock lock(mu_);
  while (f.next_ < f.n_) {
    const std::size_t i = claim(f);
    lock.unlock();
    f.fn_(f.context_, i);
    lock.lock();
    ++f.done_;
  }
  while (f.done_ < f.n_) f.finished_.wait(lock);
}

void SlicePool::work() {
  (void)mark_io_thread();
  MutexLock lock(mu_);
  for (;;) {
    while (!stop_ && head_ == nullptr) work_.wait(lock);
    if (head_ == nullptr) return;  // stopping, and nothing left
    FanOut& f = *head_;
    const std::size_t i = claim(f);
    lock.unlock();
    f.fn_(f.context_, i);
    lock.lock();
    if (++f.done_ == f.n_) f.finished_.notify_all();
  }
}

}  // namespace cryptmap::volume

#include "volume/engine/range_lock.h"

#include "base/check.h"

namespace cryptmap::volume {

RangeLock::RangeLock(std::size_t slots) : slot_count_(slots == 0 ? 1 : slots), slots_(slot_count_) {
  free_.reserve(slots_.size());
  for (std::size_t i = slots_.size(); i > 0; --i) free_.push_back(i - 1);
}

bool RangeLock::blocked(std::size_t self) const {
  const Slot& me = slots_[self];
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (i == self || !s.used || s.ticket > me.ticket) continue;
    if (!(me.exclusive || s.exclusive)) continue;
    if (s.begin < me.end && me.begin < s.end) return true;
  }
  return false;
}

RangeLock::Guard RangeLock::acquire(std::uint64_t begin, std::uint64_t end, bool exclusive) {
  CRYPTMAP_CHECK(begin < end);
  MutexLock lock(mu_);
  while (free_.empty()) cv_.wait(lock);
  const std::size_t idx = free_.back();
  free_.pop_back();
  slots_[idx] = Slot{begin, end, next_ticket_++, exclusive, true};
  while (blocked(idx)) cv_.wait(lock);
  return Guard(this, idx);
}

RangeLock::Guard RangeLock::try_acquire(std::uint64_t begin, std::uint64_t end, bool exclusive) {
  CRYPTMAP_CHECK(begin < end);
  MutexLock lock(mu_);
  if (free_.empty()) return {};
  const std::size_t idx = free_.back();
  slots_[idx] = Slot{begin, end, next_ticket_++, exclusive, true};
  if (blocked(idx)) {
    slots_[idx].used = false;
    return {};
  }
  free_.pop_back();
  return Guard(this, idx);
}

void RangeLock::release(std::size_t slot) noexcept {
  {
    MutexLock lock(mu_);
    slots_[slot].used = false;
    free_.push_back(slot);
  }
  cv_.notify_all();
}

void RangeLock::Guard::release() noexcept {
  if (lock_ != nullptr) {
    lock_->release(slot_);
    lock_ = nullptr;
  }
}

std::size_t RangeLock::tickets() {
  MutexLock lock(mu_);
  return slots_.size() - free_.size();
}

}  // namespace cryptmap::volume

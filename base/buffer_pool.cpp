#include "base/buffer_pool.h"

#include <unistd.h>

#include "base/check.h"

namespace cryptmap {

Result<std::unique_ptr<BufferPool>> BufferPool::create(std::size_t count, std::size_t buffer_bytes,
                                                       const char* what) {
  if (count == 0 || buffer_bytes == 0)
    return make_error(Errc::kInvalid, "buffer pool: count and buffer size must be non-zero");
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t stride = (buffer_bytes + page - 1) / page * page;
  CRYPTMAP_TRY(mem, LockedMemory::allocate(stride * count, MemoryLock::kBestEffort, what));
  try {
    return std::unique_ptr<BufferPool>(new BufferPool(std::move(mem), count, buffer_bytes, stride));
  } catch (const std::bad_alloc&) {
    return make_error(Errc::kNoSpace, "buffer pool: allocate the free list");
  }
}

BufferPool::BufferPool(LockedMemory mem, std::size_t count, std::size_t buffer_bytes,
                       std::size_t stride)
    : mem_(std::move(mem)), count_(count), buffer_bytes_(buffer_bytes), stride_(stride) {
  free_.reserve(count);
  for (std::size_t i = count; i > 0; --i) free_.push_back(i - 1);
}

BufferPool::~BufferPool() {
  MutexLock lock(mu_);
  CRYPTMAP_CHECK(free_.size() == count_);  // a Buffer outlived its pool
}

BufferPool::Buffer BufferPool::acquire() {
  MutexLock lock(mu_);
  while (free_.empty()) cv_.wait(lock);
  const std::size_t i = free_.back();
  free_.pop_back();
  return Buffer(this, i);
}

BufferPool::Buffer BufferPool::try_acquire() {
  MutexLock lock(mu_);
  if (free_.empty()) return {};
  const std::size_t i = free_.back();
  free_.pop_back();
  return Buffer(this, i);
}

std::size_t BufferPool::available() const {
  MutexLock lock(mu_);
  return free_.size();
}

void BufferPool::release(std::size_t index) noexcept {
  {
    MutexLock lock(mu_);
    free_.push_back(index);  // never reallocates: capacity == count_
  }
  cv_.notify_one();
}

void BufferPool::Buffer::reset() noexcept {
  if (pool_ != nullptr) {
    pool_->release(index_);
    pool_ = nullptr;
  }
}

std::span<std::byte> BufferPool::Buffer::span() const noexcept {
  if (pool_ == nullptr) return {};
  return {pool_->mem_.data() + index_ * pool_->stride_, pool_->buffer_bytes_};
}

}  // namespace cryptmap

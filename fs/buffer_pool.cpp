#include "fs/buffer_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "base/check.h"

namespace cryptmap::fs {

PooledBuffer::PooledBuffer(PooledBuffer&& o) noexcept
    : pool_(std::exchange(o.pool_, nullptr)), index_(o.index_) {}

PooledBuffer& PooledBuffer::operator=(PooledBuffer&& o) noexcept {
  if (this != &o) {
    if (pool_ != nullptr) pool_->give_back(index_);
    pool_ = std::exchange(o.pool_, nullptr);
    index_ = o.index_;
  }
  return *this;
}

PooledBuffer::~PooledBuffer() {
  if (pool_ != nullptr) pool_->give_back(index_);
}

std::byte* PooledBuffer::data() const noexcept {
  return pool_ != nullptr ? pool_->buffer(index_) : nullptr;
}
std::size_t PooledBuffer::size() const noexcept {
  return pool_ != nullptr ? pool_->buffer_bytes() : 0;
}
std::span<std::byte> PooledBuffer::span() const noexcept { return {data(), size()}; }

Result<std::unique_ptr<BufferPool>> BufferPool::create(std::uint32_t count,
                                                       std::size_t buffer_bytes) {
  if (count == 0 || buffer_bytes == 0)
    return make_error(Errc::kInvalid, "buffer pool: count and buffer size must be non-zero");
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t stride = (buffer_bytes + page - 1) / page * page;
  const std::size_t mapped = stride * count;
  // MAP_POPULATE: fault every page in now, so the first reads do not pay for it.
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) {
    Error e = make_sys_error(errno, "buffer pool: map the read buffers");
    e.code = Errc::kNoSpace;
    return e;
  }
  // Plaintext passes through these buffers: keep it out of core dumps.
  madvise(p, mapped, MADV_DONTDUMP);
  return std::unique_ptr<BufferPool>(
      new BufferPool(static_cast<std::byte*>(p), mapped, count, buffer_bytes));
}

BufferPool::BufferPool(std::byte* base, std::size_t mapped, std::uint32_t count,
                       std::size_t buffer_bytes)
    : base_(base),
      mapped_(mapped),
      count_(count),
      buffer_bytes_(buffer_bytes),
      stride_(mapped / count) {
  free_.reserve(count);
  for (std::uint32_t i = count; i > 0; --i) free_.push_back(i - 1);
}

BufferPool::~BufferPool() {
  {
    std::lock_guard lock(mu_);
    CRYPTMAP_CHECK(free_.size() == count_);  // a PooledBuffer outlived its pool
  }
  munmap(base_, mapped_);
}

PooledBuffer BufferPool::acquire() {
  std::unique_lock lock(mu_);
  freed_.wait(lock, [this] { return !free_.empty(); });
  const std::uint32_t index = free_.back();
  free_.pop_back();
  return PooledBuffer(this, index);
}

PooledBuffer BufferPool::try_acquire() {
  std::lock_guard lock(mu_);
  if (free_.empty()) return {};
  const std::uint32_t index = free_.back();
  free_.pop_back();
  return PooledBuffer(this, index);
}

std::uint32_t BufferPool::available() const {
  std::lock_guard lock(mu_);
  return static_cast<std::uint32_t>(free_.size());
}

void BufferPool::give_back(std::uint32_t index) noexcept {
  {
    std::lock_guard lock(mu_);
    free_.push_back(index);  // never reallocates: capacity == count_
  }
  freed_.notify_one();
}

}  // namespace cryptmap::fs

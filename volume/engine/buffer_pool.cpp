#include "volume/engine/buffer_pool.h"

#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "base/io_memory.h"
#include "base/secret.h"

namespace cryptmap::volume {
namespace {
constexpr std::size_t kPage = 4096;
std::size_t round_pages(std::size_t n) { return (n + kPage - 1) / kPage * kPage; }
}  // namespace

Result<std::byte*> alloc_locked_memory(std::size_t bytes, bool* locked) {
  const std::size_t len = round_pages(bytes == 0 ? 1 : bytes);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return make_error_fmt(Errc::kNoSpace, "allocate I/O memory", kNoObject,
                          "mmap of %zu bytes failed; lower --cache-size", len);
  }
  (void)::madvise(p, len, MADV_DONTDUMP);
  const bool ok_lock = prefault_io_memory(p, len);  // charged now, not during I/O
  if (!ok_lock) {
    const int err = errno;
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true)) {
      char buf[128];
      spdlog::warn(
          "cannot mlock {} bytes of I/O buffers ({}): plaintext may reach swap. Raise "
          "RLIMIT_MEMLOCK (ulimit -l) or lower --cache-size.",
          len, strerror_r(err, buf, sizeof buf));
    }
  }
  if (locked != nullptr) *locked = ok_lock;
  return static_cast<std::byte*>(p);
}

void free_locked_memory(std::byte* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  const std::size_t len = round_pages(bytes == 0 ? 1 : bytes);
  secure_zero(p, len);
  (void)::munlock(p, len);
  (void)::munmap(p, len);
}

Result<std::unique_ptr<BufferPool>> BufferPool::create(std::size_t count,
                                                       std::size_t buffer_bytes) {
  if (count == 0) count = 1;
  buffer_bytes = round_pages(buffer_bytes == 0 ? kPage : buffer_bytes);
  bool locked = false;
  CRYPTMAP_TRY(base, alloc_locked_memory(count * buffer_bytes, &locked));
  return std::unique_ptr<BufferPool>(new BufferPool(base, count, buffer_bytes, locked));
}

BufferPool::BufferPool(std::byte* base, std::size_t count, std::size_t buffer_bytes, bool locked)
    : base_(base), count_(count), buffer_bytes_(buffer_bytes), locked_(locked) {
  free_.reserve(count);
  for (std::size_t i = count; i > 0; --i) free_.push_back(i - 1);
}

BufferPool::~BufferPool() { free_locked_memory(base_, count_ * buffer_bytes_); }

BufferPool::Buffer BufferPool::acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty(); });
  const std::size_t i = free_.back();
  free_.pop_back();
  return Buffer(this, i);
}

BufferPool::Buffer BufferPool::try_acquire() {
  std::lock_guard lock(mu_);
  if (free_.empty()) return {};
  const std::size_t i = free_.back();
  free_.pop_back();
  return Buffer(this, i);
}

void BufferPool::release(std::size_t index) noexcept {
  {
    std::lock_guard lock(mu_);
    free_.push_back(index);
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
  return {pool_->base_ + index_ * pool_->buffer_bytes_, pool_->buffer_bytes_};
}

}  // namespace cryptmap::volume

// BufferPool — a fixed set of equally sized I/O buffers allocated once, at mount time.
//
// The FUSE read path needs a buffer per in-flight read that lives until the volume's completion
// has sent the reply; allocating it per request would put malloc (and page faults for 1 MiB
// buffers) on the hot path. The pool maps all buffers in one region up front (prefaulted), and
// acquire() hands one out as a move-only PooledBuffer that gives it back in its destructor.
// When every buffer is out, acquire() WAITS: that is the FUSE layer's backpressure (the worker
// thread stops taking requests until a completion returns a buffer), never an unbounded queue.
//
// Thread-safety: acquire() and PooledBuffer destruction may run on any thread concurrently.
// Ownership: the pool must outlive every PooledBuffer it handed out (checked in ~BufferPool).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.h"

namespace cryptmap::fs {

class BufferPool;

class PooledBuffer {
 public:
  PooledBuffer() = default;
  PooledBuffer(PooledBuffer&& o) noexcept;
  PooledBuffer& operator=(PooledBuffer&& o) noexcept;
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;
  ~PooledBuffer();

  std::span<std::byte> span() const noexcept;
  std::byte* data() const noexcept;
  std::size_t size() const noexcept;
  explicit operator bool() const noexcept { return pool_ != nullptr; }

 private:
  friend class BufferPool;
  PooledBuffer(BufferPool* pool, std::uint32_t index) noexcept : pool_(pool), index_(index) {}
  BufferPool* pool_ = nullptr;
  std::uint32_t index_ = 0;
};

class BufferPool {
 public:
  // `count` buffers of `buffer_bytes` each (rounded up to the page size). Fails with kNoSpace
  // when the memory cannot be mapped.
  static Result<std::unique_ptr<BufferPool>> create(std::uint32_t count, std::size_t buffer_bytes);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Blocks until a buffer is free.
  PooledBuffer acquire();
  // Returns an empty PooledBuffer instead of waiting.
  PooledBuffer try_acquire();

  std::size_t buffer_bytes() const noexcept { return buffer_bytes_; }
  std::uint32_t count() const noexcept { return count_; }
  std::uint32_t available() const;

 private:
  friend class PooledBuffer;
  BufferPool(std::byte* base, std::size_t mapped, std::uint32_t count, std::size_t buffer_bytes);
  void give_back(std::uint32_t index) noexcept;
  std::byte* buffer(std::uint32_t index) const noexcept { return base_ + index * stride_; }

  std::byte* const base_;
  const std::size_t mapped_;
  const std::uint32_t count_;
  const std::size_t buffer_bytes_;
  const std::size_t stride_;
  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<std::uint32_t> free_;  // guarded by mu_; capacity reserved at creation
};

}  // namespace cryptmap::fs

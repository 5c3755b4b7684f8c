// BufferPool — a fixed set of equally sized, page-aligned I/O buffers allocated once at open
// (dm-crypt's mempools, gocryptfs's sync.Pools sized at construction).
//
// The memory is one anonymous mapping, mlock()ed (plaintext and ciphertext never reach swap;
// if RLIMIT_MEMLOCK forbids it, a warning is logged once and the pool works unlocked),
// MADV_DONTDUMP (never in a core dump) and zeroed before it is unmapped. Buffers are 4096-byte
// aligned, so they can be used with O_DIRECT stores.
//
// acquire() waits while every buffer is out: exhaustion is backpressure, never an error.
// A caller may wait for at most one buffer at a time (so waiting cannot deadlock): a second
// buffer (the engine's two-stage pipeline) is only taken with try_acquire(), which never waits,
// and the caller works on with one buffer when it gets none. The engine splits larger
// requests into buffer-sized pieces.
//
// Thread-safety: fully thread-safe. Buffer is a move-only RAII handle; the pool must outlive it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "base/result.h"

namespace cryptmap::volume {

class BufferPool {
 public:
  class Buffer {
   public:
    Buffer() = default;
    Buffer(Buffer&& o) noexcept : pool_(std::exchange(o.pool_, nullptr)), index_(o.index_) {}
    Buffer& operator=(Buffer&& o) noexcept {
      if (this != &o) {
        reset();
        pool_ = std::exchange(o.pool_, nullptr);
        index_ = o.index_;
      }
      return *this;
    }
    ~Buffer() { reset(); }
    void reset() noexcept;
    std::span<std::byte> span() const noexcept;
    explicit operator bool() const noexcept { return pool_ != nullptr; }

   private:
    friend class BufferPool;
    Buffer(BufferPool* p, std::size_t i) : pool_(p), index_(i) {}
    BufferPool* pool_ = nullptr;
    std::size_t index_ = 0;
  };

  // `buffer_bytes` is rounded up to a multiple of 4096.
  static Result<std::unique_ptr<BufferPool>> create(std::size_t count, std::size_t buffer_bytes);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  Buffer acquire();      // waits while the pool is empty
  Buffer try_acquire();  // never waits: an empty Buffer when the pool is empty
  std::size_t buffer_bytes() const noexcept { return buffer_bytes_; }
  std::size_t count() const noexcept { return count_; }
  bool locked() const noexcept { return locked_; }

 private:
  BufferPool(std::byte* base, std::size_t count, std::size_t buffer_bytes, bool locked);
  void release(std::size_t index) noexcept;

  std::byte* const base_;
  const std::size_t count_;
  const std::size_t buffer_bytes_;
  const bool locked_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::size_t> free_;  // guarded by mu_
};

// Allocates `bytes` (rounded up to pages) of mlocked, non-dumpable, zeroed memory; used by the
// pools and the sector cache. `locked` reports whether mlock succeeded (a warning is logged
// once per process when it did not). free_locked_memory() zeroes and unmaps.
Result<std::byte*> alloc_locked_memory(std::size_t bytes, bool* locked);
void free_locked_memory(std::byte* p, std::size_t bytes) noexcept;

}  // namespace cryptmap::volume

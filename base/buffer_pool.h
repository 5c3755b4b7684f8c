// BufferPool — a fixed set of equally sized, page-aligned I/O buffers allocated once, at open
// or mount (dm-crypt's mempools, gocryptfs's sync.Pools sized at construction). The engine
// encrypts and decrypts in them; the FUSE read path replies from them.
//
// Plaintext passes through every buffer, so the memory is one LockedMemory region with
// MemoryLock::kBestEffort (base/locked_memory.h): faulted in at creation, mlock()ed where
// RLIMIT_MEMLOCK allows (else one warning per process and the pool works unlocked), never in
// a core dump, zeroed before it is unmapped. Buffers start on a page boundary (O_DIRECT).
//
// acquire() waits while every buffer is out: exhaustion is backpressure, never an error (the
// engine's requests and the FUSE workers simply wait their turn). A caller may wait for at most
// one buffer at a time (so waiting cannot deadlock): a second buffer (the engine's two-stage
// pipeline) is only taken with try_acquire(), which never waits, and the caller works on with
// one buffer when it gets none. Callers split larger requests into buffer-sized pieces.
//
// Thread-safety: fully thread-safe; a Buffer may be given back on any thread.
// Ownership: Buffer is a move-only RAII handle; the pool must outlive every Buffer it handed
// out (checked when the pool is destroyed).
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "base/locked_memory.h"
#include "base/mutex.h"
#include "base/result.h"

namespace cryptmap {

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
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() { reset(); }
    // Gives the buffer back now; the handle becomes empty.
    void reset() noexcept;
    // buffer_bytes() bytes; empty for an empty handle.
    std::span<std::byte> span() const noexcept;
    std::byte* data() const noexcept { return span().data(); }
    explicit operator bool() const noexcept { return pool_ != nullptr; }

   private:
    friend class BufferPool;
    Buffer(BufferPool* p, std::size_t i) noexcept : pool_(p), index_(i) {}
    BufferPool* pool_ = nullptr;
    std::size_t index_ = 0;
  };

  // `count` buffers of `buffer_bytes` each (each starts on a page boundary). kInvalid for a
  // zero count or size; kNoSpace when the memory cannot be mapped. `what` (a static string)
  // names the buffers in errors and the not-locked warning.
  static Result<std::unique_ptr<BufferPool>> create(std::size_t count, std::size_t buffer_bytes,
                                                    const char* what = "I/O buffers");
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  Buffer acquire() EXCLUDES(mu_);      // waits while the pool is empty
  Buffer try_acquire() EXCLUDES(mu_);  // never waits: an empty Buffer when the pool is empty
  std::size_t buffer_bytes() const noexcept { return buffer_bytes_; }
  std::size_t count() const noexcept { return count_; }
  std::size_t available() const EXCLUDES(mu_);  // buffers not handed out right now
  bool locked() const noexcept { return mem_.locked(); }

 private:
  BufferPool(LockedMemory mem, std::size_t count, std::size_t buffer_bytes, std::size_t stride);
  void release(std::size_t index) noexcept EXCLUDES(mu_);

  const LockedMemory mem_;
  const std::size_t count_;
  const std::size_t buffer_bytes_;
  const std::size_t stride_;  // buffer_bytes_ rounded up to the page size
  mutable Mutex mu_;
  CondVar cv_;
  std::vector<std::size_t> free_ GUARDED_BY(mu_);  // capacity reserved at creation
};

}  // namespace cryptmap

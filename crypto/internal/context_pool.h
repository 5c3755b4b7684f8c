// Internal: ContextPool<Ctx> — per-thread-ish cipher contexts owned by one SectorCipher.
//
// Library cipher contexts (EVP_CIPHER_CTX, Crypto++ mode objects) are single-threaded, but a
// SectorCipher is const and shared by all I/O threads. Instead of thread_local storage (which
// would leave key schedules alive in other threads' TLS after the cipher is destroyed), the
// cipher owns a fixed array of slots, each holding one lazily created context and an atomic
// "in use" flag. A thread starts probing at its own hint slot, so in steady state every thread
// reuses "its" context with one uncontended compare-exchange per run. If every slot is busy
// (more concurrent callers than slots), a temporary context is made for the call.
// All contexts die with the pool, which wipes them (their destructors cleanse key schedules).
//
// Thread-safety: acquire() may be called concurrently from any number of threads.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <utility>

#include "base/result.h"

namespace cryptmap::crypto::internal {

std::size_t this_thread_pool_hint() noexcept;  // stable small number per thread

template <class Ctx>
class ContextPool {
 public:
  static constexpr std::size_t kSlots = 32;
  using Factory = std::function<Result<std::unique_ptr<Ctx>>()>;

  explicit ContextPool(Factory factory) : factory_(std::move(factory)) {}
  ContextPool(const ContextPool&) = delete;
  ContextPool& operator=(const ContextPool&) = delete;

  class Lease {
   public:
    Lease(Lease&& o) noexcept
        : ctx_(std::exchange(o.ctx_, nullptr)),
          busy_(std::exchange(o.busy_, nullptr)),
          temp_(std::move(o.temp_)) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (busy_ != nullptr) busy_->store(false, std::memory_order_release);
    }
    Ctx& operator*() const noexcept { return *ctx_; }
    Ctx* operator->() const noexcept { return ctx_; }

   private:
    friend class ContextPool;
    Lease(Ctx* c, std::atomic<bool>* b, std::unique_ptr<Ctx> t)
        : ctx_(c), busy_(b), temp_(std::move(t)) {}
    Ctx* ctx_;
    std::atomic<bool>* busy_;
    std::unique_ptr<Ctx> temp_;
  };

  // Puts an already-made context into slot 0 (the constructor validates the key with it).
  void seed(std::unique_ptr<Ctx> ctx) { slots_[0].ctx = std::move(ctx); }

  Result<Lease> acquire() const {
    const std::size_t start = this_thread_pool_hint();
    for (std::size_t i = 0; i < kSlots; ++i) {
      Slot& s = slots_[(start + i) % kSlots];
      bool expected = false;
      if (s.busy.load(std::memory_order_relaxed) ||
          !s.busy.compare_exchange_strong(expected, true, std::memory_order_acquire,
                                          std::memory_order_relaxed))
        continue;
      if (!s.ctx) {
        auto made = factory_();
        if (!made) {
          s.busy.store(false, std::memory_order_release);
          return made.error();
        }
        s.ctx = std::move(*made);
      }
      return Lease(s.ctx.get(), &s.busy, nullptr);
    }
    CRYPTMAP_TRY(temp, factory_());
    Ctx* raw = temp.get();
    return Lease(raw, nullptr, std::move(temp));
  }

 private:
  struct alignas(64) Slot {
    std::atomic<bool> busy{false};
    // Owned by whoever claimed `busy` (false -> true, acquire; released by the Lease, release).
    // Not GUARDED_BY: `busy` is a lock-free try-claim on an atomic, not a capability the
    // thread-safety analysis can model (base/mutex.h), so this rule stays a comment.
    std::unique_ptr<Ctx> ctx;
  };
  Factory factory_;
  mutable std::array<Slot, kSlots> slots_{};
};

}  // namespace cryptmap::crypto::internal

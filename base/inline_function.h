// InlineFunction<R(Args...), N> — a move-only callable stored inline in N bytes; never
// allocates (a callable that does not fit fails to compile). Used for I/O completions so the
// steady-state I/O path does not touch the heap. Thread-compatible.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

#include "base/check.h"

namespace cryptmap {

template <class Sig, std::size_t N = 64>
class InlineFunction;

template <class R, class... Args, std::size_t N>
class InlineFunction<R(Args...), N> {
 public:
  InlineFunction() = default;
  template <class F, class D = std::decay_t<F>,
            class = std::enable_if_t<!std::is_same_v<D, InlineFunction>>>
  InlineFunction(F&& f) {  // NOLINT: implicit like std::function
    static_assert(sizeof(D) <= N, "callable too large for InlineFunction: raise N");
    static_assert(alignof(D) <= alignof(std::max_align_t));
    static_assert(std::is_nothrow_move_constructible_v<D>);
    new (storage_) D(std::forward<F>(f));
    ops_ = &kOps<D>;
  }
  InlineFunction(InlineFunction&& o) noexcept { move_from(o); }
  InlineFunction& operator=(InlineFunction&& o) noexcept {
    if (this != &o) {
      reset();
      move_from(o);
    }
    return *this;
  }
  InlineFunction(const InlineFunction&) = delete;
  InlineFunction& operator=(const InlineFunction&) = delete;
  ~InlineFunction() { reset(); }

  explicit operator bool() const noexcept { return ops_ != nullptr; }
  R operator()(Args... args) {
    CRYPTMAP_CHECK(ops_ != nullptr);
    return ops_->call(storage_, std::forward<Args>(args)...);
  }
  void reset() noexcept {
    if (ops_) ops_->destroy(storage_);
    ops_ = nullptr;
  }

 private:
  struct Ops {
    R (*call)(void*, Args&&...);
    void (*move)(void* dst, void* src) noexcept;
    void (*destroy)(void*) noexcept;
  };
  template <class D>
  static constexpr Ops kOps{
      [](void* p, Args&&... a) -> R { return (*static_cast<D*>(p))(std::forward<Args>(a)...); },
      [](void* dst, void* src) noexcept {
        new (dst) D(std::move(*static_cast<D*>(src)));
        static_cast<D*>(src)->~D();
      },
      [](void* p) noexcept { static_cast<D*>(p)->~D(); }};

  void move_from(InlineFunction& o) noexcept {
    if (o.ops_) {
      o.ops_->move(storage_, o.storage_);
      ops_ = o.ops_;
      o.ops_ = nullptr;
    }
  }
  alignas(std::max_align_t) unsigned char storage_[N];
  const Ops* ops_ = nullptr;
};

}  // namespace cryptmap

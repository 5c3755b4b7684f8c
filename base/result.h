// cryptmap::Result<T> — a strict subset of C++23 std::expected<T, Error>.
//
// Every fallible function below the FUSE callbacks returns Result<T>. Only the members that
// std::expected also has are provided (has_value, operator bool, value, error, operator*,
// operator->, and_then), so moving to C++23 is `template<class T> using Result =
// std::expected<T, Error>;` plus replacing `Unexpected` with `std::unexpected`.
#pragma once

#include <cstdlib>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

#include "base/error.h"

namespace cryptmap {

// Wraps an Error so it converts to any Result<T> (std::unexpected's role).
struct Unexpected {
  Error error;
};
inline Unexpected fail(Error e) { return Unexpected{e}; }

template <class T>
class [[nodiscard]] Result {
 public:
  using value_type = T;
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Unexpected u) : v_(std::in_place_index<1>, u.error) {}      // NOLINT
  Result(Error e) : v_(std::in_place_index<1>, e) {}                 // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & {
    check();
    return std::get<0>(v_);
  }
  const T& value() const& {
    check();
    return std::get<0>(v_);
  }
  T&& value() && {
    check();
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { return std::get<1>(v_); }

  template <class F>
  auto and_then(F&& f) && -> std::invoke_result_t<F, T&&> {
    if (!has_value()) return Unexpected{error()};
    return std::forward<F>(f)(std::get<0>(std::move(v_)));
  }

 private:
  void check() const {
    if (!has_value()) std::abort();  // a bug: value() on an error (CRYPTMAP_CHECK policy)
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  using value_type = void;
  Result() = default;
  Result(Unexpected u) : err_(u.error) {}  // NOLINT
  Result(Error e) : err_(e) {}             // NOLINT

  bool has_value() const noexcept { return !err_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  void value() const {
    if (err_) std::abort();
  }
  const Error& error() const& { return *err_; }

  template <class F>
  auto and_then(F&& f) && -> std::invoke_result_t<F> {
    if (!has_value()) return Unexpected{*err_};
    return std::forward<F>(f)();
  }

 private:
  std::optional<Error> err_;
};

inline Result<void> ok() { return {}; }

}  // namespace cryptmap

// Propagate an error: `CRYPTMAP_TRY(r, expr);` declares `r` as the value or returns the error.
#define CRYPTMAP_TRY_VOID(expr)                                                   \
  do {                                                                            \
    auto cryptmap_try_r_ = (expr);                                                \
    if (!cryptmap_try_r_) return ::cryptmap::Unexpected{cryptmap_try_r_.error()}; \
  } while (0)

#define CRYPTMAP_TRY_CONCAT_(a, b) a##b
#define CRYPTMAP_TRY_CONCAT(a, b) CRYPTMAP_TRY_CONCAT_(a, b)
#define CRYPTMAP_TRY(var, expr)                                                          \
  auto CRYPTMAP_TRY_CONCAT(cryptmap_try_, __LINE__) = (expr);                            \
  if (!CRYPTMAP_TRY_CONCAT(cryptmap_try_, __LINE__))                                     \
    return ::cryptmap::Unexpected{CRYPTMAP_TRY_CONCAT(cryptmap_try_, __LINE__).error()}; \
  auto var = std::move(*CRYPTMAP_TRY_CONCAT(cryptmap_try_, __LINE__))

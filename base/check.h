// CRYPTMAP_CHECK(cond): broken invariants are bugs and abort (never used on input: input errors
// are Results naming the field).
#pragma once

namespace cryptmap::detail {
[[noreturn]] void check_failed(const char* cond, const char* file, int line) noexcept;
}

#define CRYPTMAP_CHECK(cond) \
  ((cond) ? (void)0 : ::cryptmap::detail::check_failed(#cond, __FILE__, __LINE__))

// Monotonic time for counters and latency statistics: nanoseconds of std::chrono::steady_clock
// (its epoch is arbitrary; only differences mean anything).
#pragma once

#include <chrono>
#include <cstdint>

namespace cryptmap {

inline std::uint64_t steady_ns() noexcept {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace cryptmap

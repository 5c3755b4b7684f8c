// Cryptographically secure random bytes (getrandom(2)). Thread-safe.
#pragma once

#include <cstddef>
#include <span>

#include "base/result.h"

namespace cryptmap::crypto {
Result<void> random_bytes(std::span<std::byte> out);
}  // namespace cryptmap::crypto

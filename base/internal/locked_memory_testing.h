// Test seam of base/locked_memory.cpp: observes a region right before it is unmapped, so a
// test can check that it was wiped (after munmap there is nothing left to read).
// Not for production code; the hook is process-wide and must be reset by the test that sets it.
#pragma once

#include <cstddef>

namespace cryptmap::internal {

using UnmapHook = void (*)(const std::byte* p, std::size_t mapped_bytes);
void set_unmap_hook_for_testing(UnmapHook hook) noexcept;

}  // namespace cryptmap::internal

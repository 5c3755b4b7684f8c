// Memory for the I/O path (sector cache, I/O buffers), faulted in and charged when a volume
// opens, never on first use during I/O.
//
// Why: the daemon serves a loop device's writeback. A page first touched while serving I/O is
// charged to the memory cgroup then; at the limit, reclaim in that very thread can wait on
// writeback only the daemon itself can complete. Paying every page up front (locked where
// RLIMIT_MEMLOCK allows, populated otherwise) moves that allocation to open time, before any
// writeback depends on us.
#pragma once

#include <cstddef>

namespace cryptmap {

// Faults in [p, p+len) (len a multiple of the page size) and locks it when permitted.
// Returns true when the range is mlocked (never swapped); false means populated but swappable,
// with errno set by the refused mlock. Most callers want LockedMemory (base/locked_memory.h),
// which calls this; it is public for memory we do not map ourselves (a thread's stack).
bool prefault_io_memory(void* p, std::size_t len) noexcept;

}  // namespace cryptmap

// LockedMemory — the one allocator for memory that holds secrets or plaintext (keys,
// passphrases, the sector cache, I/O buffers, FUSE receive and read buffers).
//
// A region is its own anonymous mapping, rounded up to whole pages (so it is page-aligned and
// usable for O_DIRECT), that is
//   - MADV_DONTDUMP: never in a core dump;
//   - MADV_WIPEONFORK: a forked child (a spawned helper) sees zeroes, not our secrets;
//   - faulted in and charged now, never on first use during I/O (base/io_memory.h says why);
//   - mlock()ed: with MemoryLock::kRequired (secrets) a refused mlock fails the allocation
//     (kNoSpace, the errno, "raise RLIMIT_MEMLOCK"); with kBestEffort (I/O memory) the region
//     works unlocked and one warning per process says plaintext may reach swap;
//   - zeroed (secure_zero), munlocked and unmapped when the region is destroyed.
//
// Ownership: move-only RAII; the region owns its mapping. Thread-compatible: concurrent use of
// the bytes is the owner's business, the handle itself is not synchronised.
#pragma once

#include <cstddef>
#include <span>

#include "base/result.h"

namespace cryptmap {

enum class MemoryLock {
  kRequired,    // secrets: never unlocked; allocation fails when mlock is refused
  kBestEffort,  // plaintext I/O memory: locked where RLIMIT_MEMLOCK allows, else one warning
};

class LockedMemory {
 public:
  LockedMemory() = default;
  // Maps `bytes` zeroed bytes (an empty region for 0). `what` is a static string naming the
  // memory in errors and the warning ("key material", "the sector cache"). Fails with
  // kNoSpace when the mapping fails or, for kRequired, when mlock is refused.
  static Result<LockedMemory> allocate(std::size_t bytes, MemoryLock lock, const char* what);

  LockedMemory(LockedMemory&& o) noexcept;
  LockedMemory& operator=(LockedMemory&& o) noexcept;
  LockedMemory(const LockedMemory&) = delete;
  LockedMemory& operator=(const LockedMemory&) = delete;
  ~LockedMemory() { reset(); }

  std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }  // as requested
  std::span<std::byte> span() const noexcept { return {data_, size_}; }
  bool empty() const noexcept { return data_ == nullptr; }
  // True when mlock succeeded (always for kRequired).
  bool locked() const noexcept { return locked_; }
  // Zeroes, unlocks and unmaps now; the handle becomes empty.
  void reset() noexcept;

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;
  bool locked_ = false;
};

}  // namespace cryptmap

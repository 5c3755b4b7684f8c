// SecretBytes — key material and passphrases.
//
// Move-only. The bytes live in a LockedMemory region with MemoryLock::kRequired
// (base/locked_memory.h: mlock()ed or not at all, never dumped, not inherited by a forked
// child, zeroed before munmap). Formatting one prints "<redacted>". Thread-compatible (like
// std::vector).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "base/locked_memory.h"
#include "base/result.h"

namespace cryptmap {

class SecretBytes {
 public:
  SecretBytes() = default;
  // Allocates `size` zeroed, locked bytes. Fails with kNoSpace when mmap/mlock fail
  // (RLIMIT_MEMLOCK): callers report it, they never fall back to unlocked memory.
  static Result<SecretBytes> allocate(std::size_t size);
  static Result<SecretBytes> copy_of(std::span<const std::byte> bytes);
  static Result<SecretBytes> copy_of(std::string_view bytes);

  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes() = default;

  std::byte* data() noexcept { return mem_.data(); }
  const std::byte* data() const noexcept { return mem_.data(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<std::byte> span() noexcept { return {data(), size_}; }
  std::span<const std::byte> span() const noexcept { return {data(), size_}; }
  std::string_view as_chars() const noexcept {
    return {reinterpret_cast<const char*>(data()), size_};
  }
  // Shrinks the visible size (e.g. strip a trailing newline); the mapping stays.
  void truncate(std::size_t new_size) noexcept;

 private:
  LockedMemory mem_;
  std::size_t size_ = 0;  // visible bytes (<= mem_.size())
};

// Constant-time comparison (digest checks).
bool constant_time_equal(std::span<const std::byte> a, std::span<const std::byte> b) noexcept;
// Zeroes memory in a way the optimizer cannot remove.
void secure_zero(void* p, std::size_t n) noexcept;

// Process hardening for a daemon holding keys: not dumpable, no core files.
Result<void> harden_process();

}  // namespace cryptmap

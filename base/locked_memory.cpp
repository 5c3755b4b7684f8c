#include "base/locked_memory.h"

#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "base/internal/locked_memory_testing.h"
#include "base/io_memory.h"
#include "base/secret.h"

namespace cryptmap {
namespace {

std::atomic<internal::UnmapHook> g_unmap_hook{nullptr};

std::size_t round_to_pages(std::size_t n) noexcept {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return (n + page - 1) / page * page;
}

// Best-effort memory that stays unlocked is worth one line per process, not one per buffer:
// every later allocation hits the same RLIMIT_MEMLOCK.
void warn_unlocked_once(std::size_t len, const char* what, int err) {
  static std::atomic<bool> logged{false};
  if (logged.exchange(true)) return;
  char buf[128];
  spdlog::warn(
      "cannot mlock {} bytes of {} ({}): plaintext may reach swap. Raise RLIMIT_MEMLOCK "
      "(ulimit -l) or lower --cache-size.",
      len, what, strerror_r(err, buf, sizeof buf));
}

}  // namespace

namespace internal {
void set_unmap_hook_for_testing(UnmapHook hook) noexcept { g_unmap_hook.store(hook); }
}  // namespace internal

Result<LockedMemory> LockedMemory::allocate(std::size_t bytes, MemoryLock lock, const char* what) {
  LockedMemory m;
  if (bytes == 0) {
    m.locked_ = true;  // nothing to lock
    return m;
  }
  const std::size_t len = round_to_pages(bytes);
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    // The object is the byte count; the detail stays within Error's 95 characters.
    Error e = make_error_fmt(Errc::kNoSpace, what, len, "cannot map that many bytes; %s",
                             lock == MemoryLock::kBestEffort
                                 ? "free memory, raise the memory limit or lower --cache-size"
                                 : "free memory or raise the memory limit");
    e.sys_errno = err;
    return e;
  }
  (void)::madvise(p, len, MADV_DONTDUMP);
  (void)::madvise(p, len, MADV_WIPEONFORK);  // Linux 4.14; a helper we spawn never sees it
  m.data_ = static_cast<std::byte*>(p);
  m.size_ = bytes;
  m.mapped_ = len;
  if (lock == MemoryLock::kRequired) {
    if (::mlock(p, len) != 0) {
      const int err = errno;
      Error e = make_error_fmt(Errc::kNoSpace, what, kNoObject,
                               "mlock of %zu bytes refused: raise RLIMIT_MEMLOCK (ulimit -l)", len);
      e.sys_errno = err;
      return e;  // m unmaps it
    }
    m.locked_ = true;
    return m;
  }
  // Charged now, at open, not during I/O (base/io_memory.h).
  m.locked_ = prefault_io_memory(p, len);
  if (!m.locked_) warn_unlocked_once(len, what, errno);
  return m;
}

LockedMemory::LockedMemory(LockedMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)),
      locked_(std::exchange(o.locked_, false)) {}

LockedMemory& LockedMemory::operator=(LockedMemory&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
    locked_ = std::exchange(o.locked_, false);
  }
  return *this;
}

void LockedMemory::reset() noexcept {
  if (data_ != nullptr) {
    secure_zero(data_, mapped_);
    if (internal::UnmapHook hook = g_unmap_hook.load()) hook(data_, mapped_);
    (void)::munlock(data_, mapped_);
    (void)::munmap(data_, mapped_);
  }
  data_ = nullptr;
  size_ = mapped_ = 0;
  locked_ = false;
}

}  // namespace cryptmap

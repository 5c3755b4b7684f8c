#include "base/secret.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace cryptmap {

void secure_zero(void* p, std::size_t n) noexcept {
  if (n == 0) return;
  explicit_bzero(p, n);
}

bool constant_time_equal(std::span<const std::byte> a, std::span<const std::byte> b) noexcept {
  if (a.size() != b.size()) return false;
  unsigned diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= std::to_integer<unsigned>(a[i] ^ b[i]);
  return diff == 0;
}

Result<SecretBytes> SecretBytes::allocate(std::size_t size) {
  SecretBytes s;
  if (size == 0) return s;
  CRYPTMAP_TRY(mem,
               LockedMemory::allocate(size, MemoryLock::kRequired, "lock key material in memory"));
  s.mem_ = std::move(mem);
  s.size_ = size;
  return s;
}

Result<SecretBytes> SecretBytes::copy_of(std::span<const std::byte> bytes) {
  CRYPTMAP_TRY(s, allocate(bytes.size()));
  if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
  return s;
}

Result<SecretBytes> SecretBytes::copy_of(std::string_view bytes) {
  return copy_of(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size()));
}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : mem_(std::move(o.mem_)), size_(std::exchange(o.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    mem_ = std::move(o.mem_);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void SecretBytes::truncate(std::size_t new_size) noexcept {
  if (new_size < size_) {
    secure_zero(data() + new_size, size_ - new_size);
    size_ = new_size;
  }
}

Result<void> harden_process() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return make_sys_error(errno, "make the process non-dumpable");
  struct rlimit none {
    0, 0
  };
  if (setrlimit(RLIMIT_CORE, &none) != 0) return make_sys_error(errno, "disable core dumps");
  return ok();
}

}  // namespace cryptmap

#include "base/secret.h"

#include <sys/mman.h>
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
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t mapped = (size + page - 1) / page * page;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return make_sys_error(errno, "allocate locked memory for key material");
  // Never dumped, never inherited by a forked child.
  madvise(p, mapped, MADV_DONTDUMP);
  madvise(p, mapped, MADV_WIPEONFORK);
  if (mlock(p, mapped) != 0) {
    int err = errno;
    munmap(p, mapped);
    Error e = make_sys_error(err, "lock key material in memory (raise RLIMIT_MEMLOCK)");
    e.code = Errc::kNoSpace;
    return e;
  }
  s.data_ = static_cast<std::byte*>(p);
  s.size_ = size;
  s.mapped_ = mapped;
  return s;
}

Result<SecretBytes> SecretBytes::copy_of(std::span<const std::byte> bytes) {
  CRYPTMAP_TRY(s, allocate(bytes.size()));
  if (!bytes.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
  return s;
}

Result<SecretBytes> SecretBytes::copy_of(std::string_view bytes) {
  return copy_of(std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()),
                                            bytes.size()));
}

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      mapped_(std::exchange(o.mapped_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    mapped_ = std::exchange(o.mapped_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() { release(); }

void SecretBytes::truncate(std::size_t new_size) noexcept {
  if (new_size < size_) {
    secure_zero(data_ + new_size, size_ - new_size);
    size_ = new_size;
  }
}

void SecretBytes::release() noexcept {
  if (data_ != nullptr) {
    secure_zero(data_, mapped_);
    munlock(data_, mapped_);
    munmap(data_, mapped_);
  }
  data_ = nullptr;
  size_ = mapped_ = 0;
}

Result<void> harden_process() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return make_sys_error(errno, "make the process non-dumpable");
  struct rlimit none {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0) return make_sys_error(errno, "disable core dumps");
  return ok();
}

}  // namespace cryptmap

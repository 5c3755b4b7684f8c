// LockedMemory (base/locked_memory.h): what the kernel says about the mapping (/proc/self/smaps:
// locked, never dumped, wiped on fork), that it is wiped before munmap (test seam), and both
// mlock policies under a limit that refuses them (in a forked child without CAP_IPC_LOCK).
#include "base/locked_memory.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/internal/locked_memory_testing.h"
#include "base/secret.h"

namespace cryptmap {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMlockIsANoOp = true;  // the sanitizer runtime intercepts mlock()
#else
constexpr bool kMlockIsANoOp = false;
#endif

struct Smaps {
  bool found = false;
  std::uint64_t locked_kb = 0;
  std::string vm_flags;  // " rd wr mr mw me dd lo wf" style
};

// The smaps entry of the mapping that contains `p`.
Smaps smaps_of(const void* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream in("/proc/self/smaps");
  std::string line;
  Smaps out;
  bool inside = false;
  while (std::getline(in, line)) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      if (inside) break;  // the next mapping
      inside = addr >= lo && addr < hi;
      out.found = inside;
      continue;
    }
    if (!inside) continue;
    if (line.rfind("Locked:", 0) == 0) out.locked_kb = std::stoull(line.substr(7));
    if (line.rfind("VmFlags:", 0) == 0) out.vm_flags = line.substr(8) + " ";
  }
  return out;
}

bool has_flag(const Smaps& s, const char* flag) {
  return s.vm_flags.find(std::string(" ") + flag + " ") != std::string::npos;
}

TEST(LockedMemory, RegionIsZeroedPageAlignedAndSizedAsAsked) {
  auto m = LockedMemory::allocate(10000, MemoryLock::kBestEffort, "test memory");
  ASSERT_TRUE(m.has_value()) << m.error().message();
  EXPECT_EQ(m->size(), 10000u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m->data()) % 4096, 0u);
  for (std::byte b : m->span()) ASSERT_EQ(b, std::byte{0});
  m->span().back() = std::byte{7};  // writable to the last byte
}

TEST(LockedMemory, KernelSeesTheRegionLockedNeverDumpedAndWipedOnFork) {
  for (MemoryLock lock : {MemoryLock::kRequired, MemoryLock::kBestEffort}) {
    auto m = LockedMemory::allocate(3 * 4096, lock, "test memory");
    ASSERT_TRUE(m.has_value()) << m.error().message();
    const Smaps s = smaps_of(m->data());
    ASSERT_TRUE(s.found);
    EXPECT_TRUE(has_flag(s, "dd")) << "MADV_DONTDUMP missing: " << s.vm_flags;
    EXPECT_TRUE(has_flag(s, "wf")) << "MADV_WIPEONFORK missing: " << s.vm_flags;
    if (!kMlockIsANoOp) {
      EXPECT_TRUE(m->locked());
      EXPECT_TRUE(has_flag(s, "lo")) << "not mlocked: " << s.vm_flags;
      EXPECT_GE(s.locked_kb, 12u);
    }
  }
}

TEST(LockedMemory, MappingFailureIsNoSpaceAndSaysWhatFailedAndWhatToDo) {
  // More than any process's address space: mmap refuses it with ENOMEM.
  auto m = LockedMemory::allocate(std::size_t{1} << 62, MemoryLock::kBestEffort, "test cache");
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().code, Errc::kNoSpace);
  EXPECT_EQ(m.error().sys_errno, ENOMEM);
  const std::string msg = m.error().message();
  EXPECT_NE(msg.find("test cache [4611686018427387904]: cannot map"), std::string::npos) << msg;
  EXPECT_NE(msg.find("lower --cache-size"), std::string::npos) << msg;
}

// Records whether every byte was zero when the region reached munmap.
std::atomic<int> g_unmapped{0};
std::atomic<int> g_unmapped_dirty{0};
void check_wiped(const std::byte* p, std::size_t len) {
  ++g_unmapped;
  for (std::size_t i = 0; i < len; ++i) {
    if (p[i] != std::byte{0}) {
      ++g_unmapped_dirty;
      return;
    }
  }
}

TEST(LockedMemory, RegionIsWipedBeforeItIsUnmappedExactlyOnce) {
  g_unmapped = 0;
  g_unmapped_dirty = 0;
  internal::set_unmap_hook_for_testing(check_wiped);
  {
    auto m = LockedMemory::allocate(5000, MemoryLock::kBestEffort, "test memory");
    ASSERT_TRUE(m.has_value());
    std::memset(m->data(), 0xA5, m->size());
    LockedMemory moved = std::move(*m);  // the moved-from handle unmaps nothing
    EXPECT_TRUE(m->empty());             // NOLINT(bugprone-use-after-move)
    auto s = SecretBytes::copy_of(std::string_view("a passphrase"));
    ASSERT_TRUE(s.has_value());
  }
  internal::set_unmap_hook_for_testing(nullptr);
  EXPECT_EQ(g_unmapped.load(), 2);  // the region and the SecretBytes, once each
  EXPECT_EQ(g_unmapped_dirty.load(), 0);
}

// Runs `body` in a forked child that has no CAP_IPC_LOCK (which ignores RLIMIT_MEMLOCK) and a
// memlock limit of zero; returns the child's exit status (0 = every check passed).
int in_child_that_cannot_mlock(int (*body)()) {
  const pid_t pid = fork();
  if (pid == 0) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct caps[2]{};
    if (syscall(SYS_capget, &hdr, caps) != 0) _exit(90);
    caps[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    if (syscall(SYS_capset, &hdr, caps) != 0) _exit(91);
    struct rlimit none {
      0, 0
    };
    if (setrlimit(RLIMIT_MEMLOCK, &none) != 0) _exit(92);
    _exit(body());
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(LockedMemory, RequiredLockFailsCleanlyWhenRlimitMemlockRefuses) {
  if (kMlockIsANoOp) GTEST_SKIP() << "the sanitizer runtime turns mlock() into a no-op";
  const int rc = in_child_that_cannot_mlock([] {
    auto m = LockedMemory::allocate(64 * 1024, MemoryLock::kRequired, "lock test keys");
    if (m.has_value()) return 1;
    const Error& e = m.error();
    if (e.code != Errc::kNoSpace) return 2;
    if (e.sys_errno != ENOMEM && e.sys_errno != EPERM) return 3;
    const std::string msg = e.message();
    if (msg.find("lock test keys") == std::string::npos) return 4;        // what
    if (msg.find("65536 bytes") == std::string::npos) return 5;           // which
    if (msg.find("raise RLIMIT_MEMLOCK") == std::string::npos) return 6;  // what to do
    auto s = SecretBytes::allocate(32);  // key material never falls back to unlocked memory
    if (s.has_value() || s.error().code != Errc::kNoSpace) return 7;
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child check " << rc << " failed (see the body)";
}

TEST(LockedMemory, BestEffortWorksUnlockedAndResidentWhenRlimitMemlockRefuses) {
  if (kMlockIsANoOp) GTEST_SKIP() << "the sanitizer runtime turns mlock() into a no-op";
  const int rc = in_child_that_cannot_mlock([] {
    auto m = LockedMemory::allocate(64 * 1024, MemoryLock::kBestEffort, "test I/O memory");
    if (!m.has_value()) return 1;
    if (m->locked()) return 2;
    std::vector<unsigned char> vec(16);
    if (mincore(m->data(), 64 * 1024, vec.data()) != 0) return 3;
    for (unsigned char v : vec)
      if ((v & 1) == 0) return 4;  // faulted in at allocation, not on first use
    std::memset(m->data(), 1, m->size());
    return 0;
  });
  EXPECT_EQ(rc, 0) << "child check " << rc << " failed (see the body)";
}

}  // namespace
}  // namespace cryptmap

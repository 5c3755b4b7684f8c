// Steady-state I/O allocates nothing: global operator new/delete are replaced in this test
// binary to count allocations from every thread (callers, TBB workers, the flusher) while a
// warmed-up volume serves a mix of reads, writes, read-modify-writes, parallel conversions,
// cache hits/misses and flushes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "base/buffer_pool.h"
#include "tests/unit/volume/engine/volume_test_util.h"
#include "volume/engine/range_lock.h"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<std::uint64_t> g_allocs{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
  void* p = nullptr;
  if (align > alignof(std::max_align_t)) {
    if (posix_memalign(&p, align, n == 0 ? 1 : n) != 0) p = nullptr;
  } else {
    p = std::malloc(n == 0 ? 1 : n);
  }
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace cryptmap::testing {
namespace {

TEST(Allocations, CounterSeesAllocations) {
  g_allocs = 0;
  g_counting = true;
  auto* p = new std::uint64_t(1);
  g_counting = false;
  delete p;
  EXPECT_EQ(g_allocs.load(), 1u) << "the counting operator new is not in effect";
}

TEST(Allocations, SteadyStateIoAllocatesNothing) {
  volume::VolumeOptions opts;
  opts.cache_bytes = 1 << 20;
  opts.flush_age_ms = 10;  // the flusher runs during the window too
  volume::EngineOptions eo;
  eo.parallel_threshold_bytes = 16 * 1024;
  constexpr std::uint64_t kSize = 8 << 20;
  TestVolume t = make_test_volume(512, 4096, 4096 + kSize, opts, eo);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> big = pattern(256 * 1024, 1), small = pattern(4096, 2);
  std::vector<std::byte> rbuf(256 * 1024);
  // Warm-up: touch every store chunk and every path once.
  ASSERT_TRUE(t.vol->write(ByteOffset{0}, std::span(big)));
  for (std::uint64_t off = 0; off < kSize; off += big.size()) {
    ASSERT_TRUE(t.vol->write(ByteOffset{off}, big));
  }
  ASSERT_TRUE(t.vol->flush());
  ASSERT_TRUE(t.vol->read(ByteOffset{0}, rbuf));

  constexpr int kOps = 3000;
  std::vector<int> failures(kOps, 0);  // preallocated: no gtest macro inside the window
  std::mt19937_64 rng(7);
  g_allocs = 0;
  g_counting = true;
  for (int i = 0; i < kOps; ++i) {
    const std::uint64_t off = rng() % (kSize - big.size());
    bool ok_op = true;
    switch (i % 6) {
      case 0:
        ok_op = static_cast<bool>(t.vol->write(ByteOffset{off & ~4095ull}, small));
        break;
      case 1:
        ok_op = static_cast<bool>(t.vol->write(ByteOffset{off}, std::span(small).first(700)));
        break;
      case 2:
        ok_op = static_cast<bool>(t.vol->read(ByteOffset{off}, std::span(rbuf).first(65536 + 3)));
        break;
      case 3:
        ok_op = static_cast<bool>(t.vol->write(ByteOffset{off}, big));
        break;  // write-through when the cache is full
      case 4:
        ok_op = static_cast<bool>(t.vol->read(ByteOffset{off}, rbuf));
        break;  // parallel decrypt
      case 5:
        if (i % 60 == 5) ok_op = static_cast<bool>(t.vol->flush());
        break;
    }
    failures[static_cast<std::size_t>(i)] = ok_op ? 0 : 1;
  }
  g_counting = false;
  const std::uint64_t allocs = g_allocs.load();
  EXPECT_EQ(std::count(failures.begin(), failures.end(), 1), 0);
  EXPECT_EQ(allocs, 0u) << "heap allocations during steady-state I/O";
}

}  // namespace
}  // namespace cryptmap::testing

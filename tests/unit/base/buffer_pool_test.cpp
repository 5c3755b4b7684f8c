// BufferPool (base/buffer_pool.h): the engine's and the FUSE read path's one pool. Distinct
// page-aligned buffers of the requested size, exhaustion waits (never fails), handles give
// their buffer back exactly once, the memory is locked where allowed.
#include "base/buffer_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <set>
#include <thread>
#include <vector>

namespace cryptmap {
namespace {

TEST(BufferPool, HandsOutDistinctPageAlignedBuffersOfTheRequestedSize) {
  auto pool = BufferPool::create(4, 5000);
  ASSERT_TRUE(pool.has_value()) << pool.error().message();
  EXPECT_EQ((*pool)->buffer_bytes(), 5000u);
  std::vector<BufferPool::Buffer> held;
  std::set<std::byte*> seen;
  for (int i = 0; i < 4; ++i) {
    held.push_back((*pool)->acquire());
    EXPECT_EQ(held.back().span().size(), 5000u);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(held.back().data()) % 4096, 0u) << "O_DIRECT";
    seen.insert(held.back().data());
    held.back().span()[4999] = std::byte{1};  // writable to the last byte
  }
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ((*pool)->available(), 0u);
  EXPECT_FALSE((*pool)->try_acquire());
  held.pop_back();
  EXPECT_EQ((*pool)->available(), 1u);
  EXPECT_TRUE((*pool)->try_acquire());
  held.clear();
}

TEST(BufferPool, AcquireWaitsUntilABufferComesBack) {
  auto pool = BufferPool::create(1, 4096);
  ASSERT_TRUE(pool.has_value());
  BufferPool::Buffer first = (*pool)->acquire();
  std::atomic<bool> got{false};
  std::thread t([&] {
    BufferPool::Buffer b = (*pool)->acquire();
    got.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got.load());
  first.reset();  // give it back
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_EQ((*pool)->available(), 1u);
}

TEST(BufferPool, MovedFromHandleReturnsNothingTwice) {
  auto pool = BufferPool::create(2, 4096);
  ASSERT_TRUE(pool.has_value());
  {
    BufferPool::Buffer a = (*pool)->acquire();
    BufferPool::Buffer b = std::move(a);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_TRUE(b);
    EXPECT_TRUE(a.span().empty());  // NOLINT(bugprone-use-after-move)
    BufferPool::Buffer c = (*pool)->acquire();
    c = std::move(b);  // c's old buffer goes back
    EXPECT_EQ((*pool)->available(), 1u);
  }
  EXPECT_EQ((*pool)->available(), 2u);
}

TEST(BufferPool, ManyThreadsNeverShareABuffer) {
  auto pool = BufferPool::create(3, 64);
  ASSERT_TRUE(pool.has_value());
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        BufferPool::Buffer b = (*pool)->acquire();
        const auto mark = static_cast<std::byte>(t + 1);
        for (auto& x : b.span()) x = mark;
        std::this_thread::yield();
        for (auto x : b.span())
          if (x != mark) ++bad;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ((*pool)->available(), 3u);
}

TEST(BufferPool, RejectsEmptyPools) {
  EXPECT_FALSE(BufferPool::create(0, 4096).has_value());
  EXPECT_FALSE(BufferPool::create(4, 0).has_value());
}

// Plaintext passes through every buffer (the FUSE read path's too): locked where the limit
// allows. This process may lock (root, or a test run with enough RLIMIT_MEMLOCK).
TEST(BufferPool, BuffersAreLockedWhenTheLimitAllows) {
  auto pool = BufferPool::create(2, 8192);
  ASSERT_TRUE(pool.has_value());
  EXPECT_TRUE((*pool)->locked());
}

}  // namespace
}  // namespace cryptmap

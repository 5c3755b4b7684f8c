// The volume's write-back cache: coalescing, age-based and close-time write-back, write-through
// fallback when the cache is full of dirty data, failures that keep data dirty, read hits.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <random>
#include <thread>
#include <utility>

#include "tests/unit/volume/engine/volume_test_util.h"

namespace cryptmap::testing {
namespace {

using volume::EngineOptions;
using volume::VolumeOptions;

TEST(WriteBack, AdjacentDirtyBlocksAreCoalescedIntoOneStoreWrite) {
  VolumeOptions opts;
  opts.cache_bytes = 1 << 20;
  opts.flush_age_ms = 3600 * 1000;
  TestVolume t = make_test_volume(512, 4096, 4096 + 256 * 512, opts);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = image_plaintext(t, 0, 256 * 512);
  // 64 single-sector writes in a scrambled order into sectors 10..73.
  for (std::uint64_t i = 0; i < 64; ++i) {
    const std::uint64_t s = 10 + (i * 37) % 64;
    const auto d = pattern(512, s);
    ASSERT_TRUE(t.vol->write(ByteOffset{s * 512}, d));
    std::memcpy(model.data() + s * 512, d.data(), 512);
  }
  EXPECT_EQ(t.store->write_calls(), 0u) << "write-back: nothing reaches the store before flush";
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(t.store->write_calls(), 1u);
  EXPECT_EQ(t.store->bytes_written(), 64u * 512);
  EXPECT_EQ(image_plaintext(t, 0, model.size()), model);
  // Flushing again writes nothing.
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(t.store->write_calls(), 1u);
}

TEST(WriteBack, DirtyDataReachesTheImageAfterTheFlushAgeWithoutFsync) {
  VolumeOptions opts;
  opts.flush_age_ms = 40;
  TestVolume t = make_test_volume(4096, 0, 64 * 4096, opts);
  ASSERT_TRUE(t.vol);
  const auto d = pattern(3 * 4096 + 5, 77);
  ASSERT_TRUE(t.vol->write(ByteOffset{4096 - 2}, d));
  // Poll (bounded): the flusher must get there on its own.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (image_plaintext(t, 4096 - 2, d.size()) != d) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "dirty data never written back";
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(WriteBack, ClosingTheVolumeWritesBackAndSyncs) {
  volume::MemBackingStore store(64 * 512, "mem:close");
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;
  std::vector<std::byte> d = pattern(1000, 5);
  {
    TestVolume t = make_test_volume(512, 0, 0, opts, {}, {}, 0, &store);
    ASSERT_TRUE(t.vol);
    ASSERT_TRUE(t.vol->write(ByteOffset{700}, d));
    EXPECT_EQ(store.write_calls(), 0u);
  }
  EXPECT_GE(store.sync_calls(), 1u);
  TestVolume check;
  check.store = &store;
  check.ss = 512;
  check.key = 0xC0FFEE ^ 512;
  EXPECT_EQ(image_plaintext(check, 700, d.size()), d);
}

TEST(WriteBack, AFullCacheFallsBackToWriteThroughAndLosesNothing) {
  VolumeOptions opts;
  opts.cache_bytes = 4 * 512;  // four blocks
  opts.flush_age_ms = 3600 * 1000;
  EngineOptions eo;
  eo.dirty_percent = 100;
  TestVolume t = make_test_volume(512, 0, 256 * 512, opts, eo);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = image_plaintext(t, 0, 256 * 512);
  for (int i = 0; i < 50; ++i) {
    const std::uint64_t off = (static_cast<std::uint64_t>(i) * 1237) % (200 * 512);
    const auto d = pattern(3000, 1000 + i);
    ASSERT_TRUE(t.vol->write(ByteOffset{off}, d)) << i;
    std::memcpy(model.data() + off, d.data(), d.size());
    std::vector<std::byte> all(model.size());
    ASSERT_EQ(*t.vol->read(ByteOffset{0}, all), all.size());
    ASSERT_EQ(all, model) << i;
  }
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 0, model.size()), model);
}

TEST(WriteBack, FailedWriteBackKeepsDataDirtyAndReadableUntilItSucceeds) {
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;
  TestVolume t = make_test_volume(512, 0, 64 * 512, opts);
  ASSERT_TRUE(t.vol);
  const auto d = pattern(4 * 512, 3);
  ASSERT_TRUE(t.vol->write(ByteOffset{8 * 512}, d));
  t.store->fail_writes(9 * 512, 1);
  auto f = t.vol->flush();
  ASSERT_FALSE(f);
  EXPECT_EQ(to_errno(f.error()), EIO);
  std::vector<std::byte> back(d.size());
  ASSERT_TRUE(t.vol->read(ByteOffset{8 * 512}, back));
  EXPECT_EQ(back, d) << "data must stay readable from the cache";
  t.store->fail_writes(0, 0);
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 8 * 512, d.size()), d);
}

TEST(WriteBack, ThrottledWritersGetTheWriteBackErrorInsteadOfHanging) {
  VolumeOptions opts;
  opts.cache_bytes = 16 * 512;
  opts.flush_age_ms = 3600 * 1000;
  EngineOptions eo;
  eo.dirty_percent = 25;  // throttle at 4 dirty blocks
  TestVolume t = make_test_volume(512, 0, 64 * 512, opts, eo);
  ASSERT_TRUE(t.vol);
  t.store->fail_writes(0, 64 * 512);
  bool saw_error = false;
  for (int i = 0; i < 32 && !saw_error; ++i) {
    const auto d = pattern(512, i);
    auto w = t.vol->write(ByteOffset{static_cast<std::uint64_t>(i) * 512}, d);
    if (!w) {
      saw_error = true;
      EXPECT_EQ(to_errno(w.error()), EIO);
    }
  }
  EXPECT_TRUE(saw_error);
  t.store->fail_writes(0, 0);
  EXPECT_TRUE(t.vol->flush());
}

TEST(WriteBack, LargeStreamingReadsSeeDirtyBlocksNotYetInTheImage) {
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;
  EngineOptions eo;
  eo.cache_bypass_bytes = 64 * 1024;
  eo.buffer_bytes = 32 * 1024;  // several pieces per streaming read
  constexpr std::uint64_t kSize = 1 << 20;
  TestVolume t = make_test_volume(512, 4096, 4096 + kSize, opts, eo);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = image_plaintext(t, 0, kSize);
  const std::vector<std::byte> before = model;
  // Clean resident blocks too: read some ranges first (small reads fill the cache).
  std::vector<std::byte> small(3000);
  ASSERT_TRUE(t.vol->read(ByteOffset{5000}, small));
  for (int i = 0; i < 100; ++i) {
    const std::uint64_t off = (static_cast<std::uint64_t>(i) * 104729) % (kSize - 2000);
    const auto d = pattern(1 + i * 13, 500 + i);
    ASSERT_TRUE(t.vol->write(ByteOffset{off}, d));
    std::memcpy(model.data() + off, d.data(), d.size());
  }
  ASSERT_EQ(image_plaintext(t, 0, kSize), before) << "the writes must still be only in the cache";
  std::vector<std::byte> all(kSize - 777);
  ASSERT_EQ(*t.vol->read(ByteOffset{777}, all), all.size());
  EXPECT_TRUE(std::equal(all.begin(), all.end(), model.begin() + 777));
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 0, kSize), model);
}

// The race found by fio verify (#5): a streaming read fetched the store, then a write-back pass
// (it only takes the shared range, like the reader) wrote a dirty block and marked it clean
// before the reader looked for dirty blocks to overlay; the reader returned the stale store copy.
TEST(WriteBack, StreamingReadRacingAWriteBackPassReturnsTheNewData) {
  for (const std::uint32_t ss : {512u, 4096u}) {
    SCOPED_TRACE(ss);
    constexpr std::uint64_t kSize = 1 << 20;
    volume::MemBackingStore mem(kSize, "mem:interleave");
    auto owned = std::make_unique<BorrowedStore>(mem);
    BorrowedStore* store = owned.get();
    VolumeOptions opts;
    opts.flush_age_ms = 3600 * 1000;  // only the injected pass writes back
    EngineOptions eo;
    eo.cache_bypass_bytes = 64 * 1024;
    const std::uint64_t key = 0xC0FFEE ^ ss;
    auto v = volume::open_volume_with_engine(test_layout(ss, 0),
                                             std::make_unique<FakeSectorCipher>(ss, key), {},
                                             std::move(owned), opts, eo, nullptr);
    ASSERT_TRUE(v) << v.error().message();
    std::unique_ptr<volume::Volume> vol = std::move(*v);
    std::vector<std::byte> model(256 * 1024);
    ASSERT_EQ(*vol->read(ByteOffset{0}, model), model.size());
    // Dirty a few blocks (one whole, one partial) that the streaming read will cover.
    const auto a = pattern(ss, 1), b = pattern(100, 2);
    ASSERT_TRUE(vol->write(ByteOffset{10ull * ss}, a));
    ASSERT_TRUE(vol->write(ByteOffset{20ull * ss + 7}, b));
    std::memcpy(model.data() + 10 * ss, a.data(), a.size());
    std::memcpy(model.data() + 20 * ss + 7, b.data(), b.size());
    bool ran = false;
    store->after_read_once = [&] {
      ran = true;
      EXPECT_TRUE(vol->flush());  // the flusher's pass, interleaved right here
    };
    std::vector<std::byte> got(model.size());
    ASSERT_EQ(*vol->read(ByteOffset{0}, got), got.size());
    ASSERT_TRUE(ran);
    EXPECT_TRUE(got == model) << "a streaming read returned data older than an acknowledged write";
  }
}

// The same race, found by chance: threads mix small writes (they leave dirty blocks) with
// streaming reads and writes (>= cache_bypass_bytes) in regions they own, while a flusher with a
// 1 ms age writes back all the time and the cache is small enough to evict. Every read is
// checked against the thread's model; at the end the volume and the image match it.
TEST(WriteBack, StreamingAndSmallIoWithABusyFlusherLoseNothing) {
  constexpr unsigned kThreads = 4;
  constexpr std::uint64_t kRegion = 96 * 1024;  // per thread, not a buffer multiple
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kOps = 300;
#else
  constexpr int kOps = 3000;
#endif
  for (const std::uint32_t ss : {512u, 4096u}) {
    SCOPED_TRACE(ss);
    const std::uint64_t size = kThreads * kRegion;
    VolumeOptions opts;
    opts.cache_bytes = 128 * 1024;  // less than the volume: clean blocks get evicted
    opts.flush_age_ms = 1;
    EngineOptions eo;
    eo.cache_bypass_bytes = 16 * 1024;
    eo.buffer_bytes = 16 * 1024;  // streaming requests span several pieces
    TestVolume t = make_test_volume(ss, 4096, 4096 + size, opts, eo);
    ASSERT_TRUE(t.vol);
    std::vector<std::byte> model = image_plaintext(t, 0, size);
    std::atomic<std::uint64_t> bad{0};
    std::vector<std::thread> threads;
    for (unsigned th = 0; th < kThreads; ++th) {
      threads.emplace_back([&, th] {
        std::mt19937_64 rng(th * 131 + ss);
        const std::uint64_t base = th * kRegion;
        std::vector<std::byte> buf(kRegion), data(kRegion);
        for (int i = 0; i < kOps && bad == 0; ++i) {
          const bool big = rng() % 3 == 0;
          const std::uint64_t len =
              big ? 16 * 1024 + rng() % (kRegion - 16 * 1024) : 1 + rng() % (2 * ss);
          const std::uint64_t off = base + rng() % (kRegion - len + 1);
          if (rng() % 2 == 0) {
            fill_pattern(std::span(data).first(len), (std::uint64_t{th} << 40) | i);
            if (!t.vol->write(ByteOffset{off}, std::span(data).first(len))) ++bad;
            std::memcpy(model.data() + off, data.data(), len);
          } else {
            auto r = t.vol->read(ByteOffset{off}, std::span(buf).first(len));
            if (!r || *r != len || std::memcmp(buf.data(), model.data() + off, len) != 0) ++bad;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_EQ(bad.load(), 0u) << "a request failed or a read returned stale data";
    std::vector<std::byte> all(size);
    ASSERT_TRUE(t.vol->read(ByteOffset{0}, all));
    EXPECT_TRUE(all == model);
    ASSERT_TRUE(t.vol->flush());
    EXPECT_TRUE(image_plaintext(t, 0, size) == model);
  }
}

TEST(WriteBack, RepeatedReadsAreServedFromTheCache) {
  TestVolume t = make_test_volume(4096, 0, 64 * 4096);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> a(10 * 4096), b(10 * 4096);
  ASSERT_TRUE(t.vol->read(ByteOffset{100}, a));
  const auto reads = t.store->read_calls();
  ASSERT_TRUE(t.vol->read(ByteOffset{100}, b));
  EXPECT_EQ(t.store->read_calls(), reads);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace cryptmap::testing

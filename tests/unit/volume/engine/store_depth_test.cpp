// Store I/O at depth (#13): the engine hands the store several transfers at once. A write-back
// pass writes several runs as one batch; a streaming read reads several pieces as one batch; a
// writer at the dirty limit writes through itself instead of waiting for a flusher that is
// stuck in the store. Each test fails on the engine before #13 (batches of one, or a hang that
// the bounded waits turn into a failure).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>

#include "tests/unit/volume/engine/volume_test_util.h"

namespace cryptmap::testing {
namespace {

using volume::EngineOptions;
using volume::VolumeOptions;

struct Opened {
  std::unique_ptr<volume::MemBackingStore> mem;
  BorrowedStore* store = nullptr;  // owned by the volume
  TestVolume t;
};

// `splits`: what the store answers to splits_large_requests().
Opened open_watched(std::uint32_t ss, std::uint64_t size, VolumeOptions opts, EngineOptions eo,
                    std::function<void(std::uint64_t, bool)> hook = {}, bool splits = false) {
  Opened o;
  o.mem = std::make_unique<volume::MemBackingStore>(size, "mem:depth");
  auto store = std::make_unique<BorrowedStore>(*o.mem);
  store->on_io = std::move(hook);
  store->splits = splits;
  o.store = store.get();
  o.t = open_test_volume_over(*o.mem, std::move(store), ss, opts, eo);
  return o;
}

TEST(StoreDepth, AWriteBackPassWritesSeveralRunsAsOneBatch) {
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;
  Opened o = open_watched(512, 1 << 20, opts, {});
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 64 * 1024);
  // Six runs with gaps between them: not one coalesced write.
  for (std::uint64_t k = 0; k < 6; ++k) {
    const auto d = pattern(1024, k);
    const std::uint64_t off = k * 8192;
    ASSERT_TRUE(o.t.vol->write(ByteOffset{off}, d));
    std::memcpy(model.data() + off, d.data(), d.size());
  }
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_GE(o.store->largest_write_batch.load(), 4u) << "runs written one batch at a time";
  EXPECT_EQ(image_plaintext(o.t, 0, 64 * 1024), model);
}

// A durable write (Volume::write_fua) reaches the store as its durable writes, with no sync,
// and carries the newest bytes of every sector it touches: a partial sector whose newest bytes
// are only in the cache (dirty, never written back) is merged from there, not from the stale
// store. Reads afterwards see the same.
TEST(StoreDepth, ADurableWriteGoesToTheStoreAsDurableWritesMergedWithDirtyCachedSectors) {
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;
  Opened o = open_watched(512, 1 << 20, opts, {});
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 8192);
  const auto a = pattern(2048, 41);  // sectors 0-3, dirty in the cache
  ASSERT_TRUE(o.t.vol->write(ByteOffset{0}, a));
  std::memcpy(model.data(), a.data(), a.size());
  const auto b = pattern(1500, 42);  // bytes 1000..2500: partial sectors 1 and 4
  ASSERT_EQ(o.store->fua_writes.load(), 0);
  auto w = o.t.vol->write_fua(ByteOffset{1000}, b, [] {});
  ASSERT_TRUE(w) << w.error().message();
  std::memcpy(model.data() + 1000, b.data(), b.size());
  EXPECT_GE(o.store->fua_writes.load(), 1);
  EXPECT_EQ(o.store->syncs.load(), 0) << "a durable write flushed the whole store";
  // Sectors 1-4 in the store, before any write-back: the durable write's own bytes, merged.
  EXPECT_EQ(image_plaintext(o.t, 512, 2048),
            std::vector<std::byte>(model.begin() + 512, model.begin() + 2560));
  std::vector<std::byte> back(8192);
  ASSERT_TRUE(o.t.vol->read(ByteOffset{0}, back));
  EXPECT_EQ(back, model);
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_EQ(image_plaintext(o.t, 0, 8192), model);
}

TEST(StoreDepth, AStreamingReadReadsItsPiecesAsOneBatch) {
  VolumeOptions opts;
  opts.cache_bytes = 0;
  EngineOptions eo;
  eo.buffer_bytes = 64 * 1024;
  Opened o = open_watched(4096, 4 << 20, opts, eo);
  ASSERT_TRUE(o.t.vol);
  const auto d = pattern(1 << 20, 7);
  ASSERT_TRUE(o.t.vol->write(ByteOffset{4096}, d));
  std::vector<std::byte> back(d.size());
  ASSERT_TRUE(o.t.vol->read(ByteOffset{4096}, back));
  EXPECT_EQ(back, d);
  EXPECT_GE(o.store->largest_read_batch.load(), 2u) << "pieces read one at a time";
}

// A write-through request (no cache: every write is) hands its pieces to the store as one
// batch, each merged and encrypted before it is submitted; the bytes land where they belong,
// unaligned head and tail included.
TEST(StoreDepth, AWriteThroughRequestWritesItsPiecesAsOneBatch) {
  VolumeOptions opts;
  opts.cache_bytes = 0;
  EngineOptions eo;
  eo.buffer_bytes = 64 * 1024;
  Opened o = open_watched(4096, 4 << 20, opts, eo);
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 2 << 20);
  const auto d = pattern((1 << 20) - 1000, 8);
  ASSERT_TRUE(o.t.vol->write(ByteOffset{4096 + 300}, d));
  std::memcpy(model.data() + 4096 + 300, d.data(), d.size());
  EXPECT_GE(o.store->largest_write_batch.load(), 2u) << "pieces written one at a time";
  EXPECT_EQ(image_plaintext(o.t, 0, 2 << 20), model);
}

// Read-ahead loads a window as buffer-sized pieces in flight together (one store batch), not
// as one store read: requests below the streaming size read block by block (read_at), so only
// the windows can make a batch here.
TEST(StoreDepth, ReadAheadLoadsAWindowAsPiecesInFlightTogether) {
  EngineOptions eo;
  eo.buffer_bytes = 16 * 1024;
  eo.read_ahead_bytes = 64 * 1024;
  Opened o = open_watched(4096, 4 << 20, {}, eo);
  ASSERT_TRUE(o.t.vol);
  const std::vector<std::byte> model = image_plaintext(o.t, 0, 1 << 20);
  constexpr std::size_t kReq = 64 * 1024;  // below cache_bypass_bytes: not a streaming read
  for (std::size_t k = 0; k < 8; ++k) {
    std::vector<std::byte> back(kReq);
    ASSERT_TRUE(o.t.vol->read(ByteOffset{k * kReq}, back));
    EXPECT_TRUE(std::equal(back.begin(), back.end(), model.begin() + k * kReq)) << "read " << k;
  }
  EXPECT_GE(o.store->largest_read_batch.load(), 2u) << "read-ahead windows read in one piece";
}

// A store that splits large requests itself (RBD: librbd stripes one request over objects;
// BackingStore::splits_large_requests) gets each read-ahead window and the whole sectors of a
// streaming read as one store read; any other store gets them as buffer-sized pieces in one
// batch. Both kinds, each asserting its own shape: the test fails if the engine ignores the
// property either way. Sizes: 4 KiB sectors, 16 KiB buffers, 64 KiB windows.
class StoreSplitting : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr std::size_t kBuf = 16 * 1024;
  static constexpr std::size_t kWindow = 64 * 1024;
  Opened open(VolumeOptions opts) {
    EngineOptions eo;
    eo.buffer_bytes = kBuf;
    eo.read_ahead_bytes = kWindow;
    return open_watched(4096, 4 << 20, opts, eo, {}, GetParam());
  }
};

TEST_P(StoreSplitting, ReadAheadLoadsAWindowInTheShapeTheStoreWants) {
  Opened o = open({});
  ASSERT_TRUE(o.t.vol);
  const std::vector<std::byte> model = image_plaintext(o.t, 0, 1 << 20);
  // Requests below cache_bypass_bytes read block runs of at most one buffer (read_at): only the
  // windows can make a batch, or a read longer than a buffer.
  for (std::size_t k = 0; k < 8; ++k) {
    std::vector<std::byte> back(kWindow);
    ASSERT_TRUE(o.t.vol->read(ByteOffset{k * kWindow}, back));
    EXPECT_TRUE(std::equal(back.begin(), back.end(), model.begin() + k * kWindow)) << "read " << k;
  }
  if (GetParam()) {
    EXPECT_EQ(o.store->largest_read.load(), kWindow) << "a window was not read in one piece";
    EXPECT_EQ(o.store->largest_read_batch.load(), 0u) << "a window was cut into a batch";
  } else {
    EXPECT_GE(o.store->largest_read_batch.load(), 2u) << "a window was read in one piece";
    EXPECT_LE(o.store->largest_read.load(), kBuf) << "a read longer than a buffer";
  }
}

TEST_P(StoreSplitting, AStreamingReadReadsItsWholeSectorsInTheShapeTheStoreWants) {
  VolumeOptions opts;
  opts.cache_bytes = 0;  // every request streams
  Opened o = open(opts);
  ASSERT_TRUE(o.t.vol);
  // Partial head and tail sectors: they take buffer pieces either way.
  const std::uint64_t off = 4096 + 300;
  const std::vector<std::byte> model = image_plaintext(o.t, off, (1 << 20) - 1000);
  std::vector<std::byte> back(model.size());
  ASSERT_EQ(*o.t.vol->read(ByteOffset{off}, back), back.size());
  EXPECT_EQ(back, model);
  const std::size_t inner = (off + back.size()) / 4096 * 4096 - 2 * 4096;  // sectors 2..255
  if (GetParam()) {
    EXPECT_EQ(o.store->largest_read.load(), inner) << "the whole sectors were not one read";
  } else {
    EXPECT_GE(o.store->largest_read_batch.load(), 2u) << "pieces read one at a time";
    EXPECT_LE(o.store->largest_read.load(), kBuf) << "a read longer than a buffer";
  }
}

// Dirty blocks in the cache: the store is not current, so a streaming read must not take its
// whole sectors from it in one read (the per-block path returns the cached data), whichever
// kind of store it is.
TEST_P(StoreSplitting, AStreamingReadOverDirtyBlocksReturnsTheirNewestData) {
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;
  Opened o = open(opts);
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 512 * 1024);
  for (std::uint64_t k = 0; k < 4; ++k) {  // dirty blocks spread over the range
    const auto d = pattern(4096, 70 + k);
    const std::uint64_t at = 8192 + k * 100 * 1024;
    ASSERT_TRUE(o.t.vol->write(ByteOffset{at}, d));
    std::memcpy(model.data() + at, d.data(), d.size());
  }
  std::vector<std::byte> back(model.size());
  ASSERT_EQ(*o.t.vol->read(ByteOffset{0}, back), back.size());
  EXPECT_EQ(back, model) << "a streaming read returned stale store data";
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_EQ(image_plaintext(o.t, 0, model.size()), model);
}

INSTANTIATE_TEST_SUITE_P(StoreDepth, StoreSplitting, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("SplitsItself") : std::string("Pieces");
                         });

// The flusher is held inside its store write of blocks [0, 4); the cache is at its dirty limit.
// A writer of other blocks must still complete (written through by its own thread), where it
// used to wait for the stuck pass. Released afterwards, nothing is lost.
TEST(StoreDepth, WritersAtTheDirtyLimitWriteThroughWhileTheFlusherIsStuck) {
  constexpr std::uint32_t kSs = 512;
  std::mutex mu;
  std::condition_variable cv;
  bool held = false, release = false;
  auto hook = [&](std::uint64_t off, bool write) {
    if (!write || off >= 4 * kSs) return;
    std::unique_lock lock(mu);
    held = true;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return release; });
  };
  VolumeOptions opts;
  opts.cache_bytes = 16 * kSs;
  opts.flush_age_ms = 3600 * 1000;
  EngineOptions eo;
  eo.dirty_percent = 25;  // the limit: 4 dirty blocks; the flusher is kicked at 2
  Opened o = open_watched(kSs, 1 << 20, opts, eo, hook);
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 64 * kSs);
  auto put = [&](std::uint64_t block, std::uint64_t seed) {
    const auto d = pattern(kSs, seed);
    std::memcpy(model.data() + block * kSs, d.data(), kSs);
    return static_cast<bool>(o.t.vol->write(ByteOffset{block * kSs}, d));
  };
  for (std::uint64_t b = 0; b < 4; ++b) ASSERT_TRUE(put(b, b));
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return held; }))
        << "the flusher never reached the store";
  }
  auto writer = std::async(std::launch::async, [&] {
    bool ok = true;
    for (std::uint64_t b = 20; b < 40; ++b) ok = put(b, 100 + b) && ok;
    return ok;
  });
  const bool done = writer.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  EXPECT_TRUE(done) << "a writer at the dirty limit waited for the stuck flusher";
  EXPECT_TRUE(writer.get());
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_EQ(image_plaintext(o.t, 0, 64 * kSs), model);
}

}  // namespace
}  // namespace cryptmap::testing

// SectorCache (ShardedLruCache) in LevelDB cache_test style: hits, eviction order, scan
// resistance, pins never evicted, erase while pinned, dirty blocks never evicted, versioned
// write-back, concurrency (run under TSan).
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "cache/sector_cache.h"

namespace cryptmap::cache {
namespace {

constexpr std::uint32_t kBs = 512;

std::unique_ptr<SectorCache> make(std::uint64_t blocks, std::uint32_t shards = 1,
                                  std::uint32_t protected_percent = 80) {
  CacheOptions o;
  o.capacity_bytes = blocks * kBs;
  o.block_size = kBs;
  o.shards = shards;
  o.protected_percent = protected_percent;
  auto c = make_sharded_lru_cache(o);
  EXPECT_TRUE(c) << c.error().message();
  return c ? std::move(*c) : nullptr;
}

std::vector<std::byte> block(std::uint64_t v) {
  std::vector<std::byte> b(kBs);
  for (std::size_t i = 0; i < kBs; ++i) b[i] = static_cast<std::byte>(v * 31 + i);
  return b;
}

bool holds(SectorCache& c, std::uint64_t index, std::uint64_t v) {
  std::vector<std::byte> b(kBs);
  return c.read(index, 0, b) && b == block(v);
}

TEST(SectorCache, HitsMissesAndPartialCopies) {
  auto c = make(8);
  std::vector<std::byte> b(kBs);
  EXPECT_FALSE(c->read(1, 0, b));
  EXPECT_EQ(c->put(1, block(1), false), PutResult::kInserted);
  EXPECT_TRUE(holds(*c, 1, 1));
  std::vector<std::byte> part(10);
  ASSERT_TRUE(c->read(1, 100, part));
  EXPECT_TRUE(std::equal(part.begin(), part.end(), block(1).begin() + 100));
  // A clean put never overwrites; a dirty one does.
  EXPECT_EQ(c->put(1, block(2), false), PutResult::kKeptExisting);
  EXPECT_TRUE(holds(*c, 1, 1));
  EXPECT_EQ(c->put(1, block(3), true), PutResult::kUpdated);
  EXPECT_TRUE(holds(*c, 1, 3));
  EXPECT_EQ(c->dirty_bytes(), kBs);
  const auto s = c->stats();
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.resident_blocks, 1u);
}

TEST(SectorCache, EvictsTheLeastRecentlyUsedProbationaryBlock) {
  auto c = make(4);
  for (std::uint64_t i = 0; i < 4; ++i) c->put(i, block(i), false);
  EXPECT_EQ(c->put(4, block(4), false), PutResult::kInserted);
  EXPECT_FALSE(c->contains(0));
  EXPECT_TRUE(c->contains(1));
  EXPECT_EQ(c->stats().evictions, 1u);
}

TEST(SectorCache, ASequentialScanDoesNotFlushTheHotSet) {
  auto c = make(16);
  for (std::uint64_t i = 0; i < 8; ++i) c->put(i, block(i), false);
  for (std::uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(holds(*c, i, i));  // promote
  for (std::uint64_t i = 1000; i < 1200; ++i) {
    c->put(i, block(i), false);
    (void)c->contains(i);
  }
  for (std::uint64_t i = 0; i < 8; ++i) EXPECT_TRUE(holds(*c, i, i)) << i;
}

TEST(SectorCache, DirtyBlocksAreNeverEvicted) {
  auto c = make(4);
  for (std::uint64_t i = 0; i < 4; ++i) ASSERT_EQ(c->put(i, block(i), true), PutResult::kInserted);
  EXPECT_EQ(c->put(9, block(9), false), PutResult::kNoRoom);
  EXPECT_EQ(c->put(9, block(9), true), PutResult::kNoRoom);
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_TRUE(holds(*c, i, i));
  std::vector<std::byte> snap(kBs);
  auto v = c->snapshot_dirty(2, snap);
  ASSERT_TRUE(v);
  EXPECT_EQ(snap, block(2));
  ASSERT_TRUE(c->mark_clean(2, *v));
  EXPECT_EQ(c->put(9, block(9), false), PutResult::kInserted);
  EXPECT_FALSE(c->contains(2));
  EXPECT_EQ(c->stats().no_room, 2u);
}

TEST(SectorCache, PinnedBlocksAreNeverEvictedAndSurviveErase) {
  auto c = make(2);
  c->put(1, block(1), false);
  SectorCache::Pin p = c->pin(1);
  ASSERT_TRUE(p);
  EXPECT_FALSE(c->pin(77));
  c->put(2, block(2), false);
  c->put(3, block(3), false);  // evicts 2, not the pinned 1
  EXPECT_TRUE(c->contains(1));
  EXPECT_FALSE(c->contains(2));
  EXPECT_EQ(c->put(4, block(4), false), PutResult::kInserted);  // evicts 3
  EXPECT_EQ(c->put(5, block(5), false), PutResult::kInserted);  // evicts 4
  EXPECT_TRUE(c->contains(1));
  c->erase(1);
  EXPECT_FALSE(c->contains(1));
  std::vector<std::byte> b(kBs);
  p.read(0, b);
  EXPECT_EQ(b, block(1)) << "a pinned block's memory lives until the pin goes";
  // While the erased block is still pinned only one slot is usable.
  EXPECT_EQ(c->put(6, block(6), false), PutResult::kInserted);
  EXPECT_FALSE(c->contains(5));
  p.reset();
  EXPECT_EQ(c->put(7, block(7), false), PutResult::kInserted);
  EXPECT_TRUE(c->contains(6));
  EXPECT_TRUE(c->contains(7));
}

TEST(SectorCache, WriteBackNeverLosesAWriteThatRacedTheSnapshot) {
  auto c = make(8);
  ASSERT_EQ(c->put(5, block(1), true), PutResult::kInserted);
  std::vector<std::byte> snap(kBs);
  auto v1 = c->snapshot_dirty(5, snap);
  ASSERT_TRUE(v1);
  const auto patch = block(9);
  ASSERT_TRUE(c->write_if_present(5, 10, std::span(patch).first(20)));
  EXPECT_FALSE(c->mark_clean(5, *v1)) << "modified after the snapshot: must stay dirty";
  EXPECT_EQ(c->dirty_bytes(), kBs);
  auto v2 = c->snapshot_dirty(5, snap);
  ASSERT_TRUE(v2);
  EXPECT_TRUE(std::equal(patch.begin(), patch.begin() + 20, snap.begin() + 10));
  EXPECT_TRUE(c->mark_clean(5, *v2));
  EXPECT_EQ(c->dirty_bytes(), 0u);
  EXPECT_FALSE(c->snapshot_dirty(5, snap));
  EXPECT_FALSE(c->write_if_present(6, 0, std::span(patch).first(1)));
}

// A block erased and put again after a snapshot gets a version the snapshot does not hold
// (a write-through between a write-back's snapshot and its mark_clean drops the block, and a
// later write re-inserts it: that newer write must stay dirty).
TEST(SectorCache, AReinsertedBlockNeverRepeatsASnapshotsVersion) {
  auto c = make(8);
  ASSERT_EQ(c->put(5, block(1), true), PutResult::kInserted);
  std::vector<std::byte> snap(kBs);
  auto v1 = c->snapshot_dirty(5, snap);
  ASSERT_TRUE(v1);
  c->erase(5);
  ASSERT_EQ(c->put(5, block(2), true), PutResult::kInserted);
  EXPECT_FALSE(c->mark_clean(5, *v1)) << "the re-inserted block was marked clean unwritten";
  EXPECT_EQ(c->dirty_bytes(), kBs);
}

TEST(SectorCache, CollectDirtyAndOldestDirty) {
  auto c = make(64, 4);
  EXPECT_FALSE(c->oldest_dirty());
  for (std::uint64_t i = 0; i < 20; ++i) c->put(i, block(i), i % 3 == 0);
  std::vector<std::uint64_t> out(64);
  const std::size_t n = c->collect_dirty(out);
  out.resize(n);
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, (std::vector<std::uint64_t>{0, 3, 6, 9, 12, 15, 18}));
  EXPECT_TRUE(c->oldest_dirty());
  std::vector<std::uint64_t> two(2);
  EXPECT_EQ(c->collect_dirty(two), 2u);
  c->erase(3);
  EXPECT_EQ(c->dirty_bytes(), 6u * kBs);
}

TEST(SectorCache, RejectsBadOptions) {
  CacheOptions o;
  o.block_size = 1000;
  EXPECT_EQ(make_sharded_lru_cache(o).error().code, Errc::kInvalid);
  o.block_size = 4096;
  o.capacity_bytes = 100;
  EXPECT_EQ(make_sharded_lru_cache(o).error().code, Errc::kInvalid);
}

// Blocks are self-describing (every byte derives from one value): a torn copy is detected.
TEST(SectorCache, ConcurrentUseNeverTearsABlock) {
  auto c = make(256, 8);
  std::atomic<int> torn{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::byte> b(kBs);
      for (int i = 0; i < 20000; ++i) {
        const std::uint64_t idx = rng() % 512;
        switch (rng() % 5) {
          case 0:
            c->put(idx, block(rng() % 100), rng() % 2 == 0);
            break;
          case 1: {
            if (c->read(idx, 0, b)) {
              for (std::size_t k = 1; k < kBs; ++k) {
                if (static_cast<std::uint8_t>(b[k]) !=
                    static_cast<std::uint8_t>(static_cast<std::uint8_t>(b[0]) + k)) {
                  ++torn;
                  break;
                }
              }
            }
            break;
          }
          case 2: {
            auto v = c->snapshot_dirty(idx, b);
            if (v) c->mark_clean(idx, *v);
            break;
          }
          case 3: {
            auto p = c->pin(idx);
            if (p) p.read(0, b);
            break;
          }
          case 4:
            if (rng() % 10 == 0) c->erase(idx);
            break;
        }
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(torn.load(), 0);
  std::vector<std::uint64_t> out(256);
  EXPECT_EQ(c->collect_dirty(out) * kBs, c->dirty_bytes());
}

}  // namespace
}  // namespace cryptmap::cache

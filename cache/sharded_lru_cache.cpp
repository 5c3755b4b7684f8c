// ShardedLruCache — see sector_cache.h. Each shard is an independent segmented LRU over a
// fixed array of entries (intrusive lists and an intrusive hash chain, all indices into that
// array), so the steady state allocates nothing.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "base/check.h"
#include "base/locked_memory.h"
#include "base/mutex.h"
#include "base/secret.h"
#include "cache/sector_cache.h"

namespace cryptmap::cache {
namespace {

constexpr std::uint32_t kNil = ~std::uint32_t{0};

enum class Segment : std::uint8_t { kProbation, kProtected };

struct Entry {
  std::uint64_t key = 0;
  std::uint64_t version = 0;
  std::int64_t dirty_since_ns = 0;
  std::uint32_t hnext = kNil;                // hash chain, or free list when unused
  std::uint32_t prev = kNil, next = kNil;    // LRU list links (only when in_lru)
  std::uint32_t dprev = kNil, dnext = kNil;  // dirty list links (only when dirty)
  std::uint32_t pins = 0;
  Segment segment = Segment::kProbation;
  bool in_lru = false;
  bool in_table = false;
  bool dirty = false;
  bool used = false;
};

struct List {
  std::uint32_t head = kNil;  // MRU
  std::uint32_t tail = kNil;  // LRU
  std::uint32_t size = 0;
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

class Shard {
 public:
  void init(std::byte* mem, std::uint32_t capacity, std::uint32_t block_size,
            std::uint32_t protected_percent) {
    MutexLock lock(mu);  // before the shard is shared: uncontended, keeps the rule uniform
    mem_ = mem;
    bs_ = block_size;
    entries_.resize(capacity);
    std::uint32_t nb = 1;
    while (nb < capacity) nb <<= 1;
    buckets_.assign(nb, kNil);
    mask_ = nb - 1;
    for (std::uint32_t i = 0; i < capacity; ++i)
      entries_[i].hnext = i + 1 < capacity ? i + 1 : kNil;
    free_ = capacity > 0 ? 0 : kNil;
    protected_cap_ = std::max<std::uint32_t>(
        1, static_cast<std::uint32_t>(std::uint64_t{capacity} * protected_percent / 100));
  }

  Mutex mu;

  // All below: the caller holds mu (checked by clang's -Wthread-safety).
  std::byte* data(std::uint32_t i) REQUIRES(mu) { return mem_ + std::size_t{i} * bs_; }

  std::uint32_t find(std::uint64_t key) const REQUIRES(mu) {
    for (std::uint32_t i = buckets_[bucket(key)]; i != kNil; i = entries_[i].hnext) {
      if (entries_[i].key == key) return i;
    }
    return kNil;
  }

  // A hit: promotes probationary blocks, refreshes protected ones.
  void touch(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    if (e.segment == Segment::kProbation) {
      const bool was_linked = e.in_lru;
      if (was_linked) unlink_lru(i);
      e.segment = Segment::kProtected;
      if (was_linked) push_lru(i);
      // Keep the protected segment bounded: demote its LRU block to probation.
      while (protected_.size > protected_cap_) {
        const std::uint32_t t = protected_.tail;
        unlink_lru(t);
        entries_[t].segment = Segment::kProbation;
        push_lru(t);
      }
    } else if (e.in_lru) {
      unlink_lru(i);
      push_lru(i);
    }
  }

  // Allocates a slot for `key` (absent), evicting a clean unpinned block if needed.
  std::uint32_t allocate(std::uint64_t key, std::uint64_t* evictions) REQUIRES(mu) {
    std::uint32_t i = free_;
    if (i != kNil) {
      free_ = entries_[i].hnext;
    } else {
      i = probation_.tail != kNil ? probation_.tail : protected_.tail;
      if (i == kNil) return kNil;
      unlink_lru(i);
      remove_from_table(i);
      secure_zero(data(i), bs_);  // plaintext never outlives its residency
      ++*evictions;
    }
    Entry& e = entries_[i];
    e = Entry{};
    e.key = key;
    e.used = true;
    e.in_table = true;
    const std::uint32_t b = bucket(key);
    e.hnext = buckets_[b];
    buckets_[b] = i;
    ++resident_;
    return i;
  }

  void set_dirty(std::uint32_t i, std::atomic<std::uint64_t>& dirty_blocks) REQUIRES(mu) {
    Entry& e = entries_[i];
    e.version = ++versions_;  // unique in the shard: an erased and re-inserted block never
                              // repeats a version a write-back snapshot holds
    if (e.dirty) return;
    e.dirty = true;
    e.dirty_since_ns = now_ns();
    if (e.in_lru) unlink_lru(i);
    // Append to the dirty list (oldest first).
    e.dprev = dirty_.tail;
    e.dnext = kNil;
    if (dirty_.tail != kNil) entries_[dirty_.tail].dnext = i;
    dirty_.tail = i;
    if (dirty_.head == kNil) dirty_.head = i;
    ++dirty_.size;
    dirty_blocks.fetch_add(1, std::memory_order_relaxed);
  }

  void clear_dirty(std::uint32_t i, std::atomic<std::uint64_t>& dirty_blocks) REQUIRES(mu) {
    Entry& e = entries_[i];
    if (!e.dirty) return;
    if (e.dprev != kNil)
      entries_[e.dprev].dnext = e.dnext;
    else
      dirty_.head = e.dnext;
    if (e.dnext != kNil)
      entries_[e.dnext].dprev = e.dprev;
    else
      dirty_.tail = e.dprev;
    e.dprev = e.dnext = kNil;
    e.dirty = false;
    --dirty_.size;
    // Release: a reader that sees the count reach 0 (acquire) also sees the write-back's store
    // write that preceded mark_clean().
    dirty_blocks.fetch_sub(1, std::memory_order_release);
    relink(i);
  }

  // Puts an evictable block (clean, unpinned, resident) back into its segment's LRU list.
  void relink(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    if (!e.in_lru && !e.dirty && e.pins == 0 && e.in_table) push_lru(i);
  }

  void pin(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    ++e.pins;
    if (e.in_lru) unlink_lru(i);
  }

  // Returns true when the slot was released.
  bool unpin(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    CRYPTMAP_CHECK(e.pins > 0);
    if (--e.pins == 0 && !e.in_table) {
      release(i);
      return true;
    }
    relink(i);
    return false;
  }

  void erase(std::uint32_t i, std::atomic<std::uint64_t>& dirty_blocks) REQUIRES(mu) {
    Entry& e = entries_[i];
    if (e.dirty) {
      // Drop from the dirty list without relinking.
      e.pins += 1;
      clear_dirty(i, dirty_blocks);
      e.pins -= 1;
    }
    if (e.in_lru) unlink_lru(i);
    remove_from_table(i);
    if (e.pins == 0) release(i);
  }

  // Erases every table entry keyed `first` or above; returns how many of them were dirty.
  std::uint64_t erase_from(std::uint64_t first, std::atomic<std::uint64_t>& dirty_blocks)
      REQUIRES(mu) {
    std::uint64_t dirty = 0;
    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
      const Entry& e = entries_[i];
      if (!e.in_table || e.key < first) continue;
      if (e.dirty) ++dirty;
      erase(i, dirty_blocks);
    }
    return dirty;
  }

  std::size_t collect_dirty(std::span<std::uint64_t> out) const REQUIRES(mu) {
    std::size_t n = 0;
    for (std::uint32_t i = dirty_.head; i != kNil && n < out.size(); i = entries_[i].dnext) {
      out[n++] = entries_[i].key;
    }
    return n;
  }
  std::optional<std::int64_t> oldest_dirty_ns() const REQUIRES(mu) {
    if (dirty_.head == kNil) return std::nullopt;
    return entries_[dirty_.head].dirty_since_ns;
  }

  Entry& entry(std::uint32_t i) REQUIRES(mu) { return entries_[i]; }
  std::uint64_t resident() const REQUIRES(mu) { return resident_; }

 private:
  std::uint32_t bucket(std::uint64_t key) const REQUIRES(mu) {
    return static_cast<std::uint32_t>(mix(key)) & mask_;
  }
  List& list_of(const Entry& e) REQUIRES(mu) {
    return e.segment == Segment::kProbation ? probation_ : protected_;
  }
  void push_lru(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    List& l = list_of(e);
    e.prev = kNil;
    e.next = l.head;
    if (l.head != kNil) entries_[l.head].prev = i;
    l.head = i;
    if (l.tail == kNil) l.tail = i;
    ++l.size;
    e.in_lru = true;
  }
  void unlink_lru(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    List& l = list_of(e);
    if (e.prev != kNil)
      entries_[e.prev].next = e.next;
    else
      l.head = e.next;
    if (e.next != kNil)
      entries_[e.next].prev = e.prev;
    else
      l.tail = e.prev;
    e.prev = e.next = kNil;
    --l.size;
    e.in_lru = false;
  }
  void remove_from_table(std::uint32_t i) REQUIRES(mu) {
    Entry& e = entries_[i];
    if (!e.in_table) return;
    std::uint32_t* link = &buckets_[bucket(e.key)];
    while (*link != i) link = &entries_[*link].hnext;
    *link = e.hnext;
    e.hnext = kNil;
    e.in_table = false;
    --resident_;
  }
  void release(std::uint32_t i) REQUIRES(mu) {
    secure_zero(data(i), bs_);
    Entry& e = entries_[i];
    e = Entry{};
    e.hnext = free_;
    free_ = i;
  }

  std::byte* mem_ = nullptr;
  std::uint32_t bs_ = 0;
  std::vector<Entry> entries_ GUARDED_BY(mu);
  std::vector<std::uint32_t> buckets_ GUARDED_BY(mu);
  std::uint32_t mask_ = 0;
  std::uint32_t free_ GUARDED_BY(mu) = kNil;
  std::uint64_t versions_ GUARDED_BY(mu) = 0;  // the last version handed out
  std::uint32_t protected_cap_ GUARDED_BY(mu) = 1;
  List probation_ GUARDED_BY(mu);
  List protected_ GUARDED_BY(mu);
  List dirty_ GUARDED_BY(mu);
  std::uint64_t resident_ GUARDED_BY(mu) = 0;
};

class ShardedLruCache final : public SectorCache {
 public:
  ShardedLruCache(LockedMemory mem, std::uint32_t shards, std::uint32_t per_shard,
                  const CacheOptions& o)
      : mem_(std::move(mem)),
        bs_(o.block_size),
        shard_bits_(static_cast<std::uint32_t>(__builtin_ctz(shards))),
        shards_(shards),
        capacity_(std::uint64_t{shards} * per_shard) {
    for (std::uint32_t s = 0; s < shards; ++s) {
      shards_[s].init(mem_.data() + std::size_t{s} * per_shard * bs_, per_shard, bs_,
                      std::clamp<std::uint32_t>(o.protected_percent, 1, 100));
    }
  }
  // mem_ wipes the blocks (all of them) when it is unmapped.
  ~ShardedLruCache() override = default;

  bool read(std::uint64_t index, std::size_t skip, std::span<std::byte> dst) override {
    CRYPTMAP_CHECK(skip + dst.size() <= bs_);
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    const std::uint32_t i = sh.find(index);
    if (i == kNil) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    std::memcpy(dst.data(), sh.data(i) + skip, dst.size());
    sh.touch(i);
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  bool contains(std::uint64_t index) override {
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    return sh.find(index) != kNil;
  }

  bool write_if_present(std::uint64_t index, std::size_t skip,
                        std::span<const std::byte> src) override {
    CRYPTMAP_CHECK(skip + src.size() <= bs_);
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    const std::uint32_t i = sh.find(index);
    if (i == kNil) return false;
    std::memcpy(sh.data(i) + skip, src.data(), src.size());
    sh.touch(i);
    sh.set_dirty(i, dirty_blocks_);
    return true;
  }

  PutResult put(std::uint64_t index, std::span<const std::byte> block, bool dirty) override {
    CRYPTMAP_CHECK(block.size() == bs_);
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    std::uint32_t i = sh.find(index);
    if (i != kNil) {
      if (!dirty) return PutResult::kKeptExisting;
      std::memcpy(sh.data(i), block.data(), bs_);
      sh.touch(i);
      sh.set_dirty(i, dirty_blocks_);
      return PutResult::kUpdated;
    }
    std::uint64_t ev = 0;
    i = sh.allocate(index, &ev);
    if (ev) evictions_.fetch_add(ev, std::memory_order_relaxed);
    if (i == kNil) {
      no_room_.fetch_add(1, std::memory_order_relaxed);
      return PutResult::kNoRoom;
    }
    std::memcpy(sh.data(i), block.data(), bs_);
    if (dirty) {
      sh.set_dirty(i, dirty_blocks_);
    } else {
      sh.relink(i);
    }
    inserts_.fetch_add(1, std::memory_order_relaxed);
    return PutResult::kInserted;
  }

  void erase(std::uint64_t index) override {
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    const std::uint32_t i = sh.find(index);
    if (i != kNil) sh.erase(i, dirty_blocks_);
  }

  std::uint64_t erase_from(std::uint64_t first) override {
    std::uint64_t dirty = 0;
    for (Shard& sh : shards_) {
      MutexLock lock(sh.mu);
      dirty += sh.erase_from(first, dirty_blocks_);
    }
    return dirty;
  }

  Pin pin(std::uint64_t index) override {
    const std::uint32_t s = shard_of(index);
    Shard& sh = shards_[s];
    MutexLock lock(sh.mu);
    const std::uint32_t i = sh.find(index);
    if (i == kNil) return {};
    sh.pin(i);
    return make_pin(s, i);
  }

  std::size_t collect_dirty(std::span<std::uint64_t> out) override {
    std::size_t n = 0;
    for (Shard& sh : shards_) {
      MutexLock lock(sh.mu);
      n += sh.collect_dirty(out.subspan(n));
    }
    return n;
  }

  std::optional<std::uint64_t> snapshot_dirty(std::uint64_t index,
                                              std::span<std::byte> dst) override {
    CRYPTMAP_CHECK(dst.size() == bs_);
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    const std::uint32_t i = sh.find(index);
    if (i == kNil || !sh.entry(i).dirty) return std::nullopt;
    std::memcpy(dst.data(), sh.data(i), bs_);
    return sh.entry(i).version;
  }

  bool mark_clean(std::uint64_t index, std::uint64_t version) override {
    Shard& sh = shard(index);
    MutexLock lock(sh.mu);
    const std::uint32_t i = sh.find(index);
    if (i == kNil || !sh.entry(i).dirty || sh.entry(i).version != version) return false;
    sh.clear_dirty(i, dirty_blocks_);
    return true;
  }

  std::optional<std::chrono::steady_clock::time_point> oldest_dirty() override {
    std::optional<std::int64_t> best;
    for (Shard& sh : shards_) {
      MutexLock lock(sh.mu);
      const auto t = sh.oldest_dirty_ns();
      if (t && (!best || *t < *best)) best = t;
    }
    if (!best) return std::nullopt;
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(*best));
  }

  std::uint64_t dirty_bytes() const noexcept override {
    return dirty_blocks_.load(std::memory_order_acquire) * bs_;
  }
  std::uint64_t capacity_blocks() const noexcept override { return capacity_; }
  std::uint32_t block_size() const noexcept override { return bs_; }
  bool memory_locked() const noexcept override { return mem_.locked(); }

  CacheStats stats() override {
    CacheStats s;
    s.hits = hits_.load();
    s.misses = misses_.load();
    s.inserts = inserts_.load();
    s.evictions = evictions_.load();
    s.no_room = no_room_.load();
    s.dirty_blocks = dirty_blocks_.load();
    for (Shard& sh : shards_) {
      MutexLock lock(sh.mu);
      s.resident_blocks += sh.resident();
    }
    return s;
  }

 protected:
  void unpin(std::uint32_t s, std::uint32_t slot) noexcept override {
    Shard& sh = shards_[s];
    MutexLock lock(sh.mu);
    sh.unpin(slot);
  }
  void pinned_read(std::uint32_t s, std::uint32_t slot, std::size_t skip,
                   std::span<std::byte> dst) override {
    CRYPTMAP_CHECK(skip + dst.size() <= bs_);
    Shard& sh = shards_[s];
    MutexLock lock(sh.mu);
    std::memcpy(dst.data(), sh.data(slot) + skip, dst.size());
  }

 private:
  std::uint32_t shard_of(std::uint64_t index) const {
    if (shard_bits_ == 0) return 0;
    return static_cast<std::uint32_t>((index * 0x9E3779B97F4A7C15ull) >> (64 - shard_bits_));
  }
  Shard& shard(std::uint64_t index) { return shards_[shard_of(index)]; }

  const LockedMemory mem_;  // the blocks: plaintext
  const std::uint32_t bs_;
  const std::uint32_t shard_bits_;
  std::vector<Shard> shards_;
  const std::uint64_t capacity_;
  std::atomic<std::uint64_t> dirty_blocks_{0};
  std::atomic<std::uint64_t> hits_{0}, misses_{0}, inserts_{0}, evictions_{0}, no_room_{0};
};

}  // namespace

Result<std::unique_ptr<SectorCache>> make_sharded_lru_cache(const CacheOptions& o) {
  const std::uint32_t bs = o.block_size;
  if (bs < 512 || bs > 65536 || (bs & (bs - 1)) != 0) {
    return make_error_fmt(Errc::kInvalid, "sector cache: block size", bs,
                          "must be a power of two from 512 to 65536");
  }
  const std::uint64_t blocks = o.capacity_bytes / bs;
  if (blocks == 0 || blocks > (1ull << 31)) {
    return make_error_fmt(Errc::kInvalid, "sector cache: capacity", o.capacity_bytes,
                          "must hold between 1 and 2^31 blocks of %u bytes", bs);
  }
  std::uint32_t shards = 1;
  while (shards * 2 <= std::max<std::uint32_t>(1, o.shards) && shards * 2 <= blocks) shards *= 2;
  const auto per_shard = static_cast<std::uint32_t>(blocks / shards);
  const std::size_t bytes = std::size_t{shards} * per_shard * bs;
  // Faulted in (and locked where permitted) now, at open: a page first touched during I/O
  // could be charged while we serve a loop device's writeback (base/io_memory.h). Costs about
  // 230 ms for 64 MiB here, once.
  Result<LockedMemory> mem =
      LockedMemory::allocate(bytes, MemoryLock::kBestEffort, "the sector cache");
  if (!mem) {
    Error e = make_error_fmt(Errc::kNoSpace, "sector cache: allocate", bytes,
                             "cannot map the cache memory; lower --cache-size");
    e.sys_errno = mem.error().sys_errno;
    return e;
  }
  try {
    return std::unique_ptr<SectorCache>(
        std::make_unique<ShardedLruCache>(std::move(*mem), shards, per_shard, o));
  } catch (const std::bad_alloc&) {
    return make_error(Errc::kNoSpace, "sector cache: allocate the entry tables");
  }
}

}  // namespace cryptmap::cache

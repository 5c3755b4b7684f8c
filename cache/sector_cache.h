// SectorCache — a bounded cache of plaintext blocks (one encryption sector each) keyed by
// SectorIndex value, with dirty tracking for write-back. It knows nothing of crypto or of the
// image: the volume decides what a block means, when to fill it and how to write it back
// (as LevelDB's Cache knows nothing of tables).
//
// Contents: the cache copies bytes in and out under its own (sharded) locks, so a reader never
// sees a half-written block and no caller holds a pointer into cache memory. Memory for every
// block is allocated once at creation (one mlock()ed, MADV_DONTDUMP mapping; nothing is
// allocated afterwards), and a block's plaintext is wiped when it is evicted or erased, and
// when the cache is destroyed.
//
// Replacement (ShardedLruCache): segmented LRU per shard. New blocks enter the probationary
// segment; a hit there promotes the block to the protected segment (at most
// `protected_percent` of the shard); eviction takes the probationary LRU block first. A long
// sequential scan therefore only churns the probationary segment and cannot flush the hot set.
// Dirty blocks and pinned blocks are never evicted (they are not in any LRU list).
//
// Dirty blocks carry a version (a new one on every modification, never reused for the same
// index, even after an erase and a re-insert) and the time they became dirty.
// Write-back is the caller's: collect_dirty() -> snapshot_dirty() (copy + version) -> write
// the copy -> mark_clean(version), which succeeds only if nobody modified the block since the
// snapshot, so a write racing a write-back is never lost.
//
// Thread-safety: every method is thread-safe. Pin is a move-only RAII handle; the cache must
// outlive it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <utility>

#include "base/result.h"

namespace cryptmap::cache {

struct CacheOptions {
  std::uint64_t capacity_bytes = 64ull << 20;
  std::uint32_t block_size = 4096;
  std::uint32_t shards = 16;             // rounded down to a power of two, at most one per block
  std::uint32_t protected_percent = 80;  // share of a shard the protected segment may hold
};

struct CacheStats {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t inserts = 0;
  std::uint64_t evictions = 0;
  std::uint64_t no_room = 0;
  std::uint64_t resident_blocks = 0;
  std::uint64_t dirty_blocks = 0;
};

enum class PutResult : std::uint8_t {
  kInserted,      // the block was absent and is now cached
  kUpdated,       // present; overwritten (dirty puts only)
  kKeptExisting,  // present; a clean put never overwrites (the cached copy is as new or newer)
  kNoRoom,        // absent, and every block is dirty or pinned: nothing was cached
};

class SectorCache {
 public:
  class Pin;
  virtual ~SectorCache() = default;

  // Hit: copies dst.size() bytes starting `skip` bytes into the block and returns true.
  // REQUIRES: skip + dst.size() <= block_size().
  virtual bool read(std::uint64_t index, std::size_t skip, std::span<std::byte> dst) = 0;
  // True when the block is resident (no promotion, no copy).
  virtual bool contains(std::uint64_t index) = 0;
  // Hit: copies `src` into the block at `skip`, marks it dirty and returns true; miss: false.
  virtual bool write_if_present(std::uint64_t index, std::size_t skip,
                                std::span<const std::byte> src) = 0;
  // Stores a whole block (block.size() == block_size()), dirty or clean; see PutResult.
  virtual PutResult put(std::uint64_t index, std::span<const std::byte> block, bool dirty) = 0;
  // Drops the block, dirty or not (a discard). A pinned block disappears from lookups at once
  // and its memory is wiped and reused when the last pin goes.
  virtual void erase(std::uint64_t index) = 0;
  // Drops every block whose index is `first` or above, dirty or not, as erase() does (a volume
  // shrinking: nothing past its new end may be written back later). Scans the whole cache, not
  // the index range. Returns how many dirty blocks were dropped.
  virtual std::uint64_t erase_from(std::uint64_t first) = 0;
  // Keeps a resident block from being evicted while the Pin lives; empty Pin on a miss.
  virtual Pin pin(std::uint64_t index) = 0;

  // Write-back. collect_dirty() fills `out` with up to out.size() dirty indices (unordered)
  // and returns how many; snapshot_dirty() copies a dirty block and returns its version
  // (nullopt when the block is not resident and dirty); mark_clean() clears the dirty bit
  // if the version is unchanged and returns whether it did.
  virtual std::size_t collect_dirty(std::span<std::uint64_t> out) = 0;
  virtual std::optional<std::uint64_t> snapshot_dirty(std::uint64_t index,
                                                      std::span<std::byte> dst) = 0;
  virtual bool mark_clean(std::uint64_t index, std::uint64_t version) = 0;
  // When the longest-dirty block became dirty; nullopt when nothing is dirty.
  virtual std::optional<std::chrono::steady_clock::time_point> oldest_dirty() = 0;

  // Bytes in dirty blocks. A reader that sees 0 (acquire) also sees every store write done
  // before the mark_clean() calls that brought it there.
  virtual std::uint64_t dirty_bytes() const noexcept = 0;
  virtual std::uint64_t capacity_blocks() const noexcept = 0;
  virtual std::uint32_t block_size() const noexcept = 0;
  virtual bool memory_locked() const noexcept = 0;
  virtual CacheStats stats() = 0;

  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& o) noexcept
        : cache_(std::exchange(o.cache_, nullptr)), shard_(o.shard_), slot_(o.slot_) {}
    Pin& operator=(Pin&& o) noexcept {
      if (this != &o) {
        reset();
        cache_ = std::exchange(o.cache_, nullptr);
        shard_ = o.shard_;
        slot_ = o.slot_;
      }
      return *this;
    }
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    ~Pin() { reset(); }
    explicit operator bool() const noexcept { return cache_ != nullptr; }
    void reset() noexcept {
      if (cache_ != nullptr) std::exchange(cache_, nullptr)->unpin(shard_, slot_);
    }
    // Copies from the pinned block (even after it was erased: the memory is still held).
    void read(std::size_t skip, std::span<std::byte> dst) const {
      cache_->pinned_read(shard_, slot_, skip, dst);
    }

   private:
    friend class SectorCache;
    Pin(SectorCache* c, std::uint32_t shard, std::uint32_t slot)
        : cache_(c), shard_(shard), slot_(slot) {}
    SectorCache* cache_ = nullptr;
    std::uint32_t shard_ = 0;
    std::uint32_t slot_ = 0;
  };

 protected:
  Pin make_pin(std::uint32_t shard, std::uint32_t slot) { return Pin(this, shard, slot); }
  virtual void unpin(std::uint32_t shard, std::uint32_t slot) noexcept = 0;
  virtual void pinned_read(std::uint32_t shard, std::uint32_t slot, std::size_t skip,
                           std::span<std::byte> dst) = 0;
};

// The scan-resistant sharded segmented-LRU cache described above.
// Errors: kInvalid for a block size that is not a power of two in [512, 65536] or a capacity
// below one block; kNoSpace when the block memory cannot be mapped.
Result<std::unique_ptr<SectorCache>> make_sharded_lru_cache(const CacheOptions& options);

}  // namespace cryptmap::cache

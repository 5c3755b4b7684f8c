// TagPageCache — the integrity volume's cache of tag pages: the 4 KiB pieces of the image that
// hold dm-integrity's packed tags (docs/integrity.md §1.2), keyed by image byte offset / 4096,
// as the kernel's dm-integrity keeps its metadata in dm-bufio. A hit spares a read the tag
// store round trip and a mode-D write the read of the edge pages it shares with its neighbours
// (docs/integrity.md §5).
//
// Bounded and preallocated: `pages` page buffers and their slot table are allocated (and locked
// where RLIMIT_MEMLOCK allows) by create(); get/put/erase never allocate
// (docs/architecture.md §4.1). Set-associative (8 ways), least recently used page of a set
// evicted first. Copy-in/copy-out: no pointer into the cache escapes.
//
// Coherence is the caller's, by its locks: a page is put only with the contents the store holds
// (or is about to hold, once the write that wrote it succeeded) while nobody can change that
// page (the integrity volume's tag-page stripe held, shared for reads, exclusively for writes);
// a failed store write of a page is followed by erase() of that page. A writer that does not
// hold the stripes (mode J's journal thread, the one in-place writer of its volume) brackets
// its store writes with begin_store_write / end_store_write, and readers fill pages read from
// the store with put_filled and the ticket taken before their read: a page whose read may have
// overlapped such a write is not cached (it could hold the contents from before the write).
// The cache never reads or writes the store itself. Tags are not secret (they are on disk as
// they are); clear() exists for close.
//
// Thread-safety: thread-safe (sets are guarded by striped mutexes, base/mutex.h).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/locked_memory.h"
#include "base/mutex.h"
#include "base/result.h"

namespace cryptmap::volume {

class TagPageCache {
 public:
  static constexpr std::size_t kPageBytes = 4096;

  // Where the pages lie in the image, for spreading them over the sets: dm-integrity's tag
  // areas of `area_pages` pages at most, every `stride_bytes`, the first starting at byte
  // `first_byte` (area a's tags at first_byte + a * stride_bytes). The pages are numbered
  // densely over the areas before they are mapped to sets, so that a cache with as many pages
  // as the areas hold keeps them all (numbered by image offset, the gaps of the data areas
  // between them make sets alias). Empty (area_pages 0): the image page number itself.
  struct Areas {
    std::uint64_t first_byte, stride_bytes, area_pages;  // Areas{}: all zero
  };
  // A cache of `pages` pages (at least 1), or the error of allocating their memory.
  static Result<std::unique_ptr<TagPageCache>> create(std::size_t pages, Areas areas = {});

  // Copies page `page` into `out` (kPageBytes) and returns true when it is resident.
  bool get(std::uint64_t page, std::span<std::byte> out);
  // Makes `in` (kPageBytes) the resident copy of `page`, evicting the set's least recently used
  // page if needed.
  void put(std::uint64_t page, std::span<const std::byte> in);
  // Drops `page` if resident.
  void erase(std::uint64_t page);

  // Unlocked in-place writes (see above): a reader takes a ticket before it reads pages from
  // the store and puts them with put_filled, which caches `in` only when no store write began
  // since the ticket was taken and none is under way; returns whether it did.
  using Ticket = std::uint64_t;
  Ticket fill_ticket() const noexcept { return writes_.load(std::memory_order_seq_cst); }
  bool put_filled(std::uint64_t page, std::span<const std::byte> in, Ticket ticket);
  // Brackets a writer's store writes of tag pages (one writer at a time); the writer's own
  // put() calls go between them.
  void begin_store_write() noexcept { writes_.fetch_add(1, std::memory_order_seq_cst); }
  void end_store_write() noexcept { writes_.fetch_add(1, std::memory_order_seq_cst); }
  // Drops every page.
  void clear();

  std::size_t capacity() const noexcept { return slots_.size(); }
  struct Stats {
    std::uint64_t hits = 0, misses = 0, evictions = 0;
  };
  Stats stats() const noexcept {
    return {hits_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed),
            evictions_.load(std::memory_order_relaxed)};
  }

  TagPageCache(const TagPageCache&) = delete;
  TagPageCache& operator=(const TagPageCache&) = delete;

 private:
  static constexpr std::uint64_t kEmpty = ~std::uint64_t{0};
  static constexpr std::size_t kWays = 8;
  static constexpr std::size_t kLocks = 64;
  struct Slot {
    std::uint64_t page = kEmpty;
    std::uint64_t used = 0;  // tick of the last get/put (LRU within the set)
  };
  TagPageCache(LockedMemory mem, std::size_t sets, std::size_t ways, Areas areas);
  std::size_t set_of(std::uint64_t page) const noexcept;
  std::byte* slot_data(std::size_t slot) const noexcept { return mem_.data() + slot * kPageBytes; }

  LockedMemory mem_;
  const std::size_t sets_, ways_;
  const Areas areas_;
  std::vector<Slot> slots_;  // sets_ × ways_, set-major
  // Set s is guarded by locks_[s % kLocks] (striped: not expressible as GUARDED_BY).
  std::array<Mutex, kLocks> locks_;
  std::atomic<std::uint64_t> tick_{0}, hits_{0}, misses_{0}, evictions_{0};
  // Store writes begun and ended (odd: one under way).
  std::atomic<std::uint64_t> writes_{0};
  void put_locked(std::size_t set, std::uint64_t page, std::span<const std::byte> in);
};

}  // namespace cryptmap::volume

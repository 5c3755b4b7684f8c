// TagPageCache: see tag_page_cache.h.
#include "volume/integrity/tag_page_cache.h"

#include <algorithm>
#include <cstring>

#include "base/check.h"

namespace cryptmap::volume {

Result<std::unique_ptr<TagPageCache>> TagPageCache::create(std::size_t pages, Areas areas) {
  pages = std::max<std::size_t>(pages, 1);
  const std::size_t ways = std::min(pages, kWays);
  const std::size_t sets = pages / ways;
  CRYPTMAP_TRY(mem, LockedMemory::allocate(sets * ways * kPageBytes, MemoryLock::kBestEffort,
                                           "integrity tag page cache"));
  return std::unique_ptr<TagPageCache>(new TagPageCache(std::move(mem), sets, ways, areas));
}

TagPageCache::TagPageCache(LockedMemory mem, std::size_t sets, std::size_t ways, Areas areas)
    : mem_(std::move(mem)), sets_(sets), ways_(ways), areas_(areas), slots_(sets * ways) {}

std::size_t TagPageCache::set_of(std::uint64_t page) const noexcept {
  const Areas& a = areas_;
  const std::uint64_t end = page * kPageBytes + kPageBytes - 1;  // the page's last byte
  if (a.area_pages == 0 || a.stride_bytes == 0 || end < a.first_byte) return page % sets_;
  // The area whose tags start at or before the page's last byte; its first page.
  const std::uint64_t area = (end - a.first_byte) / a.stride_bytes;
  const std::uint64_t first = (a.first_byte + area * a.stride_bytes) / kPageBytes;
  return (area * a.area_pages + (page - first)) % sets_;
}

bool TagPageCache::get(std::uint64_t page, std::span<std::byte> out) {
  CRYPTMAP_CHECK(out.size() == kPageBytes);
  const std::size_t s = set_of(page);
  MutexLock lock(locks_[s % kLocks]);
  for (std::size_t w = 0; w < ways_; ++w) {
    Slot& slot = slots_[s * ways_ + w];
    if (slot.page != page) continue;
    slot.used = tick_.fetch_add(1, std::memory_order_relaxed);
    std::memcpy(out.data(), slot_data(s * ways_ + w), kPageBytes);
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void TagPageCache::put(std::uint64_t page, std::span<const std::byte> in) {
  CRYPTMAP_CHECK(in.size() == kPageBytes && page != kEmpty);
  const std::size_t s = set_of(page);
  MutexLock lock(locks_[s % kLocks]);
  put_locked(s, page, in);
}

bool TagPageCache::put_filled(std::uint64_t page, std::span<const std::byte> in, Ticket ticket) {
  CRYPTMAP_CHECK(in.size() == kPageBytes && page != kEmpty);
  const std::size_t s = set_of(page);
  MutexLock lock(locks_[s % kLocks]);
  // Under the set's lock: a writer's put of this page after its write takes the same lock, so
  // a page checked here is either older than that put (which overwrites it) or refused.
  if ((ticket & 1) != 0 || writes_.load(std::memory_order_seq_cst) != ticket) return false;
  put_locked(s, page, in);
  return true;
}

void TagPageCache::put_locked(std::size_t s, std::uint64_t page, std::span<const std::byte> in) {
  std::size_t victim = s * ways_;
  for (std::size_t w = 0; w < ways_; ++w) {
    const std::size_t i = s * ways_ + w;
    if (slots_[i].page == page) {
      victim = i;
      break;
    }
    if (slots_[i].page == kEmpty) {
      if (slots_[victim].page != kEmpty) victim = i;
    } else if (slots_[victim].page != kEmpty && slots_[i].used < slots_[victim].used) {
      victim = i;
    }
  }
  if (slots_[victim].page != page && slots_[victim].page != kEmpty)
    evictions_.fetch_add(1, std::memory_order_relaxed);
  slots_[victim].page = page;
  slots_[victim].used = tick_.fetch_add(1, std::memory_order_relaxed);
  std::memcpy(slot_data(victim), in.data(), kPageBytes);
}

void TagPageCache::erase(std::uint64_t page) {
  const std::size_t s = set_of(page);
  MutexLock lock(locks_[s % kLocks]);
  for (std::size_t w = 0; w < ways_; ++w)
    if (slots_[s * ways_ + w].page == page) slots_[s * ways_ + w].page = kEmpty;
}

void TagPageCache::clear() {
  for (std::size_t s = 0; s < sets_; ++s) {
    MutexLock lock(locks_[s % kLocks]);
    for (std::size_t w = 0; w < ways_; ++w) slots_[s * ways_ + w].page = kEmpty;
  }
}

}  // namespace cryptmap::volume

// IntegrityVolume: docs/integrity.md §1–§3 and §5: modes D and J (journaled writes batched into
// journal sections until a section fills or a flush), journal replay on open (see
// integrity_volume.h).
#include "volume/integrity/integrity_volume.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/clock.h"
#include "base/io_thread.h"
#include "base/locked_memory.h"
#include "cache/sector_cache.h"
#include "crypto/auth_cipher.h"
#include "crypto/crypto_engine.h"
#include "volume/engine/crypto_driver.h"
#include "volume/engine/read_ahead.h"
#include "volume/format/dm_integrity_journal.h"
#include "volume/integrity/tag_page_cache.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using integrity::Geometry;

constexpr std::uint64_t kAlign = 4096;
constexpr std::size_t kMaxRunBlocks = 256;  // blocks per store round trip
// Runs of at least this many bytes are verified + decrypted (encrypted) in parallel slices
// (the engine's parallel_threshold_bytes, volume/engine/README.md "Decisions").
constexpr std::size_t kParallelBytes = 128 * 1024;
// Mode J: an open journal section older than this is committed without a flush (the kernel's
// commit timer, 10 s by default; 5 s as the sector cache's write-back age).
constexpr std::chrono::seconds kCommitAge{5};
// Mode J: the locked memory of the three journal batches together (open, committing, committed
// and waiting for its copy). Each batch is its commit's section image (metadata sectors and
// blocks, built in place as writers add blocks: no copy at commit), so one commit holds at most
// a third of this (journal_batch_sections: also at most half the ring). 8 MiB as before, when
// three batches of 2 MiB of blocks and a separate 2 MiB section image were; with the in-place
// tag pages below, the journal's share of the budget of docs/integrity.md §5 (the daemon's
// goal: cache + 64 MiB, issue #13). A 1 GiB volume's journal (62-65 sections of 32 blocks,
// 132 KiB each) gets commits of 20 sections, 2.5 MiB of blocks: one sync per 2.5 MiB of a
// stream, overlapping the filling of the next batch.
constexpr std::size_t kJournalBatchesBytes = std::size_t{8} << 20;
// Tag pages one in-place store batch holds at most (1 MiB, locked): a copy touching more (a
// big commit of scattered blocks) is written as several store batches before its one sync.
constexpr std::size_t kMaxInPlacePages = 256;

std::uint64_t align_down(std::uint64_t x) { return x / kAlign * kAlign; }
std::uint64_t align_up(std::uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// The tag areas as the tag page cache spreads their pages over its sets; an area's tags may
// start inside a page: one more page each.
TagPageCache::Areas tag_cache_areas(const Geometry& g) {
  return {g.tag_byte(0), (g.interleave_sectors() + g.metadata_run) * 512,
          align_up(g.metadata_run * 512) / kAlign + 1};
}

// Pages of the tag page cache: the volume's whole tag area and an eighth more (the cache is
// set-associative: pages of one set beyond its ways evict each other), at most a quarter of
// the volume's cache budget (--cache-size; 16 MiB of the default 64 MiB hold the tags of about
// 1.3 GiB of 4 KiB blocks with 48-byte tags), at least kMinTagPages. The sector cache has the
// rest, at most seven eighths (tag_cache_share). A mode-D write of a block whose tag page is
// not resident reads that page first (it shares it with other blocks' tags): with an eighth
// of 64 MiB, 4 KiB random writes over a 1 GiB hmac volume (3 072 tag pages) read a tag page
// for a third of their blocks (bench/README.md, njrw).
constexpr std::uint64_t kMinTagPages = 8;
std::size_t tag_cache_pages(const Geometry& g, std::uint64_t cache_bytes) {
  const std::uint64_t areas =
      (g.provided_data_sectors + g.interleave_sectors() - 1) / g.interleave_sectors();
  const std::uint64_t area_pages = tag_cache_areas(g).area_pages;
  const std::uint64_t wanted = areas * area_pages + areas * area_pages / 8;  // see Areas
  const std::uint64_t budget = std::max(kMinTagPages, cache_bytes / 4 / kAlign);
  return static_cast<std::size_t>(std::min(wanted, budget));
}
// The bytes of --cache-size the tag page cache takes from the sector cache: its pages, at
// least an eighth (as before the tag page cache could grow past it).
std::uint64_t tag_cache_share(std::uint64_t cache_bytes, std::size_t tag_pages) {
  return std::min(cache_bytes, std::max<std::uint64_t>(cache_bytes / 8, tag_pages * kAlign));
}

Result<integrity::Superblock> read_superblock(const BackingStore& store, std::uint64_t at) {
  if (store.size_bytes() < at + integrity::kSbBytes)
    return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity superblock", at,
                               "%s is too small for the integrity superblock at byte %llu",
                               store.name().c_str(), static_cast<unsigned long long>(at)));
  std::vector<std::byte> sb(integrity::kSbBytes);
  CRYPTMAP_TRY_VOID(store.read_at(ByteOffset{at}, sb));
  return integrity::parse_superblock(sb);
}

// Replay's copy (docs/integrity.md §5): the journal entries `w` (ascending sectors, one per
// sector: integrity::final_journal_writes) written to their data and tag places, at most
// kMaxRunBlocks blocks per store batch: each stretch of adjacent blocks within an interleave
// area as one piece, each tag page the batch touches read once (all of them in one read batch)
// and written once. The caller syncs.
Result<void> copy_journal_entries(BackingStore& store, const Geometry& g,
                                  std::span<const std::byte> journal,
                                  std::span<const integrity::JournalWrite> w) {
  if (w.empty()) return ok();
  const std::uint32_t bs = g.block_bytes(), spb = g.sectors_per_block(), tag = g.tag_size;
  const std::uint64_t area_blocks = g.interleave_sectors() / spb;
  std::vector<std::byte> data(std::min(w.size(), kMaxRunBlocks) * bs);
  std::vector<std::byte> buf(2 * kMaxRunBlocks * kAlign);  // a tag touches at most two pages
  std::vector<std::uint64_t> pages;
  std::vector<ReadPiece> reads;
  std::vector<WritePiece> writes;
  for (std::size_t i = 0; i < w.size();) {
    const std::size_t j = std::min(w.size(), i + kMaxRunBlocks);
    pages.clear();
    reads.clear();
    writes.clear();
    for (std::size_t x = i; x < j; ++x) {
      integrity::journal_entry_block(g, journal, w[x].section, w[x].entry,
                                     std::span(data).subspan((x - i) * bs, bs));
      const std::uint64_t t0 = g.tag_byte(w[x].sector);
      for (std::uint64_t p = t0 / kAlign; p * kAlign < t0 + tag; ++p)
        if (pages.empty() || pages.back() != p) pages.push_back(p);
    }
    // Every page, stretches of adjacent ones as one piece: other blocks' tags share them.
    for (std::size_t p = 0; p < pages.size();) {
      std::size_t r = 1;
      while (p + r < pages.size() && pages[p + r] == pages[p] + r) ++r;
      reads.push_back(
          ReadPiece{ByteOffset{pages[p] * kAlign}, std::span(buf).subspan(p * kAlign, r * kAlign)});
      writes.push_back(WritePiece{ByteOffset{pages[p] * kAlign},
                                  std::span(buf).subspan(p * kAlign, r * kAlign)});
      p += r;
    }
    CRYPTMAP_TRY_VOID(store.read_batch(reads));
    std::size_t pi = 0;
    for (std::size_t x = i; x < j; ++x) {
      const std::uint64_t t0 = g.tag_byte(w[x].sector);
      while (pages[pi] != t0 / kAlign) ++pi;
      const auto t = integrity::journal_entry_tag(g, journal, w[x].section, w[x].entry);
      std::copy(t.begin(), t.end(),
                buf.begin() + static_cast<std::ptrdiff_t>(pi * kAlign + t0 % kAlign));
    }
    for (std::size_t x = i; x < j;) {
      std::size_t r = 1;
      const std::uint64_t k = w[x].sector / spb;
      while (x + r < j && w[x + r].sector / spb == k + r &&
             (k + r) / area_blocks == k / area_blocks)
        ++r;
      writes.push_back(WritePiece{ByteOffset{g.data_sector(w[x].sector) * 512},
                                  std::span(data).subspan((x - i) * bs, r * bs)});
      x += r;
    }
    CRYPTMAP_TRY_VOID(store.write_batch(writes));
    i = j;
  }
  return ok();
}

// Journal replay on open (docs/integrity.md §1.3, §5): the whole journal is read and checked
// first (integrity::plan_journal_replay; a damaged journal is refused with nothing written),
// then the committed entries are copied to their data and tag places in the kernel's order,
// synced, and the journal is re-initialised when the kernel would (synced again). Returns where
// journaled writes continue (section, sequence), as the kernel's replay leaves them.
struct JournalPosition {
  std::uint32_t section = 0;
  unsigned seq = 0;
};
Result<JournalPosition> replay_journal(BackingStore& store, const Geometry& g, bool journal_mode,
                                       spdlog::logger& log) {
  const std::size_t journal_bytes =
      std::size_t{g.journal_sections} * g.journal_section_sectors * 512;
  std::vector<std::byte> journal(journal_bytes);
  const ByteOffset journal_at{g.journal_first_sector() * 512};
  CRYPTMAP_TRY_VOID(store.read_at(journal_at, journal));
  CRYPTMAP_TRY(plan, integrity::plan_journal_replay(g, journal, journal_mode));
  const JournalPosition next{plan.continue_section, plan.commit_seq};
  if (plan.writes.empty() && !plan.reinitialise) return next;
  if (store.read_only())
    return fail(make_error_fmt(
        Errc::kReadOnly, "dm-integrity journal", plan.writes.size(),
        "the journal holds %zu committed write(s) to replay (or needs re-initialising) but %s "
        "is opened read-only: open it read-write once to replay",
        plan.writes.size(), store.name().c_str()));
  // The entries that decide the image (the last write of each sector), in block order.
  const std::vector<integrity::JournalWrite> finals = integrity::final_journal_writes(plan.writes);
  CRYPTMAP_TRY_VOID(copy_journal_entries(store, g, journal, finals));
  CRYPTMAP_TRY_VOID(store.sync());
  if (plan.reinitialise) {
    integrity::write_initial_journal(g, journal, plan.erase_seq);
    CRYPTMAP_TRY_VOID(store.write_at(journal_at, journal));
    CRYPTMAP_TRY_VOID(store.sync());
  }
  log.info(
      "{}: dm-integrity journal replayed: {} entr{} from {} committed section(s) written "
      "back ({} block(s)){}{}",
      store.name(), plan.writes.size(), plan.writes.size() == 1 ? "y" : "ies", plan.write_sections,
      finals.size(), plan.dropped ? ", entries beyond the device dropped" : "",
      plan.reinitialise ? ", journal re-initialised" : "");
  return next;
}

// Per-request scratch memory, allocated at open: page-aligned (O_DIRECT), locked where
// allowed, never on the I/O path (docs/architecture.md §4.1). One slot per concurrent request,
// in two sizes (the memory budget, docs/integrity.md §5): small slots hold kSmallRunBlocks
// blocks (a random 4 KiB-64 KiB request, a read-ahead loader, which needs only the tags), large
// ones kMaxRunBlocks (a request above that, a write-back pass). A request that needs a large
// slot waits for one; nothing holds two slots.
struct Scratch {
  LockedMemory data;        // `blocks` blocks of ciphertext / plaintext
  std::size_t blocks = 0;   // the capacity of `data` in blocks: a request's runs are this long
  std::size_t used = 0;     // bytes of `data` the request touched (wiped on release)
  bool large = false;       // from the large slots
  LockedMemory tags;        // the aligned tag window of a run (kMaxRunBlocks tags in every slot)
  LockedMemory block;       // one block for read-modify-write
  LockedMemory block_tags;  // its tag window
};
// The FUSE front end's worker count, the read-ahead loaders and the flusher.
constexpr unsigned kReadAheadThreads = kIntegrityReadAheadDepth;
constexpr std::size_t kScratchSlots = 16 + kReadAheadThreads + 1;
// Large slots: one 1 MiB sequential stream per slot at a time (the flusher's write-back pass
// takes one too). 3 MiB instead of the 19 MiB of one large slot per request.
constexpr std::size_t kLargeSlots = 3;
constexpr std::size_t kSmallRunBlocks = 16;
// Write-back (docs/integrity.md §5, as the engine's, volume/engine/README.md "The sector
// cache"): writers write through once dirty blocks fill this share of the sector cache; the
// flusher is kicked at half of it.
constexpr std::uint64_t kDirtyPercent = 50;
// Mode D write-back: runs written as one store batch (the engine's write-back depth).
constexpr std::size_t kWriteBackRuns = 8;

class ScratchPool {
 public:
  Result<void> init(std::uint32_t block_bytes, std::uint32_t tag_bytes) {
    const std::size_t tag_window = align_up(kMaxRunBlocks * tag_bytes) + 2 * kAlign;
    small_bytes_ = kSmallRunBlocks * std::size_t{block_bytes};
    for (std::size_t i = 0; i < kScratchSlots + kLargeSlots; ++i) {
      const bool large = i >= kScratchSlots;
      const std::size_t blocks = large ? kMaxRunBlocks : kSmallRunBlocks;
      auto sc = std::make_unique<Scratch>();
      const char* what = "integrity volume buffers";
      CRYPTMAP_TRY(d, LockedMemory::allocate(blocks * block_bytes, MemoryLock::kBestEffort, what));
      CRYPTMAP_TRY(t, LockedMemory::allocate(tag_window, MemoryLock::kBestEffort, what));
      CRYPTMAP_TRY(b, LockedMemory::allocate(block_bytes, MemoryLock::kBestEffort, what));
      CRYPTMAP_TRY(bt, LockedMemory::allocate(align_up(tag_bytes) + 2 * kAlign,
                                              MemoryLock::kBestEffort, what));
      bytes_ += d.size() + t.size() + b.size() + bt.size();
      sc->data = std::move(d);
      sc->blocks = blocks;
      sc->large = large;
      sc->tags = std::move(t);
      sc->block = std::move(b);
      sc->block_tags = std::move(bt);
      (large ? large_ : small_).push_back(std::move(sc));
    }
    return ok();
  }
  // A slot whose data holds `bytes` (a large one above the small size; runs are cut to the
  // slot's blocks anyway).
  std::unique_ptr<Scratch> acquire(std::size_t bytes) {
    const bool large = bytes > small_bytes_;
    auto& free = large ? large_ : small_;
    std::unique_lock lock(mu_);
    (large ? large_cv_ : small_cv_).wait(lock, [&] { return !free.empty(); });
    auto sc = std::move(free.back());
    free.pop_back();
    return sc;
  }
  // Wipes the plaintext the request left in `data` (only what it used: a 4 KiB request must not
  // pay for wiping 1 MiB); `block` is wiped after each use (read_block_into).
  void release(std::unique_ptr<Scratch> sc) {
    std::fill_n(sc->data.data(), sc->used, std::byte{0});
    sc->used = 0;
    const bool large = sc->large;
    {
      std::lock_guard lock(mu_);
      (large ? large_ : small_).push_back(std::move(sc));
    }
    (large ? large_cv_ : small_cv_).notify_one();
  }
  // Bytes of all slots (IntegrityCounters::buffer_bytes).
  std::size_t bytes() const noexcept { return bytes_; }

 private:
  std::mutex mu_;
  std::condition_variable small_cv_, large_cv_;
  std::vector<std::unique_ptr<Scratch>> small_, large_;
  std::size_t small_bytes_ = 0, bytes_ = 0;
};

class ScratchLease {
 public:
  // A slot for a request of `bytes` (ScratchPool::acquire).
  ScratchLease(ScratchPool& p, std::size_t bytes) : pool_(p), sc_(p.acquire(bytes)) {}
  ~ScratchLease() { pool_.release(std::move(sc_)); }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;
  Scratch& operator*() const { return *sc_; }
  Scratch* operator->() const { return sc_.get(); }

 private:
  ScratchPool& pool_;
  std::unique_ptr<Scratch> sc_;
};

// Locks on the tag pages (4 KiB of the image holding tags) of a run, striped: a run's data and
// tags change together under its stripes held exclusively (mode D writers: blocks sharing a
// tag page are read-modify-written one writer at a time), readers hold them shared (no block is
// read between its data and its tag write). Stripes are taken in ascending order.
class TagPageLocks {
 public:
  static constexpr std::size_t kStripes = 64;
  // The stripes of pages [lo_page, hi_page], as a mask (bit s: stripe s).
  static std::uint64_t stripes(std::uint64_t lo_page, std::uint64_t hi_page) {
    if (hi_page - lo_page >= kStripes - 1) return ~std::uint64_t{0};
    std::uint64_t m = 0;
    for (std::uint64_t p = lo_page; p <= hi_page; ++p) m |= std::uint64_t{1} << (p % kStripes);
    return m;
  }

  class Held {
   public:
    Held(TagPageLocks& l, std::uint64_t lo_page, std::uint64_t hi_page, bool exclusive)
        : Held(l, stripes(lo_page, hi_page), exclusive) {}
    // The stripes of `mask` (TagPageLocks::stripes of each page, or-ed): a batch of scattered
    // runs holds only its own pages' stripes, not those of the pages between them.
    Held(TagPageLocks& l, std::uint64_t mask, bool exclusive) : l_(l), exclusive_(exclusive) {
      for (std::uint32_t s = 0; s < kStripes; ++s)
        if (mask >> s & 1) idx_[n_++] = s;  // ascending: the one lock order
      for (std::size_t i = 0; i < n_; ++i) {
        auto& m = l_.m_[idx_[i]];
        if (exclusive_ ? m.try_lock() : m.try_lock_shared()) continue;
        l_.waits_.fetch_add(1, std::memory_order_relaxed);  // held by another request
        exclusive_ ? m.lock() : m.lock_shared();
      }
    }
    ~Held() {
      for (std::size_t i = n_; i-- > 0;)
        exclusive_ ? l_.m_[idx_[i]].unlock() : l_.m_[idx_[i]].unlock_shared();
    }
    Held(const Held&) = delete;
    Held& operator=(const Held&) = delete;

   private:
    TagPageLocks& l_;
    const bool exclusive_;
    std::array<std::uint32_t, kStripes> idx_{};
    std::size_t n_ = 0;
  };

  // Stripes a request found held by another one and waited for (counters).
  std::uint64_t waits() const noexcept { return waits_.load(std::memory_order_relaxed); }

 private:
  std::array<std::shared_mutex, kStripes> m_;
  std::atomic<std::uint64_t> waits_{0};
};

// Where a read-ahead loader's time goes (read_verified adds to it when given one).
struct LoaderTimes {
  std::atomic<std::uint64_t> read_ns{0}, verify_ns{0};
};

class IntegrityVolume final : public Volume {
 public:
  IntegrityVolume(VolumeLayout layout, Geometry g, std::uint64_t size,
                  std::unique_ptr<crypto::AuthSectorCipher> cipher,
                  std::unique_ptr<BackingStore> store, bool read_only, bool journal_mode,
                  JournalPosition journal_at, std::unique_ptr<TagPageCache> tag_cache,
                  std::shared_ptr<spdlog::logger> log)
      : layout_(std::move(layout)),
        g_(g),
        size_(size),
        bs_(layout_.sector_size),
        tag_(static_cast<std::uint32_t>(cipher->composition().tag_size)),
        cipher_(std::move(cipher)),
        store_(std::move(store)),
        read_only_(read_only),
        journal_mode_(journal_mode),
        jpos_(journal_at),
        tag_cache_(std::move(tag_cache)),
        log_(std::move(log)) {
    if (!log_) log_ = spdlog::default_logger();
  }

  Result<void> init(const VolumeOptions& options, const EngineFactory& make_engine) {
    CRYPTMAP_TRY_VOID(pool_.init(bs_, tag_));
    engine_ = make_engine ? make_engine(*cipher_) : crypto::make_sync_engine(*cipher_);
    if (!engine_)
      return fail(
          make_error(Errc::kInvalid, "integrity volume: the engine factory made no engine"));
    CryptoDriverOptions d;
    d.sector_size = bs_;
    d.max_inflight = std::max<std::uint32_t>(1, options.max_inflight_requests);
    d.parallel_threshold_bytes = kParallelBytes;
    d.force_inline = options.force_inline;
    d.inline_decrypt = options.no_read_workqueue;
    d.inline_encrypt = options.no_write_workqueue;
    CRYPTMAP_TRY(driver, CryptoDriver::create(*engine_, d));
    driver_ = std::move(driver);
    if (!options.no_read_workqueue && size_ >= bs_) {
      // Read-ahead as the engine's (volume/engine/README.md "Read-ahead"): 8 windows of 1 MiB,
      // but four requests ahead and four loaders: a loader reads its window from the store and
      // then verifies it, one after the other, so two loaders bounded a sequential reader at
      // two windows per load time (bench/README.md, rahmac: 2.6 ms per 1 MiB window, ~780 MB/s);
      // four keep store reads of some windows in flight while others are verified.
      ReadAhead::Options ro;
      ro.sector_size = bs_;
      ro.volume_sectors = size_ / bs_;
      ro.threads = kReadAheadThreads;
      ro.depth = kIntegrityReadAheadDepth;
      CRYPTMAP_TRY(ra, ReadAhead::create(ro, [this](std::uint64_t first, std::span<std::byte> dst,
                                                    const ReadAhead::LoadTicket& t) {
                     return load_ahead(first, dst, t);
                   }));
      ra_ = std::move(ra);
    }
    CRYPTMAP_TRY_VOID(init_cache(options));
    if (!journal_mode_ || read_only_) return start_flusher();
    // The three journal batches, each the section image of its commit (docs/architecture.md
    // §4.1; the budget: docs/integrity.md §5).
    const char* what = "integrity journal batches";
    batch_sections_ = journal_batch_sections(g_);
    sec_bytes_ = std::size_t{g_.journal_section_sectors} * 512;
    const std::size_t entries = std::size_t{batch_sections_} * g_.journal_section_entries;
    pend_cap_ = entries;
    pend_bits_ = 1;
    while ((std::size_t{1} << pend_bits_) < 2 * entries) ++pend_bits_;
    for (JournalBatch& b : jb_) {
      CRYPTMAP_TRY(
          bd, LockedMemory::allocate(batch_sections_ * sec_bytes_, MemoryLock::kBestEffort, what));
      CRYPTMAP_TRY(bt, LockedMemory::allocate(entries * tag_, MemoryLock::kBestEffort, what));
      buffer_bytes_ += bd.size() + bt.size();
      b.data = std::move(bd);
      b.tags = std::move(bt);
      try {
        b.index.assign(std::size_t{1} << pend_bits_, 0);
        b.blocks.reserve(entries);
        b.sorted.reserve(entries);
        b.order.reserve(entries);
      } catch (const std::bad_alloc&) {
        return fail(make_error(Errc::kNoSpace, "integrity volume: allocate the journal batches"));
      }
    }
    open_ = &jb_[0];
    CRYPTMAP_TRY_VOID(init_in_place(entries, entries));
    try {
      journal_thread_ = std::thread([this] { journal_loop(); });
    } catch (const std::system_error&) {
      return fail(make_error(Errc::kNoSpace, "integrity volume: start the journal thread"));
    }
    journal_ = true;
    return start_flusher();
  }

  // The sector cache (docs/integrity.md §5): plaintext blocks by volume-relative index, what
  // the tag page cache leaves of --cache-size (at most seven eighths); none below one block. Writes
  // go into it as dirty blocks unless the volume is read-only or --perf-no_write_workqueue asks for
  // write-through. Everything the write-back needs is allocated here.
  Result<void> init_cache(const VolumeOptions& options) {
    const std::uint64_t bytes =
        options.cache_bytes - tag_cache_share(options.cache_bytes, tag_cache_->capacity());
    if (bytes < bs_) return ok();
    cache::CacheOptions co;
    co.capacity_bytes = bytes;
    co.block_size = bs_;
    CRYPTMAP_TRY(c, cache::make_sharded_lru_cache(co));
    cache_ = std::move(c);
    if (!cache_->memory_locked())
      log_->warn("sector cache of {} is not mlocked: plaintext may reach swap", store_->name());
    write_back_ = !read_only_ && !options.no_write_workqueue;
    if (!write_back_) return ok();
    const std::uint64_t cap = cache_->capacity_blocks();
    dirty_limit_ = std::max<std::uint64_t>(1, cap * kDirtyPercent / 100) * bs_;
    dirty_kick_ = std::max<std::uint64_t>(bs_, dirty_limit_ / 2);
    flush_age_ = std::chrono::milliseconds(options.flush_age_ms);
    try {
      wb_dirty_.resize(static_cast<std::size_t>(cap));
      wb_versions_.resize(static_cast<std::size_t>(cap));
      if (!journal_mode_) wb_blocks_.resize(kMaxRunBlocks);
    } catch (const std::bad_alloc&) {
      return fail(make_error(Errc::kNoSpace, "integrity volume: allocate the write-back lists"));
    }
    if (!journal_mode_) return init_in_place(kMaxRunBlocks, kWriteBackRuns);
    return ok();
  }

  // The flusher (mode J, and every volume that writes back): commits an old journal batch and
  // writes dirty blocks back (docs/integrity.md §5).
  Result<void> start_flusher() {
    if (read_only_ || (!journal_mode_ && !write_back_)) return ok();
    try {
      committer_ = std::thread([this] { flusher_loop(); });
    } catch (const std::system_error&) {
      return fail(make_error(Errc::kNoSpace, "integrity volume: start the flusher thread"));
    }
    return ok();
  }

  // Dirty blocks are written back and blocks still in the open journal batch are committed and
  // written in place (close; best effort: flush reports errors).
  ~IntegrityVolume() override {
    // The flusher first: its write-back invalidates read-ahead windows (ra_), so ra_ must
    // outlive it; then the read-ahead, whose loaders use everything below.
    if (committer_.joinable()) {
      {
        std::lock_guard l(timer_mu_);
        stop_ = true;
      }
      timer_cv_.notify_all();
      committer_.join();
    }
    log_read_ahead();
    ra_.reset();
    if (write_back_)
      if (auto r = write_back(); !r)
        log_->error("{}: dirty blocks not written back at close: {}", store_->name(),
                    r.error().message());
    log_counters();
    if (!journal_thread_.joinable()) return;
    if (journal_)
      if (auto r = commit_journal(); !r)
        log_->error("{}: journaled blocks not committed at close: {}", store_->name(),
                    r.error().message());
    {
      std::lock_guard l(jmu_);
      jstop_ = true;
    }
    jcv_.notify_all();
    journal_thread_.join();
    // Alone now: the last committed batch to its places.
    if (copying_)
      if (auto r = copy_batch(*copying_); !r)
        log_->error("{}: committed journal entries not copied at close (replay will copy them): {}",
                    store_->name(), r.error().message());
  }

  Result<std::size_t> read(ByteOffset off, std::span<std::byte> out) override {
    if (off.value >= size_) return std::size_t{0};
    const std::size_t len =
        static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size_ - off.value));
    // Pin a read-ahead window before any lock or scratch slot (pin() may wait for a loader,
    // which takes both: volume/engine/read_ahead.h).
    ReadAhead::Pin pin;
    if (ra_) pin = ra_->pin(off.value / bs_, (off.value + len + bs_ - 1) / bs_);
    Result<std::size_t> r = read_range(off.value, out.first(len), pin);
    pin = ReadAhead::Pin();
    if (r && ra_) ra_->note(off.value, len);
    return r;
  }

  // Reads [off, off + dst.size()) (inside the volume): from the pinned read-ahead window when
  // it is still valid (copied under the request's tag-page stripes, which every writer of
  // these blocks holds exclusively when it invalidates them), else run by run from the store.
  Result<std::size_t> read_range(std::uint64_t off, std::span<std::byte> dst,
                                 const ReadAhead::Pin& pin) {
    const std::size_t len = dst.size();
    if (pin) {
      const std::uint64_t last = (off + len - 1) / bs_;
      const std::uint64_t lo = g_.tag_byte(off / bs_ * g_.sectors_per_block());
      const std::uint64_t hi = g_.tag_byte(last * g_.sectors_per_block()) + tag_;
      TagPageLocks::Held pages(pages_, std::min(lo, hi) / kAlign, std::max(lo, hi) / kAlign, false);
      if (ra_->copy(pin, off, dst)) {
        // The loader read the store: dirty blocks of the cache are newer (clean ones are equal).
        if (cache_ && cache_->dirty_bytes() != 0) overlay_cached(off, dst);
        return len;
      }
    }
    const std::span<std::byte> out = dst;
    ScratchLease sc(pool_, len);
    std::uint64_t pos = off;
    const std::uint64_t end = off + len;
    while (pos < end) {
      const std::uint64_t first = pos / bs_;
      const std::size_t n = run_blocks(first, (end + bs_ - 1) / bs_, sc->blocks);
      const auto data = sc->data.span().first(n * bs_);
      sc->used = std::max(sc->used, data.size());
      const TagWindow w = tag_window(first, n);
      TagPageLocks::Held pages(pages_, w.lo / kAlign, (w.hi - 1) / kAlign, false);
      const std::uint64_t run_lo = first * bs_;
      const std::uint64_t run_hi = std::min<std::uint64_t>(end, run_lo + n * bs_);
      // Large reads stream past a cache holding nothing dirty, as the engine's (clean blocks
      // equal the store's; nothing is inserted).
      if (!cache_ || (len >= kParallelBytes && cache_->dirty_bytes() == 0)) {
        CRYPTMAP_TRY_VOID(read_verified(first, n, data, sc->tags.span()));
        std::memcpy(out.data() + (pos - off), data.data() + (pos - run_lo), run_hi - pos);
      } else {
        CRYPTMAP_TRY_VOID(read_cached_run(first, n, pos, run_hi, out.subspan(pos - off), *sc,
                                          /*insert=*/len < kParallelBytes));
      }
      pos = run_hi;
    }
    return len;
  }

  // Bytes [pos, hi) of run [first, first + n) into `dst` (from its start), with the run's
  // locks held: cached blocks are copied from the sector cache (they are the newest: dirty, or
  // equal to the store); each stretch of missing blocks is read and verified from the store in
  // one piece (each tag verified once) and, when `insert`, its blocks enter the cache clean.
  Result<void> read_cached_run(std::uint64_t first, std::size_t n, std::uint64_t pos,
                               std::uint64_t hi, std::span<std::byte> dst, Scratch& sc,
                               bool insert) {
    const std::uint64_t base = pos;
    std::size_t miss_lo = 0, miss_n = 0;  // the pending stretch of missing blocks
    auto fetch = [&]() -> Result<void> {
      if (miss_n == 0) return ok();
      const auto data = sc.data.span().first(miss_n * bs_);
      CRYPTMAP_TRY_VOID(read_verified(first + miss_lo, miss_n, data, sc.tags.span()));
      for (std::size_t i = 0; i < miss_n; ++i) {
        const std::uint64_t k = first + miss_lo + i;
        const std::uint64_t a = std::max(k * bs_, base), b = std::min((k + 1) * bs_, hi);
        std::memcpy(dst.data() + (a - base), data.data() + i * bs_ + (a - k * bs_), b - a);
        if (insert) cache_->put(k, data.subspan(i * bs_, bs_), /*dirty=*/false);
      }
      miss_n = 0;
      return ok();
    };
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t k = first + i;
      const std::uint64_t a = std::max(k * bs_, base), b = std::min((k + 1) * bs_, hi);
      if (cache_->read(k, a - k * bs_, dst.subspan(a - base, b - a))) {
        CRYPTMAP_TRY_VOID(fetch());
        continue;
      }
      if (miss_n == 0) miss_lo = i;
      ++miss_n;
    }
    return fetch();
  }

  // Copies the cached blocks of [off, off + dst.size()) over `dst` (read-ahead windows hold
  // what the store held when they were loaded).
  void overlay_cached(std::uint64_t off, std::span<std::byte> dst) {
    const std::uint64_t end = off + dst.size();
    for (std::uint64_t k = off / bs_; k * bs_ < end; ++k) {
      const std::uint64_t a = std::max(k * bs_, off), b = std::min((k + 1) * bs_, end);
      cache_->read(k, a - k * bs_, dst.subspan(a - off, b - a));
    }
  }

  // The read-ahead loader (a prefetch thread): blocks [first, first + dst.size() / bs_) are
  // read, verified and decrypted in `dst` (the window: nobody else sees it before it is
  // loaded), run by run under the runs' tag pages held shared, as a read. A
  // block whose tag fails drops the load without logging: the reader then reads it itself and
  // reports it once.
  bool load_ahead(std::uint64_t first, std::span<std::byte> dst, const ReadAhead::LoadTicket& t) {
    ScratchLease sc(pool_, 0);  // only its tag window: the blocks are loaded into `dst`
    const std::uint64_t end = first + dst.size() / bs_;
    for (std::uint64_t k = first; k < end;) {
      const std::size_t n = run_blocks(k, end);
      const TagWindow w = tag_window(k, n);
      TagPageLocks::Held pages(pages_, w.lo / kAlign, (w.hi - 1) / kAlign, false);
      if (!t.still_wanted()) return false;
      if (!read_verified(k, n, dst.subspan((k - first) * bs_, n * bs_), sc->tags.span(),
                         /*report=*/false, &ra_times_))
        return false;
      k += n;
    }
    return true;
  }

  Result<std::size_t> write(ByteOffset off, std::span<const std::byte> in) override {
    if (read_only_) return fail(make_error(Errc::kReadOnly, "write to a read-only volume"));
    if (off.value > size_ || in.size() > size_ - off.value)
      return fail(make_error(Errc::kNoSpace, "write past the end of the volume", off.value));
    // The dirty throttle, before any lock (the engine's): above half the limit the flusher is
    // kicked; at the limit the writer writes its own blocks through.
    bool through = !write_back_;
    if (write_back_) {
      const std::uint64_t dirty = cache_->dirty_bytes();
      if (dirty >= dirty_kick_) kick_flusher();
      through = dirty >= dirty_limit_;
    }
    // A slot with room for whole runs when writing through; a write into the cache uses one
    // block of it (a partial block's read-modify-write).
    ScratchLease sc(pool_, through ? in.size() : 0);
    // Writers of runs whose tag pages differ proceed together (mode J's journal batches have
    // their own lock, jmu_).
    std::uint64_t pos = off.value;
    const std::uint64_t end = off.value + in.size();
    while (pos < end) {
      const std::uint64_t first = pos / bs_;
      const std::size_t n =
          run_blocks(first, (end + bs_ - 1) / bs_, through ? sc->blocks : kMaxRunBlocks);
      const TagWindow w = tag_window(first, n);
      const std::uint64_t run_lo = first * bs_;
      const std::uint64_t run_hi = std::min<std::uint64_t>(end, run_lo + n * bs_);
      const auto src = in.subspan(pos - off.value, run_hi - pos);
      TagPageLocks::Held pages(pages_, w.lo / kAlign, (w.hi - 1) / kAlign, true);
      if (ra_) ra_->invalidate(first, first + n);  // before anything changes (read_ahead.h)
      if (!through) {
        CRYPTMAP_TRY(cached, write_cached_run(first, n, pos, src, *sc));
        if (!cached) {
          // The cache has no room: this run (again, cut to the slot) and the rest are written
          // through.
          through = true;
          continue;
        }
      } else {
        CRYPTMAP_TRY_VOID(write_through_run(first, n, pos, src, *sc));
      }
      pos = run_hi;
    }
    return in.size();
  }

  // Bytes `src` at `pos` of run [first, first + n) into the sector cache as dirty blocks, with
  // the run's tag pages held exclusively: whole blocks are put, a partial block is merged into
  // its cached copy or, when not resident, into its verified old contents (read-modify-write).
  // False when the cache has no room (every block dirty or pinned): the caller writes through.
  Result<bool> write_cached_run(std::uint64_t first, std::size_t n, std::uint64_t pos,
                                std::span<const std::byte> src, Scratch& sc) {
    const std::uint64_t hi = pos + src.size();
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t k = first + i;
      const std::uint64_t a = std::max(k * bs_, pos), b = std::min((k + 1) * bs_, hi);
      const auto part = src.subspan(a - pos, b - a);
      if (b - a == bs_) {
        if (cache_->put(k, part, /*dirty=*/true) == cache::PutResult::kNoRoom) return false;
        continue;
      }
      if (cache_->write_if_present(k, a - k * bs_, part)) continue;
      const auto blk = sc.data.span().first(bs_);
      sc.used = std::max<std::size_t>(sc.used, bs_);
      CRYPTMAP_TRY_VOID(read_block_into(sc, k, blk.data()));
      std::memcpy(blk.data() + (a - k * bs_), part.data(), part.size());
      const cache::PutResult r = cache_->put(k, blk, /*dirty=*/true);
      wipe(blk);
      if (r == cache::PutResult::kNoRoom) return false;
    }
    return true;
  }

  // Bytes `src` at `pos` of run [first, first + n) encrypted and written now (mode D: in place
  // with their tags; mode J: into the open journal batch), with the run's tag pages held
  // exclusively. Partial blocks are merged into their newest
  // contents: the cached copy, else the verified store contents. The run's cached copies are
  // dropped, written or not (written: the store, or the open batch, holds the newest contents
  // and a write-back pass finds them gone; failed: what the store holds is unknown, as for the
  // tag pages).
  Result<void> write_through_run(std::uint64_t first, std::size_t n, std::uint64_t pos,
                                 std::span<const std::byte> src, Scratch& sc) {
    const std::uint64_t run_lo = first * bs_;
    const std::uint64_t run_hi = pos + src.size();
    const auto data = sc.data.span().first(n * bs_);
    sc.used = std::max(sc.used, data.size());
    const bool head_partial = pos != run_lo;
    const bool tail_partial = run_hi != run_lo + n * bs_;
    if (head_partial) CRYPTMAP_TRY_VOID(newest_block(sc, first, data.first(bs_)));
    if (tail_partial && (n > 1 || !head_partial))
      CRYPTMAP_TRY_VOID(newest_block(sc, first + n - 1, data.subspan((n - 1) * bs_, bs_)));
    std::memcpy(data.data() + (pos - run_lo), src.data(), src.size());
    auto r = journal_mode_ ? write_journaled(first, n, data, sc.tags.span())
                           : write_encrypted(first, n, data, sc.tags.span());
    if (cache_)
      for (std::size_t i = 0; i < n; ++i) cache_->erase(first + i);
    return r;
  }

  // Block k's newest plaintext: the cached copy, else verified from the store.
  Result<void> newest_block(Scratch& sc, std::uint64_t k, std::span<std::byte> dst) {
    if (cache_ && cache_->read(k, 0, dst)) return ok();
    return read_block_into(sc, k, dst.data());
  }

  Result<void> flush() override {
    if (write_back_) CRYPTMAP_TRY_VOID(write_back());
    if (journal_) CRYPTMAP_TRY_VOID(commit_journal());
    CRYPTMAP_TRY_VOID(store_->sync());
    return ok();
  }

  // One write-back pass over every block dirty at its start (one pass at a time), in block
  // order, adjacent blocks as one run (within an interleave area, at most kMaxRunBlocks): each
  // run's blocks are snapshotted with their versions under the run's tag pages held
  // exclusively, encrypted there with fresh IVs and tags, and written as one unit with their
  // tags: mode D in place (data and tag window as one store batch), then marked clean; mode J
  // into the open journal batch (as a writer's), and the pass ends with one
  // commit (more when the batch fills), after which its blocks are marked clean. A
  // block modified since its snapshot stays dirty (mark_clean checks the version, which the
  // cache never repeats for an index); a failed pass leaves the rest dirty and returns the
  // first error.
  Result<void> write_back() {
    std::lock_guard one_pass(writeback_mu_);
    const std::size_t m = cache_->collect_dirty(wb_dirty_);
    if (m == 0) return ok();
    std::sort(wb_dirty_.begin(), wb_dirty_.begin() + static_cast<std::ptrdiff_t>(m));
    ScratchLease sc(pool_, kMaxRunBlocks * std::size_t{bs_});
    if (!journal_mode_) return write_back_in_place(m, *sc);
    for (std::size_t i = 0; i < m;) {
      const std::uint64_t k = wb_dirty_[i];
      const std::size_t limit = run_blocks(k, k + (m - i));
      std::size_t r = 1;
      while (r < limit && wb_dirty_[i + r] == k + r) ++r;
      CRYPTMAP_TRY_VOID(write_back_run(k, r, std::span(wb_versions_).subspan(i, r), *sc));
      i += r;
    }
    // Blocks of the pass are in the open batch (or a batch that a full batch, a writer or the
    // timer sealed meanwhile): commit, then mark them clean. One written again since its
    // snapshot (cached: a new version; written through: dropped) stays dirty or absent.
    CRYPTMAP_TRY_VOID(commit_journal());
    for (std::size_t i = 0; i < m; ++i)
      if (wb_versions_[i] != kNoVersion) {
        cache_->mark_clean(wb_dirty_[i], wb_versions_[i]);
        written_back_.fetch_add(1, std::memory_order_relaxed);
      }
    return ok();
  }

  static constexpr std::uint64_t kNoVersion = ~std::uint64_t{0};

  // Mode D's write-back (see write_back), at depth as the engine's: batches of up to
  // kWriteBackRuns runs (at most kMaxRunBlocks blocks in all) under the batch's tag pages held
  // exclusively: each block still dirty is snapshotted with its
  // version, each stretch encrypted there with fresh IVs and its tags, and the batch written in
  // place as one store batch (write_in_place: data and tag pages in flight together, as one
  // run's were), then its blocks are marked clean (the version check keeps a block written
  // again since dirty).
  Result<void> write_back_in_place(std::size_t m, Scratch& sc) {
    for (std::size_t i = 0; i < m;) {
      std::size_t j = i, runs = 0;
      while (j < m && runs < kWriteBackRuns) {
        const std::uint64_t k = wb_dirty_[j];
        const std::size_t limit = std::min(run_blocks(k, k + (m - j)), kMaxRunBlocks - (j - i));
        if (limit == 0) break;
        std::size_t r = 1;
        while (r < limit && wb_dirty_[j + r] == k + r) ++r;
        j += r;
        ++runs;
      }
      CRYPTMAP_TRY_VOID(write_back_batch(i, j, sc));
      i = j;
    }
    return ok();
  }

  // Blocks wb_dirty_[i, j) (ascending) of a mode-D write-back batch (see write_back_in_place).
  Result<void> write_back_batch(std::size_t i, std::size_t j, Scratch& sc) {
    const std::uint64_t spb = g_.sectors_per_block();
    // The stripes of the batch's own tag pages: writers and readers of the blocks between its
    // scattered runs go on meanwhile.
    std::uint64_t mask = 0;
    for (std::size_t x = i; x < j; ++x) {
      const std::uint64_t t0 = g_.tag_byte(wb_dirty_[x] * spb);
      mask |= TagPageLocks::stripes(t0 / kAlign, (t0 + tag_ - 1) / kAlign);
    }
    TagPageLocks::Held pages(pages_, mask, true);
    const auto data = sc.data.span();
    const auto tags = sc.tags.span();
    std::size_t n = 0;  // blocks snapshotted: wb_blocks_[0, n), their data and tags in order
    for (std::size_t x = i; x < j; ++x) {
      const std::uint64_t k = wb_dirty_[x];
      if (ra_ && (x == i || wb_dirty_[x - 1] != k - 1)) {
        std::size_t r = 1;  // windows hold the store's older contents
        while (x + r < j && wb_dirty_[x + r] == k + r) ++r;
        ra_->invalidate(k, k + r);
      }
      const auto v = cache_->snapshot_dirty(k, data.subspan(n * bs_, bs_));
      wb_versions_[x] = v ? *v : kNoVersion;
      if (v) wb_blocks_[n++] = k;
    }
    sc.used = std::max(sc.used, n * bs_);
    if (n == 0) return ok();
    // Each stretch of adjacent blocks (one run) encrypted with its tags.
    for (std::size_t b = 0; b < n;) {
      std::size_t r = 1;
      while (b + r < n && wb_blocks_[b + r] == wb_blocks_[b] + r) ++r;
      CRYPTMAP_TRY_VOID(convert_run(crypto::CryptoDir::kEncrypt, wb_blocks_[b], r,
                                    data.subspan(b * bs_, r * bs_),
                                    tags.subspan(b * tag_, r * tag_)));
      b += r;
    }
    CRYPTMAP_TRY_VOID(write_in_place(std::span(wb_blocks_).first(n), data.first(n * bs_),
                                     tags.first(n * tag_), {}, /*sections=*/false, {}));
    written_.fetch_add(n, std::memory_order_relaxed);
    written_back_.fetch_add(n, std::memory_order_relaxed);
    for (std::size_t x = i; x < j; ++x)
      if (wb_versions_[x] != kNoVersion) cache_->mark_clean(wb_dirty_[x], wb_versions_[x]);
    return ok();
  }

  // One run of a mode-J write-back pass (see write_back): snapshotted under its tag pages held
  // exclusively and added to the open journal batch; `versions` gets each block's snapshot
  // version (kNoVersion when it was no longer dirty: the stretches around it are written).
  Result<void> write_back_run(std::uint64_t first, std::size_t n, std::span<std::uint64_t> versions,
                              Scratch& sc) {
    const TagWindow w = tag_window(first, n);
    TagPageLocks::Held pages(pages_, w.lo / kAlign, (w.hi - 1) / kAlign, true);
    if (ra_) ra_->invalidate(first, first + n);  // windows hold the store's older contents
    const auto data = sc.data.span().first(n * bs_);
    sc.used = std::max(sc.used, data.size());
    std::size_t lo = 0;  // the stretch of snapshotted blocks not yet written
    auto write = [&](std::size_t hi) -> Result<void> {
      if (hi == lo) return ok();
      return write_journaled(first + lo, hi - lo, data.subspan(lo * bs_, (hi - lo) * bs_),
                             sc.tags.span());
    };
    for (std::size_t i = 0; i < n; ++i) {
      const auto v = cache_->snapshot_dirty(first + i, data.subspan(i * bs_, bs_));
      versions[i] = v ? *v : kNoVersion;
      if (v) continue;
      CRYPTMAP_TRY_VOID(write(i));
      lo = i + 1;
    }
    return write(n);
  }

  void kick_flusher() {
    {
      std::lock_guard l(timer_mu_);
      kick_ = true;
    }
    timer_cv_.notify_one();
  }

  Result<std::size_t> discard(ByteOffset off, std::uint64_t) override {
    return fail(make_error_fmt(Errc::kUnsupported, "discard", off.value,
                               "Discard/TRIM is not supported with integrity protection"));
  }

  std::uint64_t size_bytes() const noexcept override { return size_; }
  const VolumeLayout& layout() const noexcept override { return layout_; }
  bool read_only() const noexcept override { return read_only_; }

  IntegrityCounters counters() const {
    const TagPageCache::Stats t = tag_cache_->stats();
    IntegrityCounters c;
    c.tags_verified = verified_.load();
    c.tags_failed = failed_.load();
    c.tags_written = written_.load();
    c.tag_page_hits = t.hits;
    c.tag_page_misses = t.misses;
    c.tag_page_evictions = t.evictions;
    c.tag_page_capacity = tag_cache_->capacity();
    c.journal_commits = commits_.load();
    c.write_tag_page_reads = write_tag_reads_.load();
    c.store_write_batches = write_ops_.load();
    c.tag_page_waits = pages_.waits();
    c.buffer_bytes = pool_.bytes() + buffer_bytes_;
    return c;
  }

  // At close, when the read-ahead served anything: where sequential readers waited and where
  // the loaders' time went (bench/README.md, rahmac: what bounds hmac seqread).
  void log_read_ahead() const {
    if (!ra_) return;
    const std::string line = ra_->stats().summary();
    if (line.empty()) return;
    const auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
    log_->info("{}: read-ahead: {} (store reads {:.1f} ms, verify + decrypt {:.1f} ms)",
               store_->name(), line, ms(ra_times_.read_ns.load()), ms(ra_times_.verify_ns.load()));
  }

  // Mode J: every sealed batch committed (integrity_await_commits).
  Result<void> await_commits_public() { return await_commits(); }

  // At close (after the last write-back): what the write path did, for the bench
  // (bench/README.md reads these from the daemon's log).
  void log_counters() const {
    const IntegrityCounters c = counters();
    if (c.tags_written == 0) return;
    log_->info(
        "integrity volume {}: {} block(s) written ({} by write-back), {} store write batch(es), "
        "{} tag page(s) read for writes; tag page cache {} hit(s), {} miss(es), {} eviction(s) "
        "of {} page(s); {} tag-page stripe wait(s); {} tag(s) verified, {} journal commit(s)",
        store_->name(), c.tags_written, written_back_.load(), c.store_write_batches,
        c.write_tag_page_reads, c.tag_page_hits, c.tag_page_misses, c.tag_page_evictions,
        c.tag_page_capacity, c.tag_page_waits, c.tags_verified, c.journal_commits);
  }

 private:
  // Blocks from `first` up to `limit` that stay in one interleave area, at most `cap` (a
  // scratch slot's blocks, at most kMaxRunBlocks).
  std::size_t run_blocks(std::uint64_t first, std::uint64_t limit,
                         std::size_t cap = kMaxRunBlocks) const {
    const std::uint64_t spb = g_.sectors_per_block();
    const std::uint64_t area_blocks = g_.interleave_sectors() / spb;
    const std::uint64_t area_end = (first / area_blocks + 1) * area_blocks;
    return static_cast<std::size_t>(
        std::min<std::uint64_t>({limit, area_end, first + std::min(cap, kMaxRunBlocks)}) - first);
  }

  // Tag window of a run: [lo, hi) aligned, and the offset of the run's first tag in it.
  struct TagWindow {
    std::uint64_t lo, hi, first;
    std::size_t pages() const { return static_cast<std::size_t>((hi - lo) / kAlign); }
    std::uint64_t page(std::size_t p) const { return lo / kAlign + p; }  // tag page number
  };
  static std::span<std::byte> page_of(std::span<std::byte> tags, std::size_t p) {
    return tags.subspan(p * kAlign, kAlign);
  }
  // Pages [lo, hi) of a window (relative), grown by add().
  struct PageRange {
    std::size_t lo = SIZE_MAX, hi = 0;
    void add(std::size_t p) {
      lo = std::min(lo, p);
      hi = std::max(hi, p + 1);
    }
    bool empty() const { return lo >= hi; }
    std::span<std::byte> of(std::span<std::byte> tags) const {
      return tags.subspan(lo * kAlign, (hi - lo) * kAlign);
    }
  };

  // Before a write of the n tags of window `w` (into `tags`, the whole window): the pages the
  // run shares with its neighbours (a partial first and last page) get their current contents,
  // from the tag page cache or else from the store; the run's own tags are about to be
  // overwritten. The caller holds the window's tag pages exclusively.
  Result<void> load_tag_edges(const TagWindow& w, std::size_t n, std::span<std::byte> tags) {
    const std::size_t last = w.pages() - 1;
    const bool head = w.first != 0;
    const bool tail = (w.first + n * tag_) % kAlign != 0;
    PageRange miss;
    if (head && !tag_cache_->get(w.page(0), page_of(tags, 0))) miss.add(0);
    if (tail && (last > 0 || !head) && !tag_cache_->get(w.page(last), page_of(tags, last)))
      miss.add(last);
    if (!miss.empty()) {
      write_tag_reads_.fetch_add(miss.hi - miss.lo, std::memory_order_relaxed);
      CRYPTMAP_TRY_VOID(store_->read_at(ByteOffset{w.lo + miss.lo * kAlign}, miss.of(tags)));
    }
    return ok();
  }

  // Writes a run's data (at `data_off`) and its whole tag window `tags` as one store batch
  // (in flight together; mode D promises no order between a block and its tag,
  // docs/integrity.md §6). The window's pages become the cache's copies when the write
  // succeeded and are dropped from the cache when it did not (the store's contents are then
  // unknown). The caller holds the window exclusively.
  Result<void> write_with_tags(const TagWindow& w, ByteOffset data_off,
                               std::span<const std::byte> data, std::span<std::byte> tags) {
    std::array<WritePiece, 2> io{WritePiece{data_off, data}, WritePiece{ByteOffset{w.lo}, tags}};
    write_ops_.fetch_add(1, std::memory_order_relaxed);
    auto r = store_->write_batch(io);
    for (std::size_t p = 0; p < w.pages(); ++p)
      r ? tag_cache_->put(w.page(p), page_of(tags, p)) : tag_cache_->erase(w.page(p));
    return r;
  }
  TagWindow tag_window(std::uint64_t first, std::size_t n) const {
    const std::uint64_t t0 = g_.tag_byte(first * g_.sectors_per_block());
    const std::uint64_t lo = align_down(t0);
    return {lo, align_up(t0 + n * tag_), t0 - lo};
  }

  // Reads blocks [first, first + n) into `data` (n blocks) and verifies + decrypts them there;
  // `tag_buf` holds the aligned tag window. On failure `data` holds no plaintext.
  Result<void> read_verified(std::uint64_t first, std::size_t n, std::span<std::byte> data,
                             std::span<std::byte> tag_buf, bool report = true,
                             LoaderTimes* times = nullptr) {
    const TagWindow w = tag_window(first, n);
    std::uint64_t t0 = times != nullptr ? steady_ns() : 0;  // clock read for a loader only
    const auto tags = tag_buf.first(w.hi - w.lo);
    // Mode J: a batch retired between the reads below and the overlay (its copy landed after
    // the reads began, and it is no longer overlaid) would leave a block older than its last
    // write, or new data with an old tag: then read again (retired_, overlay_pending).
    for (;;) {
      const std::uint64_t retired = retired_.load();
      // Resident tag pages come from the cache; the rest (one piece from the first missing page
      // to the last) from the store, in flight together with the data.
      PageRange miss;
      for (std::size_t p = 0; p < w.pages(); ++p)
        if (!tag_cache_->get(w.page(p), page_of(tags, p))) miss.add(p);
      if (miss.empty()) {
        CRYPTMAP_TRY_VOID(store_->read_at(data_at(first), data));
      } else {
        // Cached only if no in-place write of mode J's journal thread overlapped the read.
        const TagPageCache::Ticket ticket = tag_cache_->fill_ticket();
        std::array<ReadPiece, 2> io{ReadPiece{data_at(first), data},
                                    ReadPiece{ByteOffset{w.lo + miss.lo * kAlign}, miss.of(tags)}};
        CRYPTMAP_TRY_VOID(store_->read_batch(io));  // in flight together
        for (std::size_t p = miss.lo; p < miss.hi; ++p)
          tag_cache_->put_filled(w.page(p), page_of(tags, p), ticket);
      }
      if (overlay_pending(first, n, data, tags.subspan(w.first, n * tag_), retired)) break;
    }
    if (times != nullptr) {
      const std::uint64_t t1 = steady_ns();
      times->read_ns.fetch_add(t1 - t0, std::memory_order_relaxed);
      t0 = t1;
    }
    std::array<bool, kMaxRunBlocks> failed{};
    auto r = convert_run(crypto::CryptoDir::kDecrypt, first, n, data,
                         tags.subspan(w.first, n * tag_), std::span(failed).first(n));
    verified_.fetch_add(n, std::memory_order_relaxed);
    if (times != nullptr) times->verify_ns.fetch_add(steady_ns() - t0, std::memory_order_relaxed);
    if (!r) {
      for (std::size_t i = 0; i < n && report; ++i)
        if (failed[i]) {
          failed_.fetch_add(1, std::memory_order_relaxed);
          log_auth_failure(SectorIndex{first + i});
        }
      wipe(data);
      return fail(r.error());
    }
    return ok();
  }

  // Encrypts, or verifies and decrypts, blocks [first, first + n) (`data`) with their n tags
  // (`tags`) in place, through the volume's crypto engine with the engine's backlog protocol
  // (CryptoDriver::convert_auth): every crypto request carries its blocks with exactly their
  // tags and sector numbers (a block and its tag are one unit; completions in any order cannot
  // reorder them); runs of at least kParallelBytes are cut into per-core slices (reads unless
  // --perf-no_read_workqueue, writes unless --perf-no_write_workqueue; never with force_inline).
  // Decrypt is one block per request, sets failed[i] for each block whose tag did not verify
  // and returns the error of the lowest one.
  Result<void> convert_run(crypto::CryptoDir dir, std::uint64_t first, std::size_t n,
                           std::span<std::byte> data, std::span<std::byte> tags,
                           std::span<bool> failed = {}) {
    return driver_->convert_auth(dir, data.first(n * bs_), tags.first(n * tag_), SectorIndex{first},
                                 failed.empty() ? failed : failed.first(n));
  }

  Result<void> read_block_into(Scratch& sc, std::uint64_t k, std::byte* dst) {
    const auto d = sc.block.span().first(bs_);
    CRYPTMAP_TRY_VOID(read_verified(k, 1, d, sc.block_tags.span()));
    std::memcpy(dst, d.data(), bs_);
    wipe(d);
    return ok();
  }

  Result<void> write_encrypted(std::uint64_t first, std::size_t n, std::span<std::byte> data,
                               std::span<std::byte> tag_buf) {
    const TagWindow w = tag_window(first, n);
    const auto tags = tag_buf.first(w.hi - w.lo);
    CRYPTMAP_TRY_VOID(load_tag_edges(w, n, tags));
    CRYPTMAP_TRY_VOID(
        convert_run(crypto::CryptoDir::kEncrypt, first, n, data, tags.subspan(w.first, n * tag_)));
    CRYPTMAP_TRY_VOID(write_with_tags(w, data_at(first), data, tags));
    written_.fetch_add(n, std::memory_order_relaxed);
    return ok();
  }

  // Mode J (docs/integrity.md §1.3, §5), as the kernel's: encrypted blocks are added to the
  // open journal batch in memory (a block already in it is replaced there: the batch is not on
  // disk yet) and the write is acknowledged; a full batch is sealed and committed by the
  // journal thread while writers fill the next one. Until their batch is copied in place,
  // reads see those blocks through overlay_pending. The caller holds the run's tag pages
  // exclusively: no other writer adds these blocks meanwhile.
  Result<void> write_journaled(std::uint64_t first, std::size_t n, std::span<std::byte> data,
                               std::span<std::byte> tag_buf) {
    const auto tags = tag_buf.first(n * tag_);
    CRYPTMAP_TRY_VOID(convert_run(crypto::CryptoDir::kEncrypt, first, n, data, tags));
    std::unique_lock l(jmu_);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t k = first + i;
      std::size_t e = batch_find(*open_, k);
      if (e == open_->blocks.size()) {
        if (open_->blocks.size() == pend_cap_) {
          // Sealed (waiting for the commit in flight, if any); a new open batch never holds k:
          // its other writers hold other tag pages.
          CRYPTMAP_TRY_VOID(make_room(l));
          e = open_->blocks.size();
        }
        if (open_->blocks.empty()) open_->since = std::chrono::steady_clock::now();
        open_->blocks.push_back(k);
        batch_index(*open_, k);
      }
      put_entry(*open_, e, k, data.data() + i * bs_, tags.data() + i * tag_);
    }
    written_.fetch_add(n, std::memory_order_relaxed);  // into the journal, then in place
    return ok();
  }

  // The flusher thread: wakes every clamp(flush_age / 4, 10 ms, 1 s) (1 s without write-back)
  // or when kicked; writes dirty blocks back when kicked or when the oldest is older than the
  // flush age (the engine's rules), and in mode J seals an open batch older than kCommitAge
  // (the journal thread commits it), asks for the copy of a committed batch idle that long,
  // and lets a failed commit be tried again.
  void flusher_loop() {
    (void)mark_io_thread();
    const auto tick =
        write_back_ ? std::clamp<std::chrono::milliseconds>(
                          flush_age_ / 4, std::chrono::milliseconds(10), std::chrono::seconds(1))
                    : std::chrono::milliseconds(1000);
    std::unique_lock l(timer_mu_);
    while (!stop_) {
      timer_cv_.wait_for(l, tick, [&] { return stop_ || kick_; });
      if (stop_) break;
      const bool kicked = std::exchange(kick_, false);
      l.unlock();
      if (write_back_) {
        const auto oldest = cache_->oldest_dirty();
        if (kicked || (oldest && std::chrono::steady_clock::now() - *oldest >= flush_age_))
          if (auto r = write_back(); !r)
            log_->error("{}: write-back failed (the blocks stay dirty): {}", store_->name(),
                        r.error().message());
      }
      if (journal_) {
        std::unique_lock jl(jmu_);
        const auto now = std::chrono::steady_clock::now();
        if (committing_ && jerror_) {
          jerror_.reset();  // the journal thread tries the commit again
          jcv_.notify_all();
        } else if (!open_->blocks.empty() && now - open_->since >= kCommitAge) {
          if (!committing_) seal();
        } else if (open_->blocks.empty() && !committing_ && copying_ &&
                   now - copying_->since >= kCommitAge) {
          copy_request_ = true;
          jcv_.notify_all();
        }
      }
      l.lock();
    }
  }

  // Mode J: one batch of journaled blocks (docs/integrity.md §5): open (filled by writers),
  // committing (sealed: its sections being written by the journal thread) or committed (its
  // blocks waiting for their in-place copy, which rides with the next commit). Three rotate:
  // a batch is sealed only when no commit is in flight, so the open one always finds a free
  // one. Allocated at open. `data` is the section image of its commit, built in place as
  // writers add blocks (put_entry): entry e's block lies whole in the data sectors of section
  // e / section_entries (batch_block_offset), its metadata (sector, the pieces' last 8 bytes,
  // tag) in that section's first 8 sectors (batch_entry). The commit only stamps commit ids
  // over the pieces' last 8 bytes and puts them back after its journal write (commit_batch);
  // readers of the committing batch take those bytes from the metadata (overlay_batch).
  struct JournalBatch {
    std::vector<std::uint64_t> blocks;        // in entry order
    LockedMemory data, tags;                  // the section image; entry e's tag also at tags[e·T]
    std::vector<std::uint32_t> index;         // entry + 1 by batch_slot (0: empty)
    std::vector<std::uint64_t> sorted;        // committed: `blocks` ascending (the in-place copy)
    std::vector<std::uint32_t> order;         // committed: the entry of sorted[i]
    std::uint32_t section = 0, sections = 0;  // its ring position, set by seal()
    unsigned seq = 0;
    std::uint64_t id = 0;                         // seal number
    std::chrono::steady_clock::time_point since;  // open: its first block; committed: the commit
  };

  // Replaces the blocks of [first, first + n) that wait in a journal batch (committed and not
  // yet copied, committing, open: newest last) by the journaled versions (their ciphertext in
  // `data`, their tags in `tags`, n tags), before the one verification of the run. False, and
  // nothing replaced, when a batch was retired since `retired` (retired_ before the caller read
  // the store): the caller reads again.
  bool overlay_pending(std::uint64_t first, std::size_t n, std::span<std::byte> data,
                       std::span<std::byte> tags, std::uint64_t retired) {
    if (!journal_) return true;
    std::shared_lock l(jmu_);
    if (retired_.load() != retired) return false;
    for (const JournalBatch* b : {copying_, committing_, open_})
      if (b) overlay_batch(*b, first, n, data, tags, /*stamped=*/b == committing_);
    return true;
  }
  // `stamped`: the batch being committed, whose pieces' last 8 bytes the journal thread
  // overwrites with commit ids and puts back meanwhile: those bytes come from the entry's
  // metadata (what replay puts back too), the rest of each piece from the data sectors.
  void overlay_batch(const JournalBatch& b, std::uint64_t first, std::size_t n,
                     std::span<std::byte> data, std::span<std::byte> tags, bool stamped) const {
    const std::uint32_t spb = g_.sectors_per_block();
    auto put = [&](std::uint64_t k, std::size_t e) {
      std::byte* dst = data.data() + (k - first) * bs_;
      const std::byte* src = b.data.data() + batch_block_offset(e);
      if (!stamped) {
        std::memcpy(dst, src, bs_);
      } else {
        const std::byte* slots = batch_entry(b, e) + 8;
        for (std::uint32_t q = 0; q < spb; ++q) {
          std::memcpy(dst + std::size_t{q} * 512, src + std::size_t{q} * 512, 504);
          std::memcpy(dst + std::size_t{q} * 512 + 504, slots + std::size_t{q} * 8, 8);
        }
      }
      std::memcpy(tags.data() + (k - first) * tag_, b.tags.data() + e * tag_, tag_);
    };
    if (n < b.blocks.size()) {
      for (std::uint64_t k = first; k < first + n; ++k)
        if (const std::size_t e = batch_find(b, k); e < b.blocks.size()) put(k, e);
      return;
    }
    for (std::size_t e = 0; e < b.blocks.size(); ++e)
      if (b.blocks[e] >= first && b.blocks[e] < first + n) put(b.blocks[e], e);
  }

  // Where entry e of a batch lives in its section image (docs/integrity.md §1.3): its block in
  // the data sectors of section e / section_entries, its metadata in that section's first 8
  // sectors (entries striped over them).
  std::size_t batch_block_offset(std::size_t e) const {
    const std::size_t per = g_.journal_section_entries;
    return e / per * sec_bytes_ + (8 + e % per * g_.sectors_per_block()) * std::size_t{512};
  }
  std::size_t batch_entry_offset(std::size_t e) const {
    const std::size_t per = g_.journal_section_entries;
    return e / per * sec_bytes_ +
           integrity::journal_entry_offset(g_, static_cast<std::uint32_t>(e % per));
  }
  const std::byte* batch_entry(const JournalBatch& b, std::size_t e) const {
    return b.data.data() + batch_entry_offset(e);
  }

  // Entry e of the open batch becomes block k (its ciphertext `blk`, its tag `tag`), jmu_ held
  // exclusively: the block whole into its data sectors, and into the entry the sector, each
  // 512-byte piece's last 8 bytes (the slots replay puts back; the commit stamps commit ids
  // over the pieces' own) and the tag, padding zeroed.
  void put_entry(JournalBatch& b, std::size_t e, std::uint64_t k, const std::byte* blk,
                 const std::byte* tag) {
    const std::uint32_t spb = g_.sectors_per_block();
    std::memcpy(b.data.data() + batch_block_offset(e), blk, bs_);
    std::byte* m = b.data.data() + batch_entry_offset(e);
    store_le64(m, k * spb);
    for (std::uint32_t q = 0; q < spb; ++q)
      std::memcpy(m + 8 + std::size_t{q} * 8, blk + std::size_t{q} * 512 + 504, 8);
    std::byte* t = m + 8 + std::size_t{spb} * 8;
    std::memcpy(t, tag, tag_);
    std::fill(t + tag_, m + g_.journal_entry_size, std::byte{0});
    std::memcpy(b.tags.data() + e * tag_, tag, tag_);
  }

  // A batch's index (open addressing, linear probing, twice its capacity; cleared when the
  // batch opens again): the entry holding block k, else b.blocks.size().
  std::size_t batch_slot(std::uint64_t k) const {
    return static_cast<std::size_t>((k * 0x9E3779B97F4A7C15ull) >> (64 - pend_bits_));
  }
  std::size_t batch_find(const JournalBatch& b, std::uint64_t k) const {
    const std::size_t mask = b.index.size() - 1;
    for (std::size_t h = batch_slot(k);; h = (h + 1) & mask) {
      const std::uint32_t e = b.index[h];
      if (e == 0) return b.blocks.size();
      if (b.blocks[e - 1] == k) return e - 1;
    }
  }
  // Indexes block k, just appended to b.blocks.
  void batch_index(JournalBatch& b, std::uint64_t k) {
    const std::size_t mask = b.index.size() - 1;
    std::size_t h = batch_slot(k);
    while (b.index[h] != 0) h = (h + 1) & mask;
    b.index[h] = static_cast<std::uint32_t>(b.blocks.size());
  }

  // Waits on jcv_ (l holds jmu_) until `done`; a failed commit (jerror_) is tried once more
  // by the journal thread, and its error returned when that fails too.
  template <class Done>
  Result<void> await_journal(std::unique_lock<std::shared_mutex>& l, Done done) {
    bool retried = false;
    while (!done()) {
      if (jerror_) {
        if (retried) return fail(*jerror_);
        jerror_.reset();
        retried = true;
        jcv_.notify_all();
      }
      jcv_.wait(l);
    }
    return ok();
  }

  // The open batch is full: sealed once no commit is in flight (l holds jmu_; waiting lets the
  // journal thread finish the commit before).
  Result<void> make_room(std::unique_lock<std::shared_mutex>& l) {
    while (open_->blocks.size() == pend_cap_) {
      if (!committing_) {
        seal();
        break;
      }
      CRYPTMAP_TRY_VOID(await_journal(
          l, [&] { return committing_ == nullptr || open_->blocks.size() < pend_cap_; }));
    }
    return ok();
  }

  // Seals the open batch (jmu_ held exclusively, no commit in flight, the batch not empty): it
  // gets the next sections of the ring (each wrap advances the sequence) and becomes the batch
  // the journal thread commits; a free batch opens. Two consecutive batches never share a
  // section (at most half the ring each), and a batch is sealed only after the commit before it
  // (whose sync made the copy of the one before that durable): so a commit never overwrites
  // sections whose copy is not durable (a one-section ring copies first, commit_batch).
  void seal() {
    JournalBatch& b = *open_;
    const std::uint32_t per = g_.journal_section_entries;
    b.sections =
        static_cast<std::uint32_t>(std::max<std::size_t>(1, (b.blocks.size() + per - 1) / per));
    b.section = jpos_.section;
    b.seq = jpos_.seq;
    for (std::uint32_t i = 0; i < b.sections; ++i)
      if (++jpos_.section == g_.journal_sections) {
        jpos_.section = 0;
        jpos_.seq = (jpos_.seq + 1) % 4;
      }
    b.id = ++sealed_id_;
    committing_ = &b;
    for (JournalBatch& f : jb_)
      if (&f != committing_ && &f != copying_) {
        open_ = &f;
        break;
      }
    open_->blocks.clear();
    std::fill(open_->index.begin(), open_->index.end(), 0);
    jcv_.notify_all();
  }

  // Seals the open batch and waits until it (and every batch before it) is committed: flush,
  // the end of a write-back pass, close.
  Result<void> commit_journal() {
    if (!journal_) return ok();
    std::unique_lock l(jmu_);
    if (!open_->blocks.empty()) {
      CRYPTMAP_TRY_VOID(await_journal(l, [&] { return committing_ == nullptr; }));
      if (!open_->blocks.empty()) seal();
    }
    const std::uint64_t target = sealed_id_;
    return await_journal(l, [&] { return committed_id_ >= target; });
  }

  // Waits until every sealed batch is committed (integrity_await_commits).
  Result<void> await_commits() {
    if (!journal_) return ok();
    std::unique_lock l(jmu_);
    const std::uint64_t target = sealed_id_;
    return await_journal(l, [&] { return committed_id_ >= target; });
  }

  // The journal thread (mode J, read-write): commits each sealed batch outside every lock the
  // writers and readers take (commit_batch: its sections and the previous batch's in-place
  // copy, one sync), then makes it the committed batch; copies an idle committed batch alone
  // when the flusher asks. A failed commit stays sealed (jerror_) until a waiter or the flusher
  // lets it be tried again.
  void journal_loop() {
    (void)mark_io_thread();
    std::unique_lock l(jmu_);
    for (;;) {
      jcv_.wait(l, [&] { return jstop_ || (committing_ && !jerror_) || copy_request_; });
      if (committing_ && !jerror_) {
        JournalBatch* c = committing_;
        JournalBatch* p = copying_;
        l.unlock();
        auto r = commit_batch(*c, p);
        l.lock();
        if (!r) {
          log_->error("{}: journal commit failed: {}", store_->name(), r.error().message());
          jerror_ = r.error();
        } else {
          c->since = std::chrono::steady_clock::now();
          if (p) retired_.fetch_add(1);  // readers that read before p's copy read again
          copying_ = c;                  // p, copied and durable, is free
          committing_ = nullptr;
          copy_request_ = false;  // what it asked for is done
          committed_id_ = c->id;
          commits_.fetch_add(1, std::memory_order_relaxed);
        }
        jcv_.notify_all();
        continue;
      }
      if (copy_request_) {
        copy_request_ = false;
        if (JournalBatch* p = copying_) {
          l.unlock();
          auto r = copy_batch(*p);
          l.lock();
          if (!r)
            log_->error("{}: copy of committed journal entries failed (replay will redo it): {}",
                        store_->name(), r.error().message());
          else if (copying_ == p) {
            retired_.fetch_add(1);
            copying_ = nullptr;
          }
          jcv_.notify_all();
        }
        continue;
      }
      if (jstop_) return;
    }
  }

  // Commits batch c (sealed: no writer changes it) with the in-place copy of the committed
  // batch p (or none): c's data is already its sections' image (put_entry); the commit marks
  // the entries after its last one unused, stamps every sector with the commit id of its
  // section and sequence (over each piece's last 8 bytes, which the entries hold), writes the
  // sections in one store batch together with p's copy, puts the pieces' last bytes back
  // (c's own copy, with the next commit, writes the blocks from there), then syncs once: the
  // sync makes c durable and p's copy durable before p's sections can be reused (the kernel's
  // dm-integrity likewise copies committed entries lazily and flushes before it reuses journal
  // sections). c then waits, committed, for its own copy. A crash leaves each block old (its
  // section torn or not reached: replay stops there) or new (committed: replay copies it
  // again, whether its copy landed or not). Runs on the journal thread, without the volume's
  // locks: readers see c (taking the stamped bytes from its entries) and p through
  // overlay_pending meanwhile, and the tag page cache keeps readers from caching a page read
  // before this copy rewrote it (TagPageCache::begin_store_write).
  Result<void> commit_batch(JournalBatch& c, JournalBatch* p) {
    // A ring too small for two batches (one section) would overwrite the sections of the
    // batch still to be copied: that copy first, synced.
    if (p && c.sections + p->sections > g_.journal_sections) {
      CRYPTMAP_TRY_VOID(copy_batch(*p));
      p = nullptr;
    }
    const std::uint32_t spb = g_.sectors_per_block();
    const std::size_t m = c.blocks.size();
    const std::uint32_t per = g_.journal_section_entries;
    const auto all = c.data.span().first(c.sections * sec_bytes_);
    // Entries after the last one: unused, their data sectors zero (as the kernel's fresh
    // sections); they held an earlier batch's.
    for (std::size_t x = m; x < std::size_t{c.sections} * per; ++x) {
      std::byte* e = all.data() + batch_entry_offset(x);
      std::fill(e, e + g_.journal_entry_size, std::byte{0});
      store_le32(e + 4, 0xFFFFFFFFu);
      std::fill_n(all.data() + batch_block_offset(x), bs_, std::byte{0});
    }
    std::uint32_t section = c.section;
    unsigned seq = c.seq;
    for (std::uint32_t i = 0; i < c.sections; ++i) {
      std::byte* sec = all.data() + i * sec_bytes_;
      for (std::uint32_t j = 0; j < g_.journal_section_sectors; ++j)
        store_le64(sec + std::size_t{j} * 512 + 504, integrity::journal_commit_id(section, j, seq));
      if (++section == g_.journal_sections) {
        section = 0;
        seq = (seq + 1) % 4;
      }
    }
    // The sections up to the ring's end, and those after its wrap (never the same ones), with
    // the previous commit's copy: one store batch, one sync.
    const std::uint64_t journal_at = g_.journal_first_sector() * 512;
    const std::uint32_t c1 = std::min(c.sections, g_.journal_sections - c.section);
    std::array<WritePiece, 2> io{
        WritePiece{ByteOffset{journal_at + c.section * sec_bytes_}, all.first(c1 * sec_bytes_)},
        WritePiece{ByteOffset{journal_at}, all.subspan(c1 * sec_bytes_)}};
    const auto extra = std::span<const WritePiece>(io).first(c.sections > c1 ? 2 : 1);
    Result<void> written;
    if (p) {
      tag_cache_->begin_store_write();
      written = write_in_place(p->sorted, p->data.span(), p->tags.span(), p->order,
                               /*sections=*/true, extra);
      tag_cache_->end_store_write();
    } else {
      written = write_in_place({}, {}, {}, {}, /*sections=*/false, extra);
    }
    // The blocks whole again (written or not: a failed commit is tried again, stamping anew).
    for (std::size_t x = 0; x < m; ++x) {
      std::byte* blk = all.data() + batch_block_offset(x);
      const std::byte* slots = all.data() + batch_entry_offset(x) + 8;
      for (std::uint32_t q = 0; q < spb; ++q)
        std::memcpy(blk + std::size_t{q} * 512 + 504, slots + std::size_t{q} * 8, 8);
    }
    CRYPTMAP_TRY_VOID(written);
    CRYPTMAP_TRY_VOID(store_->sync());
    // c's copy, in block order, for the next commit.
    c.order.resize(m);
    for (std::size_t e = 0; e < m; ++e) c.order[e] = static_cast<std::uint32_t>(e);
    std::sort(c.order.begin(), c.order.end(),
              [&](std::uint32_t x, std::uint32_t y) { return c.blocks[x] < c.blocks[y]; });
    c.sorted.resize(m);
    for (std::size_t j = 0; j < m; ++j) c.sorted[j] = c.blocks[c.order[j]];
    return ok();
  }

  // Copies the committed batch p to its places alone and syncs (no commit carries it: its
  // sections are about to be reused, the volume is idle or closing).
  Result<void> copy_batch(const JournalBatch& p) {
    tag_cache_->begin_store_write();
    auto r = write_in_place(p.sorted, p.data.span(), p.tags.span(), p.order, /*sections=*/true, {});
    tag_cache_->end_store_write();
    CRYPTMAP_TRY_VOID(r);
    return store_->sync();
  }

  // Writes blocks `blocks` (ascending, distinct; block i's ciphertext at data[e·bs], or at
  // data[batch_block_offset(e)] when `sections` (a journal batch's section image), its tag at
  // tags[e·T], e = order[i], or i when `order` is empty) in place, with `extra` pieces, as one
  // store batch: one piece per stretch of
  // adjacent blocks in one interleave area, and each tag page they touch once (pages the
  // batch's tags do not cover whole get their other bytes from the tag page cache, else from
  // the store, all missing pages read as one batch first). Blocks whose tags touch more than
  // kMaxInPlacePages pages (a big commit of scattered blocks) are written as several such
  // batches in block order, `extra` with the first; a page two of them share is completed from
  // what the one before wrote. The pages become the cache's copies when the write succeeded and
  // are dropped when it did not. The caller keeps the pages of `blocks` from changing (mode D:
  // their stripes held exclusively; mode J: the journal thread, the only in-place writer,
  // between TagPageCache::begin_store_write and end_store_write) and syncs; one caller at a
  // time (in_place_: mode D's write-back pass, or mode J's journal thread).
  Result<void> write_in_place(std::span<const std::uint64_t> blocks,
                              std::span<const std::byte> data, std::span<const std::byte> tags,
                              std::span<const std::uint32_t> order, bool sections,
                              std::span<const WritePiece> extra) {
    std::size_t b0 = 0;
    do {
      CRYPTMAP_TRY(b1, write_in_place_batch(blocks, data, tags, order, sections, b0,
                                            b0 == 0 ? extra : std::span<const WritePiece>{}));
      b0 = b1;
    } while (b0 < blocks.size());
    return ok();
  }

  // One store batch of write_in_place: blocks[b0, b1) with `extra`, b1 as far as the tag pages
  // fit; returns b1.
  Result<std::size_t> write_in_place_batch(std::span<const std::uint64_t> blocks,
                                           std::span<const std::byte> data,
                                           std::span<const std::byte> tags,
                                           std::span<const std::uint32_t> order, bool sections,
                                           std::size_t b0, std::span<const WritePiece> extra) {
    auto entry = [&](std::size_t i) -> std::size_t { return order.empty() ? i : order[i]; };
    auto at = [&](std::size_t i) -> std::size_t {  // block i's bytes in `data`
      return sections ? batch_block_offset(entry(i)) : entry(i) * bs_;
    };
    InPlace& ip = in_place_;
    ip.pages.clear();
    ip.covered.clear();
    ip.reads.clear();
    ip.writes.assign(extra.begin(), extra.end());
    const std::uint32_t spb = g_.sectors_per_block();
    // The tag pages, ascending (tags of ascending blocks are ascending), and how much of each
    // the batch's tags cover.
    std::size_t b1 = b0;
    for (; b1 < blocks.size(); ++b1) {
      const std::uint64_t t0 = g_.tag_byte(blocks[b1] * spb), t1 = t0 + tag_;
      const std::uint64_t p0 = t0 / kAlign, p1 = (t1 - 1) / kAlign;
      const std::size_t fresh =
          static_cast<std::size_t>(p1 - p0 + 1) - (!ip.pages.empty() && ip.pages.back() == p0);
      if (ip.pages.size() + fresh > ip.capacity_pages) break;
      for (std::uint64_t p = p0; p <= p1; ++p) {
        if (ip.pages.empty() || ip.pages.back() != p) {
          ip.pages.push_back(p);
          ip.covered.push_back(0);
        }
        ip.covered.back() +=
            static_cast<std::uint32_t>(std::min(t1, (p + 1) * kAlign) - std::max(t0, p * kAlign));
      }
    }
    if (b1 == b0 && b0 < blocks.size())
      return fail(make_error(Errc::kIo, "integrity volume: in-place batch exceeds its tag pages",
                             blocks[b0]));
    const auto buf = ip.buf.span();
    for (std::size_t j = 0; j < ip.pages.size(); ++j) {
      if (ip.covered[j] == kAlign || tag_cache_->get(ip.pages[j], page_of(buf, j))) continue;
      if (!ip.reads.empty() && ip.pages[j - 1] == ip.pages[j] - 1 &&
          ip.reads.back().off.value + ip.reads.back().out.size() == ip.pages[j] * kAlign)
        ip.reads.back().out = buf.subspan((j - ip.reads.back().out.size() / kAlign) * kAlign,
                                          ip.reads.back().out.size() + kAlign);
      else
        ip.reads.push_back(ReadPiece{ByteOffset{ip.pages[j] * kAlign}, page_of(buf, j)});
    }
    if (!ip.reads.empty()) {
      for (const ReadPiece& rp : ip.reads)
        write_tag_reads_.fetch_add(rp.out.size() / kAlign, std::memory_order_relaxed);
      CRYPTMAP_TRY_VOID(store_->read_batch(ip.reads));
    }
    // Tags into their pages (a tag crossing a page boundary continues in the next buffer page:
    // the two pages are adjacent in both).
    std::size_t j = 0;
    for (std::size_t i = b0; i < b1; ++i) {
      const std::uint64_t t0 = g_.tag_byte(blocks[i] * spb);
      while (ip.pages[j] != t0 / kAlign) ++j;
      std::memcpy(buf.data() + j * kAlign + t0 % kAlign, tags.data() + entry(i) * tag_, tag_);
    }
    // Data: one piece per stretch of adjacent blocks within an interleave area (and adjacent
    // in `data`: in a section image, within one section).
    const std::uint64_t area_blocks = g_.interleave_sectors() / spb;
    for (std::size_t i = b0; i < b1;) {
      std::size_t r = 1;
      while (i + r < b1 && blocks[i + r] == blocks[i] + r && at(i + r) == at(i) + r * bs_ &&
             blocks[i + r] / area_blocks == blocks[i] / area_blocks)
        ++r;
      ip.writes.push_back(WritePiece{data_at(blocks[i]), data.subspan(at(i), r * bs_)});
      i += r;
    }
    // Tag pages: one piece per stretch of adjacent pages.
    for (std::size_t p = 0; p < ip.pages.size();) {
      std::size_t r = 1;
      while (p + r < ip.pages.size() && ip.pages[p + r] == ip.pages[p] + r) ++r;
      ip.writes.push_back(
          WritePiece{ByteOffset{ip.pages[p] * kAlign}, buf.subspan(p * kAlign, r * kAlign)});
      p += r;
    }
    if (!ip.writes.empty()) write_ops_.fetch_add(1, std::memory_order_relaxed);
    auto r = ip.writes.empty() ? Result<void>{} : store_->write_batch(ip.writes);
    for (std::size_t p = 0; p < ip.pages.size(); ++p)
      r ? tag_cache_->put(ip.pages[p], page_of(buf, p)) : tag_cache_->erase(ip.pages[p]);
    if (!r) return fail(r.error());
    return b1;
  }

  // Allocates in_place_ for batches of at most `blocks` blocks in at most `runs` stretches.
  Result<void> init_in_place(std::size_t blocks, std::size_t runs) {
    const std::size_t pages = std::max<std::size_t>(
        2,
        std::min({2 * blocks, (blocks * tag_ + kAlign - 1) / kAlign + 2 * runs, kMaxInPlacePages}));
    CRYPTMAP_TRY(b, LockedMemory::allocate(pages * kAlign, MemoryLock::kBestEffort,
                                           "integrity in-place tag pages"));
    InPlace& ip = in_place_;
    buffer_bytes_ += b.size();
    ip.buf = std::move(b);
    ip.capacity_pages = pages;
    try {
      ip.pages.reserve(pages);
      ip.covered.reserve(pages);
      ip.reads.reserve(pages);
      ip.writes.reserve(blocks + pages + 2);
    } catch (const std::bad_alloc&) {
      return fail(make_error(Errc::kNoSpace, "integrity volume: allocate the in-place batch"));
    }
    return ok();
  }

  ByteOffset data_at(std::uint64_t k) const {
    return ByteOffset{g_.data_sector(k * g_.sectors_per_block()) * 512};
  }

  void log_auth_failure(SectorIndex k) {
    const std::uint64_t count = log_count_.fetch_add(1, std::memory_order_relaxed);
    if (count < 100 || count % 1000 == 0)
      log_->error("{}: INTEGRITY AEAD ERROR, sector {}", store_->name(),
                  crypto::aad_sector(k, bs_));
  }

  static void wipe(std::span<std::byte> v) { std::fill(v.begin(), v.end(), std::byte{0}); }

  const VolumeLayout layout_;
  const Geometry g_;
  const std::uint64_t size_;
  const std::uint32_t bs_;
  const std::uint32_t tag_;
  std::unique_ptr<crypto::AuthSectorCipher> cipher_;
  // Every block's crypto (convert_run): the driver over the volume's engine (the synchronous
  // one unless open_integrity_volume_with_engine chose another), with the backlog protocol.
  std::unique_ptr<crypto::CryptoEngine> engine_;
  std::unique_ptr<CryptoDriver> driver_;
  std::unique_ptr<BackingStore> store_;
  const bool read_only_;
  const bool journal_mode_;
  JournalPosition jpos_;  // next section to commit and its sequence (under jmu_, by seal())
  // Tag pages as the store holds them, filled and updated under the pages' stripes (pages_),
  // or by mode J's journal thread between begin_store_write and end_store_write.
  std::unique_ptr<TagPageCache> tag_cache_;
  // Mode J (read-write), under jmu_ (exclusive: writers adding blocks, seal, the journal
  // thread's transitions; shared: readers' overlay): the three batches and which is open,
  // committing (sealed, written by the journal thread; nobody changes it) and committed (its
  // copy waiting for the next commit), seal and commit counts, a failed commit's error, the
  // journal thread's requests.
  bool journal_ = false;      // set once at open (mode J, read-write, the journal thread started)
  std::size_t pend_cap_ = 0;  // entries of a batch: batch_sections_ · section entries
  unsigned pend_bits_ = 1;
  std::uint32_t batch_sections_ = 1;
  std::array<JournalBatch, 3> jb_;
  JournalBatch* open_ = nullptr;
  JournalBatch* committing_ = nullptr;
  JournalBatch* copying_ = nullptr;
  std::uint64_t sealed_id_ = 0, committed_id_ = 0;
  std::optional<Error> jerror_;
  bool copy_request_ = false, jstop_ = false;
  std::shared_mutex jmu_;  // after mu_ and the tag-page stripes
  std::condition_variable_any jcv_;
  std::thread journal_thread_;    // started in init(), joined last in the destructor
  std::size_t sec_bytes_ = 0;     // bytes of one journal section (its sectors · 512)
  std::size_t buffer_bytes_ = 0;  // journal batches (section images), in-place tag pages
  std::atomic<std::uint64_t> commits_{0};
  // Committed batches retired from the overlay (changed under jmu_ exclusively; read_verified
  // reads it before its store reads and compares under jmu_).
  std::atomic<std::uint64_t> retired_{0};
  // In-place batches (write_in_place): the tag pages touched, the bytes of each the batch's
  // tags cover, their contents and the store pieces. Allocated at open; used by mode J's journal
  // thread or mode D's write-back passes (writeback_mu_).
  struct InPlace {
    std::vector<std::uint64_t> pages;
    std::vector<std::uint32_t> covered;
    LockedMemory buf;
    std::size_t capacity_pages = 0;
    std::vector<ReadPiece> reads;
    std::vector<WritePiece> writes;
  };
  InPlace in_place_;
  std::mutex timer_mu_;  // stop_ and the flusher's wait
  std::condition_variable timer_cv_;
  bool stop_ = false;
  bool kick_ = false;      // a writer passed half the dirty limit
  std::thread committer_;  // the flusher: started in init(), joined first in the destructor
  // The sector cache (nullptr with --cache-size below one block) and write-back (none when
  // read-only or with --perf-no_write_workqueue); the pass's lists, sized at open.
  std::unique_ptr<cache::SectorCache> cache_;
  bool write_back_ = false;
  std::uint64_t dirty_limit_ = 0, dirty_kick_ = 0;
  std::chrono::milliseconds flush_age_{5000};
  std::mutex writeback_mu_;  // one write-back pass at a time; taken before mu_
  std::vector<std::uint64_t> wb_dirty_, wb_versions_;
  std::vector<std::uint64_t> wb_blocks_;  // mode D: a batch's snapshotted blocks (kMaxRunBlocks)
  std::shared_ptr<spdlog::logger> log_;
  TagPageLocks pages_;
  ScratchPool pool_;
  std::atomic<std::uint64_t> verified_{0}, failed_{0}, written_{0}, log_count_{0};
  // Write path (counters): tag pages read from the store because a write shares them with
  // blocks it does not write and the tag page cache did not hold them, and store write batches
  // (mode D: one per written run or write-back batch; mode J: in-place copies).
  std::atomic<std::uint64_t> write_tag_reads_{0}, write_ops_{0}, written_back_{0};
  // The read-ahead loaders' time: reading from the store, verifying + decrypting (logged at
  // close with the read-ahead's own counters, log_read_ahead).
  LoaderTimes ra_times_;
  // Read-ahead (nullptr with --perf-no_read_workqueue); reset first in the destructor.
  std::unique_ptr<ReadAhead> ra_;
};

}  // namespace

Result<std::unique_ptr<Volume>> open_integrity_volume(VolumeLayout layout,
                                                      std::span<const std::byte> volume_key,
                                                      std::unique_ptr<BackingStore> store,
                                                      const VolumeOptions& options,
                                                      std::shared_ptr<spdlog::logger> logger) {
  return open_integrity_volume_with_engine(std::move(layout), volume_key, {}, std::move(store),
                                           options, std::move(logger));
}

Result<std::unique_ptr<Volume>> open_integrity_volume_with_engine(
    VolumeLayout layout, std::span<const std::byte> volume_key, const EngineFactory& make_engine,
    std::unique_ptr<BackingStore> store, const VolumeOptions& options,
    std::shared_ptr<spdlog::logger> logger) {
  CRYPTMAP_TRY(comp, crypto::auth_composition(layout.auth_encryption, layout.integrity));
  // As cryptsetup's LUKS2_activate_multi: dm-integrity under dm-crypt cannot discard.
  if (layout.allow_discards || options.allow_discards)
    return fail(make_error(Errc::kUnsupported,
                           "Discard/TRIM is not supported with integrity protection "
                           "(drop --allow-discards or the allow-discards flag)"));
  CRYPTMAP_TRY(sb, read_superblock(*store, layout.data_offset_bytes));
  CRYPTMAP_TRY_VOID(integrity::check_luks2_superblock(sb, static_cast<std::uint32_t>(comp.tag_size),
                                                      layout.sector_size));
  CRYPTMAP_TRY(g, integrity::geometry_from_superblock(sb, store->size_bytes() / 512,
                                                      layout.data_offset_bytes / 512));
  std::uint64_t size = g.provided_data_sectors * 512;
  if (layout.size_bytes != 0) {
    if (layout.size_bytes > size)
      return fail(make_error(Errc::kCorrupt,
                             "LUKS2 segment size exceeds the integrity device's data size",
                             layout.size_bytes));
    size = layout.size_bytes;
  }
  size -= size % layout.sector_size;
  CRYPTMAP_TRY(cipher, crypto::make_auth_sector_cipher(layout.auth_encryption, layout.integrity,
                                                       layout.sector_size, volume_key));
  // Replay before anything of the image is trusted, in both modes (the kernel replays on every
  // activation).
  if (!logger) logger = spdlog::default_logger();
  const bool journal_mode = !layout.integrity_no_journal;
  CRYPTMAP_TRY(jpos, replay_journal(*store, g, journal_mode, *logger));
  const bool ro = options.read_only || store->read_only();
  CRYPTMAP_TRY(tag_cache,
               TagPageCache::create(tag_cache_pages(g, options.cache_bytes), tag_cache_areas(g)));
  auto vol = std::make_unique<IntegrityVolume>(std::move(layout), g, size, std::move(cipher),
                                               std::move(store), ro, journal_mode, jpos,
                                               std::move(tag_cache), std::move(logger));
  CRYPTMAP_TRY_VOID(vol->init(options, make_engine));
  return std::unique_ptr<Volume>(std::move(vol));
}

std::uint32_t journal_batch_sections(const integrity::Geometry& g) {
  const std::size_t section_bytes = std::size_t{g.journal_section_sectors} * 512;
  const auto budget = static_cast<std::uint32_t>(
      std::max<std::size_t>(1, kJournalBatchesBytes / 3 / std::max<std::size_t>(1, section_bytes)));
  return std::clamp<std::uint32_t>(g.journal_sections / 2, 1, budget);
}

std::optional<IntegrityCounters> integrity_counters(const Volume& vol) {
  if (const auto* iv = dynamic_cast<const IntegrityVolume*>(&vol)) return iv->counters();
  return std::nullopt;
}

Result<void> integrity_await_commits(Volume& vol) {
  if (auto* iv = dynamic_cast<IntegrityVolume*>(&vol)) return iv->await_commits_public();
  return ok();
}

Result<integrity::Geometry> format_integrity_area(BackingStore& data, const VolumeLayout& layout,
                                                  std::uint32_t tag_size) {
  integrity::GeometryParams p;
  p.dev_sectors = data.size_bytes() / 512;
  p.start = layout.data_offset_bytes / 512;
  p.tag_size = tag_size;
  p.sector_size = layout.sector_size;
  p.fixed_padding = true;
  CRYPTMAP_TRY(g, integrity::compute_geometry(p));
  const std::size_t journal_bytes =
      std::size_t{g.journal_sections} * g.journal_section_sectors * 512;
  std::vector<std::byte> area(integrity::kSbBytes + journal_bytes);
  integrity::serialize_superblock(integrity::format_superblock(g),
                                  std::span(area).first(integrity::kSbBytes));
  integrity::write_initial_journal(g, std::span(area).subspan(integrity::kSbBytes));
  CRYPTMAP_TRY_VOID(data.write_at(ByteOffset{layout.data_offset_bytes}, area));
  return g;
}

}  // namespace cryptmap::volume

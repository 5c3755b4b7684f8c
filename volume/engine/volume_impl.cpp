// VolumeImpl — the Volume facade over the I/O engine (see volume_engine.h for the flow).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/check.h"
#include "cache/sector_cache.h"
#include "crypto/sector_cipher.h"
#include "base/buffer_pool.h"
#include "volume/engine/crypto_driver.h"
#include "base/io_thread.h"
#include "volume/engine/range_lock.h"
#include "volume/engine/read_ahead.h"
#include "volume/engine/volume_engine.h"
#include "volume/engine/zoned_path.h"
#include "volume/store/backing_store.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {
namespace {

using crypto::CryptoDir;

class VolumeImpl final : public Volume {
 public:
  VolumeImpl(VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
             std::unique_ptr<crypto::CryptoEngine> engine, std::unique_ptr<BackingStore> store,
             std::uint64_t size, bool read_only, std::size_t range_slots,
             std::shared_ptr<spdlog::logger> logger)
      : layout_(std::move(layout)),
        ss_(layout_.sector_size),
        data_off_(layout_.data_offset_bytes),
        size_(size),
        read_only_(read_only),
        cipher_(std::move(cipher)),
        engine_(std::move(engine)),
        store_(std::move(store)),
        ranges_(range_slots),
        logger_(std::move(logger)) {}

  ~VolumeImpl() override {
    // Shutdown order (docs/architecture.md §4.7): stop the flusher, write back every dirty block,
    // store.sync(); then the driver (arena) before the engine before the cipher. No request
    // may be running (the owner stops the FUSE loop first). Pending zone admissions are
    // cancelled; read-ahead stops next (its threads use the store, the driver and the ranges).
    if (zoned_) zoned_->shutdown();
    read_ahead_.reset();
    if (flusher_.joinable()) {
      {
        std::lock_guard lock(flusher_mu_);
        stop_ = true;
      }
      flusher_cv_.notify_all();
      flusher_.join();
    }
    if (cache_ && !read_only_) {
      if (Result<void> r = writeback_all(); !r) log_error("write-back at close", r.error());
      if (Result<void> r = store_->sync(); !r) log_error("sync at close", r.error());
    }
    cache_.reset();
    driver_.reset();
    buffers_.reset();
    engine_.reset();
  }

  Result<void> init(const VolumeOptions& options, const EngineOptions& eo) {
    CryptoDriverOptions d;
    d.sector_size = ss_;
    d.batch_bytes = std::max<std::size_t>(eo.batch_bytes, ss_);
    d.parallel_threshold_bytes = eo.parallel_threshold_bytes;
    d.max_inflight = std::max<std::uint32_t>(1, options.max_inflight_requests);
    d.threads = eo.threads;
    d.force_inline = options.force_inline;
    d.inline_decrypt = options.no_read_workqueue;
    d.inline_encrypt = options.no_write_workqueue;
    CRYPTMAP_TRY(driver, CryptoDriver::create(*engine_, d));
    driver_ = std::move(driver);
    std::size_t buf_bytes = eo.buffer_bytes == 0 ? 256 * 1024 : eo.buffer_bytes;
    buf_bytes = std::max<std::size_t>(buf_bytes / ss_ * ss_, ss_);
    std::uint32_t count = eo.buffer_count;
    if (count == 0) count = std::clamp<std::uint32_t>(options.max_inflight_requests / 4, 4, 64);
    CRYPTMAP_TRY(pool, BufferPool::create(count, buf_bytes));
    buffers_ = std::move(pool);
    buf_sectors_ = buf_bytes / ss_;
    bypass_bytes_ = eo.cache_bypass_bytes == 0 ? ~std::uint64_t{0} : eo.cache_bypass_bytes;
    CRYPTMAP_TRY_VOID(init_zoned(options));
    if (!buffers_->locked()) {
      logger_->warn("I/O buffers of {} are not mlocked: plaintext may reach swap",
                    store_->name());
    }
    if (options.cache_bytes >= ss_) {
      cache::CacheOptions co;
      co.capacity_bytes = options.cache_bytes;
      co.block_size = ss_;
      co.shards = eo.cache_shards;
      CRYPTMAP_TRY(c, cache::make_sharded_lru_cache(co));
      cache_ = std::move(c);
      if (!cache_->memory_locked()) {
        logger_->warn("sector cache of {} is not mlocked: plaintext may reach swap",
                      store_->name());
      }
      const std::uint64_t cap = cache_->capacity_blocks() * ss_;
      dirty_limit_ = std::max<std::uint64_t>(ss_, cap * std::clamp<std::uint32_t>(
                                                        eo.dirty_percent, 1, 100) / 100);
      dirty_background_ = dirty_limit_ / 2;
      flush_age_ = std::chrono::milliseconds(options.flush_age_ms);
      period_ = std::chrono::milliseconds(
          std::clamp<std::uint32_t>(options.flush_age_ms / 4, 10, 1000));
      try {
        dirty_scratch_.resize(cache_->capacity_blocks());
        versions_.resize(buf_sectors_);
        if (!read_only_) flusher_ = std::thread([this] { flusher_main(); });
      } catch (const std::exception&) {
        return make_error(Errc::kNoSpace, "open volume: start the write-back flusher");
      }
    }
    if (eo.read_ahead_windows != 0 && eo.read_ahead_bytes >= ss_ && !options.no_read_workqueue) {
      ReadAhead::Options ro;
      ro.sector_size = ss_;
      ro.volume_sectors = size_ / ss_;
      ro.windows = eo.read_ahead_windows;
      ro.window_bytes = eo.read_ahead_bytes;
      ro.depth = std::max<std::uint32_t>(1, eo.read_ahead_depth);
      ro.threads = std::max<unsigned>(1, eo.read_ahead_threads);
      CRYPTMAP_TRY(ra, ReadAhead::create(ro, [this](std::uint64_t first, std::span<std::byte> dst,
                                                    const ReadAhead::LoadTicket& t) {
        return load_ahead(first, dst, t);
      }));
      read_ahead_ = std::move(ra);
    }
    return ok();
  }

  Result<std::size_t> read(ByteOffset off, std::span<std::byte> out) override {
    return do_read(off.value, out);
  }

  Result<std::size_t> write(ByteOffset off, std::span<const std::byte> in) override {
    if (zoned_) return write_ordered(off, in, [] {});  // no ordering point: call order
    return do_write(off.value, in);
  }

  // Every write acknowledged before this call is in the cache (dirty) or already in the store:
  // one write-back pass covers the former, then the store is synced.
  Result<void> flush() override {
    Result<void> r = ok();
    if (cache_ && !read_only_) r = writeback_all();
    Result<void> s = store_->sync();
    if (r && !s) r = s;
    if (!r) log_error("flush", r.error());
    return r;
  }

  Result<std::size_t> write_ordered(ByteOffset off, std::span<const std::byte> in,
                                    Admitted admitted) override {
    if (!zoned_ || in.empty() || read_only_ || off.value > size_ ||
        in.size() > size_ - off.value ||
        !zoned_->needs_admission(image_offset(0) + off.value, in.size())) {
      admitted();
      return do_write(off.value, in);
    }
    Result<ZoneTicket> t = zoned_->admit(image_offset(0) + off.value, in.size());
    admitted();
    if (!t) {
      log_error("write", t.error());
      return t.error();
    }
    Result<std::size_t> r = zoned_write(*t, off.value, in);
    if (!r) log_error("write", r.error());
    return r;
  }

  Result<std::size_t> discard(ByteOffset off, std::uint64_t len) override {
    Result<std::size_t> r = do_discard(off.value, len);
    if (!r) log_error("discard", r.error());
    return r;
  }

  bool orders_writes() const noexcept override { return zoned_ != nullptr; }
  const ZoneMap* zones() const noexcept override { return store_->zones(); }
  std::uint64_t size_bytes() const noexcept override { return size_; }
  const VolumeLayout& layout() const noexcept override { return layout_; }
  bool read_only() const noexcept override { return read_only_; }

 private:
  std::uint64_t image_offset(std::uint64_t sector) const noexcept {
    return data_off_ + sector * ss_;
  }

  // Reads ciphertext of sectors [first, first + b.size()/ss) and decrypts it in place.
  Result<void> fetch(std::uint64_t first, std::span<std::byte> b) {
    CRYPTMAP_TRY_VOID(store_->read_at(ByteOffset{image_offset(first)}, b));
    return driver_->convert(CryptoDir::kDecrypt, b, SectorIndex{first});
  }

  // Copies the part of plaintext sectors [first, ...) (in `b`) that the request [off, off+len)
  // covers, in either direction.
  static void overlap(std::uint64_t off, std::size_t len, std::uint64_t b_start,
                      std::size_t b_len, std::uint64_t* lo, std::uint64_t* hi) {
    *lo = std::max(off, b_start);
    *hi = std::min<std::uint64_t>(off + len, b_start + b_len);
  }

  Result<std::size_t> do_read(std::uint64_t off, std::span<std::byte> out) {
    if (off >= size_ || out.empty()) return std::size_t{0};
    const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), size_ - off));
    const std::uint64_t s0 = off / ss_;
    const std::uint64_t s1 = (off + len - 1) / ss_ + 1;
    // Pin a read-ahead window before the range lock (pin() may wait for a load, which takes
    // a range lock itself: see read_ahead.h).
    ReadAhead::Pin pin;
    if (read_ahead_) pin = read_ahead_->pin(s0, s1);
    Result<std::size_t> r = read_range(off, out.first(len), s0, s1, pin);
    pin = ReadAhead::Pin();
    if (r && read_ahead_) read_ahead_->note(off, len);
    return r;
  }

  Result<std::size_t> read_range(std::uint64_t off, std::span<std::byte> dst, std::uint64_t s0,
                                 std::uint64_t s1, const ReadAhead::Pin& pin) {
    const std::size_t len = dst.size();
    RangeLock::Guard guard = ranges_.acquire(s0, s1, /*exclusive=*/false);
    if (pin && read_ahead_->copy(pin, off, dst)) return len;
    BufferPool::Buffer buf;  // waited for: at most one per request (see BufferPool)
    if (!cache_ || len >= bypass_bytes_) return stream_read(off, dst, s0, s1, buf);
    if (Result<void> r = read_blocks(off, dst, s0, s1, /*fill_cache=*/true, buf); !r) {
      log_error("read", r.error());
      return r.error();
    }
    return len;
  }

  // Sectors [p0, p1) of the request [off, off + out.size()): cache hits are copied; runs of
  // adjacent misses (at most one buffer long) are fetched and decrypted, and inserted clean when
  // `fill_cache`. Safe against write-back: a block that is not resident has its latest data in
  // the store (dirty blocks are never evicted; writers are excluded by the shared range), and
  // the write-back never writes a block that is not resident and dirty. Caller holds the range.
  Result<void> read_blocks(std::uint64_t off, std::span<std::byte> out, std::uint64_t p0,
                           std::uint64_t p1, bool fill_cache, BufferPool::Buffer& buf) {
    const std::size_t len = out.size();
    std::uint64_t pos = p0;
    while (pos < p1) {
      if (cache_) {
        std::uint64_t lo = 0, hi = 0;
        overlap(off, len, pos * ss_, ss_, &lo, &hi);
        if (cache_->read(pos, lo - pos * ss_, out.subspan(lo - off, hi - lo))) {
          ++pos;
          continue;
        }
      }
      const std::uint64_t limit = std::min<std::uint64_t>(p1, pos + buf_sectors_);
      std::uint64_t end = pos + 1;
      while (end < limit && !(cache_ && cache_->contains(end))) ++end;
      if (!buf) buf = buffers_->acquire();
      std::span<std::byte> b = buf.span().first((end - pos) * ss_);
      CRYPTMAP_TRY_VOID(fetch(pos, b));
      std::uint64_t lo = 0, hi = 0;
      overlap(off, len, pos * ss_, b.size(), &lo, &hi);
      std::memcpy(out.data() + (lo - off), b.data() + (lo - pos * ss_), hi - lo);
      if (fill_cache) {
        for (std::uint64_t k = 0; k < end - pos; ++k) {
          (void)cache_->put(pos + k, b.subspan(k * ss_, ss_), /*dirty=*/false);
        }
      }
      pos = end;
    }
    return ok();
  }

  // Whether the store holds the latest data of every sector of a range the caller holds
  // shared, so a piece may be fetched whole without asking the cache: true while nothing in the
  // cache is dirty (no block of the range can become dirty under the shared range, and no
  // write-back can be writing one). Checked before each fetch; see stream_read for why an
  // overlay after the fetch is not enough.
  bool store_is_current() const noexcept { return !cache_ || cache_->dirty_bytes() == 0; }

  // Read-ahead loads (on a prefetch thread): the same rule as a streaming piece, under the
  // shared range. False drops the load (the foreground read then does the work and reports any
  // error).
  bool load_ahead(std::uint64_t first, std::span<std::byte> dst, const ReadAhead::LoadTicket& t) {
    RangeLock::Guard guard = ranges_.acquire(first, first + dst.size() / ss_, /*exclusive=*/false);
    if (!t.still_wanted() || !store_is_current()) return false;
    return static_cast<bool>(fetch(first, dst));
  }

  // Large reads (and every read without a cache) stream from the store in buffer-sized pieces
  // without filling the cache, as a two-stage pipeline: the store read of piece k+1 runs while
  // the arena decrypts piece k (when a second buffer is free; otherwise one piece at a time).
  // A piece is fetched whole only while nothing in the cache is dirty: then no block of the
  // shared range can be dirty (writers are excluded) and no write-back can be writing it, so
  // the store is current. Otherwise the piece takes the per-block path (cache hits, fetched
  // misses). An overlay of dirty blocks after the fetch is NOT enough: a write-back pass (it
  // holds the range shared too) can write a block and mark it clean in between, and the stale
  // store copy would be returned (#5, fio verify). Caller holds the range.
  Result<std::size_t> stream_read(std::uint64_t off, std::span<std::byte> out, std::uint64_t s0,
                                  std::uint64_t s1, BufferPool::Buffer& buf) {
    BufferPool::Buffer spare;  // the pipeline's second buffer, never waited for
    struct InFlight {
      CryptoDriver::Job* job = nullptr;
      std::uint64_t pos = 0;
      std::span<std::byte> b;
    } inflight;
    Result<void> result = ok();
    // Waits for the piece being decrypted and copies its part of the request out.
    auto drain = [&]() {
      if (inflight.job == nullptr) return;
      Result<void> r = driver_->finish(std::exchange(inflight.job, nullptr));
      if (!r) {
        if (result) result = r;
        return;
      }
      std::uint64_t lo = 0, hi = 0;
      overlap(off, out.size(), inflight.pos * ss_, inflight.b.size(), &lo, &hi);
      std::memcpy(out.data() + (lo - off), inflight.b.data() + (lo - inflight.pos * ss_), hi - lo);
    };
    for (std::uint64_t pos = s0; pos < s1 && result;) {
      const std::uint64_t n = std::min<std::uint64_t>(s1 - pos, buf_sectors_);
      if (!store_is_current()) {
        drain();
        if (!result) break;
        if (!buf) buf = buffers_->acquire();
        result = read_blocks(off, out, pos, pos + n, /*fill_cache=*/false, buf);
        pos += n;
        continue;
      }
      if (!buf) buf = buffers_->acquire();
      if (inflight.job != nullptr && !spare) spare = buffers_->try_acquire();
      if (inflight.job != nullptr && !spare) drain();  // no second buffer: no overlap
      // The buffer not being decrypted right now.
      BufferPool::Buffer& use =
          inflight.job != nullptr && inflight.b.data() == buf.span().data() ? spare : buf;
      const std::span<std::byte> b = use.span().first(n * ss_);
      Result<void> r = store_->read_at(ByteOffset{image_offset(pos)}, b);
      drain();  // piece k's decryption overlapped the store read of piece k+1
      if (!r) {
        if (result) result = r;
        break;
      }
      if (!result) break;
      inflight.job = driver_->start(CryptoDir::kDecrypt, b, SectorIndex{pos});
      inflight.pos = pos;
      inflight.b = b;
      pos += n;
    }
    drain();
    if (!result) {
      log_error("read", result.error());
      return result.error();
    }
    return out.size();
  }

  Result<std::size_t> do_write(std::uint64_t off, std::span<const std::byte> in) {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "write to volume", off, "%s is opened read-only",
                            store_->name().c_str());
    }
    const std::size_t len = in.size();
    if (off > size_ || len > size_ - off) {
      return make_error_fmt(Errc::kNoSpace, "write past the end of the volume", off,
                            "volume is %llu bytes", static_cast<unsigned long long>(size_));
    }
    if (len == 0) return std::size_t{0};
    const std::uint64_t s0 = off / ss_;
    const std::uint64_t s1 = (off + len - 1) / ss_ + 1;
    if (cache_ && !write_through_) {
      if (Result<void> t = throttle(); !t) {
        log_error("write", t.error());
        return t.error();
      }
    }
    RangeLock::Guard guard = ranges_.acquire(s0, s1, /*exclusive=*/true);
    if (read_ahead_) read_ahead_->invalidate(s0, s1);
    if (cache_ && write_through_) {
      // Only clean blocks exist in this mode: drop (wipe) the ones this write makes stale.
      for (std::uint64_t k = s0; k < s1; ++k) cache_->erase(k);
    } else if (cache_) {
      if (Result<void> r = write_back(off, in, s0, s1); !r) {
        log_error("write", r.error());
        return r.error();
      }
      return len;
    }
    BufferPool::Buffer buf;
    WritePipe pipe(*this, off, in, buf);
    Result<void> r = ok();
    for (std::uint64_t pos = s0; pos < s1 && r;) {
      const std::uint64_t n = std::min<std::uint64_t>(s1 - pos, buf_sectors_);
      r = pipe.add(pos, n);
      pos += n;
    }
    if (Result<void> d = pipe.drain(); r && !d) r = d;
    if (!r) {
      log_error("write", r.error());
      return r.error();
    }
    return len;
  }

  // Write-through of a request's pieces as a two-stage pipeline: piece k+1 is merged and
  // encrypted (in the arena) while piece k is written to the store, when a second buffer is
  // free (try_acquire; otherwise one piece at a time). Pieces reach the store in the order they
  // were added. Every started piece is finished and written even after an error; the first
  // error is returned. Caller holds the exclusive range.
  class WritePipe {
   public:
    WritePipe(VolumeImpl& v, std::uint64_t off, std::span<const std::byte> in,
              BufferPool::Buffer& buf)
        : v_(v), off_(off), in_(in), buf_(buf) {}
    ~WritePipe() { (void)drain(); }
    WritePipe(const WritePipe&) = delete;
    WritePipe& operator=(const WritePipe&) = delete;

    // Sectors [pos, pos + n) of the request, n <= one buffer. Order: merge piece k+1 (while
    // piece k is encrypted), finish piece k, start piece k+1, write piece k (while k+1 is
    // encrypted). Piece k is finished before k+1 is spawned, so the caller, helping in the
    // arena while it waits, works on piece k and never on k+1 ahead of its own store write.
    Result<void> add(std::uint64_t pos, std::uint64_t n) {
      if (!buf_) buf_ = v_.buffers_->acquire();
      if (job_ != nullptr && !spare_) spare_ = v_.buffers_->try_acquire();
      Result<void> first = ok();
      if (job_ != nullptr && !spare_) first = drain();  // no second buffer: no overlap
      BufferPool::Buffer& use = job_ != nullptr && b_.data() == buf_.span().data() ? spare_ : buf_;
      const std::span<std::byte> b = use.span().first(n * v_.ss_);
      Result<void> r = v_.merge(off_, in_, pos, b);
      Result<void> prev = ok();
      const bool have_prev = job_ != nullptr;
      if (have_prev) prev = v_.driver_->finish(std::exchange(job_, nullptr));
      if (r) {
        job_ = v_.driver_->start(CryptoDir::kEncrypt, b, SectorIndex{pos});
      }
      if (have_prev && prev) prev = v_.store_->write_at(ByteOffset{v_.image_offset(pos_)}, b_);
      if (first && !prev) first = prev;
      if (first && !r) first = r;
      pos_ = pos;
      b_ = b;
      return first;
    }

    // Finishes and writes the piece in flight, if any.
    Result<void> drain() {
      if (job_ == nullptr) return ok();
      Result<void> r = v_.driver_->finish(std::exchange(job_, nullptr));
      if (r) r = v_.store_->write_at(ByteOffset{v_.image_offset(pos_)}, b_);
      return r;
    }

   private:
    VolumeImpl& v_;
    const std::uint64_t off_;
    const std::span<const std::byte> in_;
    BufferPool::Buffer& buf_;
    BufferPool::Buffer spare_;
    CryptoDriver::Job* job_ = nullptr;
    std::uint64_t pos_ = 0;
    std::span<std::byte> b_;
  };

  // Fills `b` with the plaintext of sectors [pos, pos + b.size()/ss) with the request's bytes
  // merged in (partial head and tail sectors are read from the store first).
  Result<void> merge(std::uint64_t off, std::span<const std::byte> in, std::uint64_t pos,
                     std::span<std::byte> b) {
    const std::size_t n = b.size() / ss_;
    const std::uint64_t start = pos * ss_;
    const bool head_partial = start < off;
    const bool tail_partial = start + b.size() > off + in.size();
    if (head_partial) CRYPTMAP_TRY_VOID(fetch(pos, b.first(ss_)));
    if (tail_partial && !(n == 1 && head_partial)) {
      CRYPTMAP_TRY_VOID(fetch(pos + n - 1, b.last(ss_)));
    }
    std::uint64_t lo = 0, hi = 0;
    overlap(off, in.size(), start, b.size(), &lo, &hi);
    std::memcpy(b.data() + (lo - start), in.data() + (lo - off), hi - lo);
    return ok();
  }

  // Write-back mode: whole sectors go into the cache as dirty blocks; partial ones are merged
  // into the cached block, or read-modify-written from the store when not resident. Sectors the
  // cache has no room for (everything dirty or pinned) are written through instead, so a full
  // cache slows writers down but never blocks them. Caller must hold the exclusive range.
  Result<void> write_back(std::uint64_t off, std::span<const std::byte> in, std::uint64_t s0,
                          std::uint64_t s1) {
    BufferPool::Buffer buf;  // waited for: at most one per request (see BufferPool)
    WritePipe pipe(*this, off, in, buf);
    std::uint64_t run_begin = 0, run_end = 0;  // pending write-through run [begin, end)
    auto flush_run = [&]() -> Result<void> {
      if (run_end == run_begin) return ok();
      Result<void> r = pipe.add(run_begin, run_end - run_begin);
      run_begin = run_end = 0;
      return r;
    };
    for (std::uint64_t pos = s0; pos < s1; ++pos) {
      std::uint64_t lo = 0, hi = 0;
      overlap(off, in.size(), pos * ss_, ss_, &lo, &hi);
      const std::span<const std::byte> part = in.subspan(lo - off, hi - lo);
      const std::size_t skip = lo - pos * ss_;
      bool cached = false;
      if (in.size() >= bypass_bytes_) {
        // Large write: keep resident blocks current, write the others through.
        cached = cache_->write_if_present(pos, skip, part);
      } else if (part.size() == ss_) {
        cached = cache_->put(pos, part, /*dirty=*/true) != cache::PutResult::kNoRoom;
      } else if (cache_->write_if_present(pos, skip, part)) {
        cached = true;
      } else {
        CRYPTMAP_TRY_VOID(flush_run());
        CRYPTMAP_TRY_VOID(pipe.drain());  // the buffer is free again
        if (!buf) buf = buffers_->acquire();
        std::span<std::byte> sec = buf.span().first(ss_);
        CRYPTMAP_TRY_VOID(fetch(pos, sec));
        std::memcpy(sec.data() + skip, part.data(), part.size());
        cached = cache_->put(pos, sec, /*dirty=*/true) != cache::PutResult::kNoRoom;
        if (!cached) {  // written through right here
          CRYPTMAP_TRY_VOID(driver_->convert(CryptoDir::kEncrypt, sec, SectorIndex{pos}));
          CRYPTMAP_TRY_VOID(store_->write_at(ByteOffset{image_offset(pos)}, sec));
          continue;
        }
      }
      if (!cached) {
        if (run_end == run_begin) run_begin = run_end = pos;
        ++run_end;
        if (run_end - run_begin == buf_sectors_) CRYPTMAP_TRY_VOID(flush_run());
      } else {
        CRYPTMAP_TRY_VOID(flush_run());
      }
    }
    CRYPTMAP_TRY_VOID(flush_run());
    return pipe.drain();
  }

  // Dirty throttling (the only place a writer waits for write-back), before the range lock is
  // taken, so the flusher can always make progress: above `dirty_background_` the flusher is
  // kicked; at `dirty_limit_` the writer waits for write-back passes to bring it down.
  Result<void> throttle() {
    if (cache_->dirty_bytes() < dirty_background_) return ok();
    kick_flusher();
    std::unique_lock lock(throttle_mu_);
    while (cache_->dirty_bytes() >= dirty_limit_) {
      const std::uint64_t passes = writeback_passes_;
      kick_flusher();
      ++throttled_;
      // Woken by the end of a pass, or as soon as a run of it brought dirty data under the
      // limit (writeback_run), not only after the whole pass.
      throttle_cv_.wait(lock, [&] {
        return writeback_passes_ != passes || cache_->dirty_bytes() < dirty_limit_;
      });
      --throttled_;
      if (last_pass_error_ && cache_->dirty_bytes() >= dirty_limit_) return *last_pass_error_;
    }
    return ok();
  }

  // After a write-back run: lets throttled writers go once dirty data is under the limit.
  void release_throttled() {
    if (cache_->dirty_bytes() >= dirty_limit_) return;
    {
      std::lock_guard lock(throttle_mu_);
      if (throttled_ == 0) return;
    }
    throttle_cv_.notify_all();
  }

  void kick_flusher() {
    {
      std::lock_guard lock(flusher_mu_);
      kick_ = true;
    }
    flusher_cv_.notify_one();
  }

  void flusher_main() {
    (void)mark_io_thread();
    std::unique_lock lock(flusher_mu_);
    while (!stop_) {
      flusher_cv_.wait_for(lock, period_, [&] { return stop_ || kick_; });
      if (stop_) break;
      bool due = kick_;
      kick_ = false;
      lock.unlock();
      if (!due) {
        const auto oldest = cache_->oldest_dirty();
        due = oldest && std::chrono::steady_clock::now() - *oldest >= flush_age_;
      }
      if (due) {
        Result<void> r = writeback_all();
        if (!r) log_error("background write-back", r.error());
        {
          std::lock_guard tl(throttle_mu_);
          ++writeback_passes_;
          if (r) {
            last_pass_error_.reset();
          } else {
            last_pass_error_ = r.error();
          }
        }
        throttle_cv_.notify_all();
      }
      lock.lock();
    }
  }

  // One write-back pass over every block dirty at its start: sorted, adjacent blocks coalesced
  // into runs of up to one buffer, each encrypted and written with one store write. Blocks that
  // fail stay dirty (retried by the next pass); the first error is returned.
  Result<void> writeback_all() {
    std::lock_guard wb(writeback_mu_);
    const std::size_t n = cache_->collect_dirty(dirty_scratch_);
    std::sort(dirty_scratch_.begin(), dirty_scratch_.begin() + static_cast<std::ptrdiff_t>(n));
    Result<void> first = ok();
    std::size_t i = 0;
    while (i < n) {
      std::size_t j = i + 1;
      while (j < n && dirty_scratch_[j] == dirty_scratch_[j - 1] + 1 && j - i < buf_sectors_) ++j;
      Result<void> r = writeback_run(dirty_scratch_[i], j - i);
      if (!r && first) first = r;
      i = j;
    }
    return first;
  }

  // Caller must hold writeback_mu_ (versions_ is its scratch).
  Result<void> writeback_run(std::uint64_t first, std::uint64_t count) {
    // Shared range: no writer is half-way through a read-modify-write of these blocks.
    RangeLock::Guard guard = ranges_.acquire(first, first + count, /*exclusive=*/false);
    BufferPool::Buffer buf = buffers_->acquire();
    const std::span<std::byte> b = buf.span();
    std::uint64_t start = first;
    std::size_t have = 0;
    Result<void> result = ok();
    auto emit = [&]() {
      if (have == 0) return;
      const std::span<std::byte> data = b.first(have * ss_);
      Result<void> r = driver_->convert(CryptoDir::kEncrypt, data, SectorIndex{start});
      if (r) r = store_->write_at(ByteOffset{image_offset(start)}, data);
      if (r) {
        for (std::size_t k = 0; k < have; ++k) (void)cache_->mark_clean(start + k, versions_[k]);
        release_throttled();
      } else if (result) {
        result = r;
      }
    };
    for (std::uint64_t k = 0; k < count; ++k) {
      const std::uint64_t idx = first + k;
      const auto v = cache_->snapshot_dirty(idx, b.subspan(have * ss_, ss_));
      if (!v) {  // no longer dirty (erased): split the run
        emit();
        start = idx + 1;
        have = 0;
        continue;
      }
      versions_[have++] = *v;
    }
    emit();
    return result;
  }

  // ---- zoned volumes and discard (zoned_path.h) ----

  Result<void> init_zoned(const VolumeOptions& options) {
    allow_discards_ = options.allow_discards;
    write_through_ = options.no_write_workqueue;
    if (store_->zones() == nullptr || read_only_) return ok();
    auto* zs = dynamic_cast<ZonedStore*>(store_.get());
    if (zs == nullptr) return ok();
    if (options.unordered_zone_writes) {
      // Debug mode: no admission, and no write-back cache that would sort writes either.
      logger_->warn("{}: writes into sequential zones are NOT ordered (debug option)",
                    store_->name());
      write_through_ = true;
      return ok();
    }
    CRYPTMAP_TRY(z, ZonedWritePath::create(*zs, ss_, options.max_inflight_requests));
    zoned_ = std::move(z);
    return ok();
  }

  // A write admitted into a sequential zone (whole sectors, by admission): in its turn,
  // encrypt each buffer-sized piece (parallel inside the piece) and write it. Never cached:
  // resident clean blocks are dropped under the exclusive range first.
  Result<std::size_t> zoned_write(const ZoneTicket& t, std::uint64_t off,
                                  std::span<const std::byte> in) {
    const std::uint64_t s0 = off / ss_;
    const std::uint64_t s1 = s0 + in.size() / ss_;
    Result<void> r = zoned_->issue_in_turn(t, [&]() -> Result<void> {
      RangeLock::Guard guard = ranges_.acquire(s0, s1, /*exclusive=*/true);
      if (read_ahead_) read_ahead_->invalidate(s0, s1);
      if (cache_) {
        for (std::uint64_t k = s0; k < s1; ++k) cache_->erase(k);
      }
      BufferPool::Buffer buf = buffers_->acquire();
      for (std::uint64_t pos = s0; pos < s1;) {
        const std::uint64_t n = std::min<std::uint64_t>(s1 - pos, buf_sectors_);
        std::span<std::byte> b = buf.span().first(n * ss_);
        std::memcpy(b.data(), in.data() + (pos - s0) * ss_, b.size());
        CRYPTMAP_TRY_VOID(driver_->convert(CryptoDir::kEncrypt, b, SectorIndex{pos}));
        CRYPTMAP_TRY_VOID(store_->write_at(ByteOffset{image_offset(pos)}, b));
        pos += n;
      }
      return ok();
    });
    if (!r) return r.error();
    return in.size();
  }

  // Whole sectors inside [off, off + len) only (dm-crypt discards whole sectors).
  Result<std::size_t> do_discard(std::uint64_t off, std::uint64_t len) {
    if (read_only_) {
      return make_error_fmt(Errc::kReadOnly, "discard on volume", off, "%s is opened read-only",
                            store_->name().c_str());
    }
    if (off >= size_ || len == 0) return std::size_t{0};
    len = std::min<std::uint64_t>(len, size_ - off);
    const std::uint64_t s0 = (off + ss_ - 1) / ss_;
    const std::uint64_t s1 = (off + len) / ss_;
    if (s1 <= s0) return std::size_t{0};
    if (!zoned_ && !allow_discards_) {
      return make_error_fmt(Errc::kUnsupported, "discard on volume", off,
                            "discards are not allowed on %s (open with --allow-discards)",
                            store_->name().c_str());
    }
    RangeLock::Guard guard = ranges_.acquire(s0, s1, /*exclusive=*/true);
    if (read_ahead_) read_ahead_->invalidate(s0, s1);
    if (cache_) {
      for (std::uint64_t k = s0; k < s1; ++k) cache_->erase(k);
    }
    const std::uint64_t img = image_offset(s0);
    const std::uint64_t img_len = (s1 - s0) * ss_;
    if (zoned_) {
      CRYPTMAP_TRY_VOID(zoned_->discard(img, img_len, allow_discards_));
    } else {
      CRYPTMAP_TRY_VOID(store_->discard(ByteOffset{img}, img_len));
    }
    return static_cast<std::size_t>(img_len);
  }

  void log_error(const char* op, const Error& e) {
    // Rate-limited (dm-crypt DMERR_LIMIT): the first 16, then one in 1024.
    const std::uint64_t n = errors_logged_.fetch_add(1, std::memory_order_relaxed);
    if (n < 16 || n % 1024 == 0) {
      logger_->error("{} on volume {} failed: {}", op, store_->name(), e.message());
    }
  }

  const VolumeLayout layout_;
  const std::uint32_t ss_;
  const std::uint64_t data_off_;
  const std::uint64_t size_;
  const bool read_only_;
  std::unique_ptr<crypto::SectorCipher> cipher_;
  std::unique_ptr<crypto::CryptoEngine> engine_;
  std::unique_ptr<BackingStore> store_;
  RangeLock ranges_;
  std::unique_ptr<CryptoDriver> driver_;
  std::unique_ptr<BufferPool> buffers_;
  std::uint64_t buf_sectors_ = 1;
  std::uint64_t bypass_bytes_ = ~std::uint64_t{0};
  std::shared_ptr<spdlog::logger> logger_;
  std::atomic<std::uint64_t> errors_logged_{0};
  std::unique_ptr<ReadAhead> read_ahead_;  // null when disabled
  std::unique_ptr<ZonedWritePath> zoned_;  // sequential zones present (and ordering on)
  bool allow_discards_ = false;
  bool write_through_ = false;  // no_write_workqueue / unordered debug mode

  // Write-back cache (null when cache_bytes < sector size: write-through).
  std::unique_ptr<cache::SectorCache> cache_;
  std::uint64_t dirty_limit_ = 0;
  std::uint64_t dirty_background_ = 0;
  std::chrono::milliseconds flush_age_{5000};
  std::chrono::milliseconds period_{1000};
  // Lock order: throttle_mu_ -> flusher_mu_; writeback_mu_ -> RangeLock -> cache shards.
  std::mutex writeback_mu_;               // one write-back pass at a time
  std::vector<std::uint64_t> dirty_scratch_;  // guarded by writeback_mu_
  std::vector<std::uint64_t> versions_;       // guarded by writeback_mu_
  std::mutex flusher_mu_;
  std::condition_variable flusher_cv_;
  bool kick_ = false;  // guarded by flusher_mu_
  bool stop_ = false;  // guarded by flusher_mu_
  std::mutex throttle_mu_;
  std::condition_variable throttle_cv_;
  std::uint64_t writeback_passes_ = 0;     // guarded by throttle_mu_
  std::uint32_t throttled_ = 0;            // writers waiting in throttle(); guarded by throttle_mu_
  std::optional<Error> last_pass_error_;   // guarded by throttle_mu_
  std::thread flusher_;
};

}  // namespace

Result<std::unique_ptr<Volume>> open_volume_with_engine(
    VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
    const EngineFactory& make_engine, std::unique_ptr<BackingStore> store,
    const VolumeOptions& options, const EngineOptions& engine_options,
    std::shared_ptr<spdlog::logger> logger) {
  if (!cipher || !store) return make_error(Errc::kInvalid, "open volume: cipher and store required");
  const std::uint32_t ss = layout.sector_size;
  if (ss < 512 || ss > 4096 || (ss & (ss - 1)) != 0) {
    return make_error_fmt(Errc::kInvalid, "open volume: sector size", ss,
                          "must be a power of two from 512 to 4096");
  }
  if (cipher->sector_size() != ss) {
    return make_error_fmt(Errc::kInvalid, "open volume: cipher sector size", cipher->sector_size(),
                          "does not match the layout's sector size %u", ss);
  }
  if (cipher->meta_bytes_per_sector() != 0) {
    return make_error(Errc::kUnsupported,
                      "open volume: authenticated (per-sector metadata) ciphers are not supported "
                      "by the I/O engine yet");
  }
  const std::uint64_t image = store->size_bytes();
  if (layout.data_offset_bytes > image) {
    return make_error_fmt(Errc::kInvalid, "open volume: data offset past the end of the image",
                          layout.data_offset_bytes, "%s is %llu bytes", store->name().c_str(),
                          static_cast<unsigned long long>(image));
  }
  std::uint64_t size = layout.size_bytes;
  if (size == 0) {
    size = (image - layout.data_offset_bytes) / ss * ss;
  } else if (size % ss != 0) {
    return make_error_fmt(Errc::kInvalid, "open volume: size", size,
                          "is not a multiple of the %u-byte sector size", ss);
  } else if (size > image - layout.data_offset_bytes) {
    return make_error_fmt(Errc::kInvalid, "open volume: volume extends past the end of the image",
                          size, "%s has only %llu data bytes", store->name().c_str(),
                          static_cast<unsigned long long>(image - layout.data_offset_bytes));
  }
  const bool read_only = options.read_only || store->read_only();
  if (!logger) logger = spdlog::default_logger();
  std::unique_ptr<crypto::CryptoEngine> engine =
      make_engine ? make_engine(*cipher) : make_inline_engine(*cipher);
  if (!engine) return make_error(Errc::kInvalid, "open volume: no crypto engine");
  const std::size_t slots = std::max<std::uint32_t>(4, options.max_inflight_requests);
  auto vol = std::make_unique<VolumeImpl>(std::move(layout), std::move(cipher), std::move(engine),
                                          std::move(store), size, read_only, slots,
                                          std::move(logger));
  CRYPTMAP_TRY_VOID(vol->init(options, engine_options));
  return std::unique_ptr<Volume>(std::move(vol));
}

Result<std::unique_ptr<Volume>> open_volume(VolumeLayout layout,
                                            std::unique_ptr<crypto::SectorCipher> cipher,
                                            std::unique_ptr<BackingStore> store,
                                            const VolumeOptions& options,
                                            std::shared_ptr<spdlog::logger> logger) {
  return open_volume_with_engine(std::move(layout), std::move(cipher), EngineFactory{},
                                 std::move(store), options, EngineOptions{}, std::move(logger));
}

}  // namespace cryptmap::volume

// VolumeImpl — the Volume facade over the I/O engine (see volume_engine.h for the flow and
// README.md for the decisions): it opens the engine's parts, dispatches each Volume call to
// the part that serves it, and closes them in order. The parts:
//   EngineContext (engine_context.h)  what they share: geometry, store, range lock, driver,
//                                     buffers, cache, read-ahead, zoned admission, logger
//   ReadPath      (read_path.h)       read, read-ahead loads
//   WritePath     (write_path.h)      write (cached, read-modify-write, write-through
//                                     pipeline), zoned writes in their turn, discard
//   WriteBack     (writeback.h)       flusher thread, dirty throttle, coalesced passes
//   WriteBehind   (write_behind.h)    large writes acknowledged once queued; their store writes
//   ZonedWritePath (zoned_path.h)     admission and turns of sequential-zone writes
// Offsets and sectors are computed with sector_math.h only.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "base/check.h"
#include "cache/sector_cache.h"
#include "crypto/crypto_engine.h"
#include "crypto/sector_cipher.h"
#include "volume/engine/engine_context.h"
#include "volume/engine/read_path.h"
#include "volume/engine/volume_engine.h"
#include "volume/engine/write_behind.h"
#include "volume/engine/write_path.h"
#include "volume/engine/writeback.h"
#include "volume/engine/zoned_path.h"
#include "volume/store/backing_store.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {
namespace {

// Thread-safety: every Volume method may be called from any number of threads at once, between
// open and destruction; the destructor runs when no request is (the owner stops the FUSE loop
// first). Ownership: owns the cipher, the crypto engine, the context and the parts.
class VolumeImpl final : public Volume {
 public:
  VolumeImpl(VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
             std::unique_ptr<crypto::CryptoEngine> engine, std::unique_ptr<BackingStore> store,
             std::uint64_t size, bool read_only, std::size_t range_slots,
             std::shared_ptr<spdlog::logger> logger)
      : cipher_(std::move(cipher)),
        engine_(std::move(engine)),
        ctx_(std::move(layout), std::move(store), size, read_only, range_slots, std::move(logger)),
        read_path_(ctx_) {}

  ~VolumeImpl() override {
    // Shutdown order (docs/architecture.md §4.7): stop the flusher, finish the queued
    // write-behinds and stop their workers, write back every dirty block (a failed write-behind's
    // among them), store.sync(); then the driver (its crypto workers) before the engine before
    // the cipher. No request may be running (the owner stops the FUSE loop first). Pending zone
    // admissions are cancelled; read-ahead stops next (its threads use the store, the driver and
    // the ranges).
    if (ctx_.zoned) ctx_.zoned->shutdown();
    log_read_ahead_stats();
    ctx_.read_ahead.reset();
    if (writeback_) writeback_->stop();
    if (behind_) behind_->stop();
    if (writeback_ && !ctx_.read_only) {
      if (Result<void> r = writeback_->writeback_all(); !r) {
        ctx_.log_error("write-back at close", r.error());
      }
      if (Result<void> r = ctx_.store->sync(); !r) ctx_.log_error("sync at close", r.error());
    }
    if (behind_) {
      if (std::optional<Error> lost = behind_->take_error()) {
        ctx_.log_error("write-behind (data lost, not reported by any flush before close)", *lost);
      }
    }
    write_path_.reset();
    behind_.reset();
    writeback_.reset();
    ctx_.cache.reset();
    ctx_.driver.reset();
    ctx_.buffers.reset();
    engine_.reset();
  }

  Result<void> init(const VolumeOptions& options, const EngineOptions& eo) {
    const std::uint32_t ss = ctx_.ss;
    CryptoDriverOptions d;
    d.sector_size = ss;
    d.batch_bytes = std::max<std::size_t>(eo.batch_bytes, ss);
    d.parallel_threshold_bytes = eo.parallel_threshold_bytes;
    d.max_inflight = std::max<std::uint32_t>(1, options.max_inflight_requests);
    d.threads = eo.threads;
    d.force_inline = options.force_inline;
    d.inline_decrypt = options.no_read_workqueue;
    d.inline_encrypt = options.no_write_workqueue;
    CRYPTMAP_TRY(driver, CryptoDriver::create(*engine_, d));
    ctx_.driver = std::move(driver);
    std::size_t buf_bytes = eo.buffer_bytes == 0 ? 256 * 1024 : eo.buffer_bytes;
    buf_bytes = std::max<std::size_t>(round_down_to_sector(buf_bytes, ss), ss);
    std::uint32_t count = eo.buffer_count;
    if (count == 0) count = std::clamp<std::uint32_t>(options.max_inflight_requests / 4, 4, 64);
    CRYPTMAP_TRY(pool, BufferPool::create(count, buf_bytes));
    ctx_.buffers = std::move(pool);
    ctx_.buf_sectors = ctx_.geo.sectors_in(buf_bytes);
    ctx_.bypass_bytes = eo.cache_bypass_bytes == 0 ? ~std::uint64_t{0} : eo.cache_bypass_bytes;
    ctx_.whole_reads = ctx_.store->splits_large_requests();
    CRYPTMAP_TRY_VOID(init_zoned(options));
    if (!ctx_.buffers->locked()) {
      ctx_.logger->warn("I/O buffers of {} are not mlocked: plaintext may reach swap",
                        ctx_.store->name());
    }
    if (options.cache_bytes >= ss) {
      cache::CacheOptions co;
      co.capacity_bytes = options.cache_bytes;
      co.block_size = ss;
      co.shards = eo.cache_shards;
      CRYPTMAP_TRY(c, cache::make_sharded_lru_cache(co));
      ctx_.cache = std::move(c);
      if (!ctx_.cache->memory_locked()) {
        ctx_.logger->warn("sector cache of {} is not mlocked: plaintext may reach swap",
                          ctx_.store->name());
      }
      CRYPTMAP_TRY(wb, WriteBack::start(ctx_, options, eo));
      writeback_ = std::move(wb);
      // Write-behind serves write-back mode only: not write-through (no_write_workqueue, the
      // unordered-zones debug mode), not zoned stores, not read-only volumes.
      if (!ctx_.read_only && !ctx_.write_through && ctx_.store->zones() == nullptr &&
          eo.write_behind_bytes >= buf_bytes && eo.write_behind_workers > 0) {
        CRYPTMAP_TRY(behind,
                     WriteBehind::start(ctx_, eo.write_behind_bytes, eo.write_behind_workers));
        behind_ = std::move(behind);
      }
    }
    try {
      write_path_ = std::make_unique<WritePath>(ctx_, writeback_.get(), behind_.get());
    } catch (const std::exception&) {
      return make_error(Errc::kNoSpace, "open volume: allocate the write path");
    }
    if (eo.read_ahead_windows != 0 && eo.read_ahead_bytes >= ss && !options.no_read_workqueue) {
      ReadAhead::Options ro;
      ro.sector_size = ss;
      ro.windows = eo.read_ahead_windows;
      ro.window_bytes = eo.read_ahead_bytes;
      ro.depth = std::max<std::uint32_t>(1, eo.read_ahead_depth);
      ro.stream_depth = eo.read_ahead_stream_depth;
      ro.threads = std::max<unsigned>(1, eo.read_ahead_threads);
      read_ahead_options_ = ro;
      CRYPTMAP_TRY_VOID(start_read_ahead());
    }
    return ok();
  }

  // The caller holds every request (Volume::resize's contract), so only the engine's own
  // threads run: read-ahead is stopped (its windows would load or keep sectors of the old
  // size) and started again for the new size; the flusher keeps running, and a shrink takes the
  // dropped sectors exclusively so that a write-back run on them finishes before their dirty
  // blocks are erased (a run that comes later finds them gone: snapshot_dirty).
  Result<std::uint64_t> resize(std::uint64_t new_size) override {
    if (ctx_.read_only)
      return make_error_fmt(Errc::kReadOnly, "resize volume", new_size, "%s is opened read-only",
                            ctx_.store->name().c_str());
    if (ctx_.store->zones() != nullptr)
      return make_error_fmt(Errc::kUnsupported, "resize volume", new_size,
                            "%s is zoned: zoned volumes cannot change size",
                            ctx_.store->name().c_str());
    CRYPTMAP_TRY(image, ctx_.store->refresh_size());
    const std::uint64_t off = ctx_.geo.data_offset;
    if (off >= image)
      return make_error_fmt(Errc::kInvalid, "resize volume", image,
                            "the data offset (%llu bytes) is beyond the end of %s",
                            static_cast<unsigned long long>(off), ctx_.store->name().c_str());
    const std::uint64_t room = round_down_to_sector(image - off, ctx_.ss);
    if (new_size == 0) {
      new_size = room;
      if (new_size == 0)
        return make_error_fmt(Errc::kNoSpace, "resize volume", image,
                              "%s holds no whole %u-byte sector after the data offset",
                              ctx_.store->name().c_str(), ctx_.ss);
    } else if (new_size % ctx_.ss != 0) {
      return make_error_fmt(Errc::kInvalid, "resize volume", new_size,
                            "the size is not a multiple of the %u-byte sector size", ctx_.ss);
    } else if (new_size > image - off) {
      return make_error_fmt(Errc::kNoSpace, "resize volume: the image is too small", new_size,
                            "it holds %llu bytes after the data offset",
                            static_cast<unsigned long long>(image - off));
    }
    const std::uint64_t old_sectors = ctx_.geo.sectors();
    if (behind_) behind_->drain();  // no store write of the old geometry is left in flight
    ctx_.read_ahead.reset();
    if (new_size < ctx_.geo.size && ctx_.cache) {
      const std::uint64_t first = new_size / ctx_.ss;
      RangeLock::Guard guard = ctx_.ranges.acquire(first, old_sectors, /*exclusive=*/true);
      if (const std::uint64_t dropped = ctx_.cache->erase_from(first); dropped != 0)
        ctx_.logger->warn("{}: shrink dropped {} unwritten sector(s) past the new end",
                          ctx_.store->name(), dropped);
    }
    ctx_.geo.size = new_size;
    if (Result<void> r = start_read_ahead(); !r)
      ctx_.logger->warn("{}: read-ahead stays off after the resize: {}", ctx_.store->name(),
                        r.error().message());
    return new_size;
  }

  // The exclusive range is what every request, read-ahead load and write-back run takes first
  // (shared or exclusive), so nothing reads or writes the range's ciphertext while fn runs.
  Result<void> hold_range(ByteOffset off, std::uint64_t len,
                          const std::function<Result<void>()>& fn) override {
    if (ctx_.zoned)
      return make_error_fmt(Errc::kUnsupported, "hold range", off.value,
                            "%s is zoned: its ranges cannot be held", ctx_.store->name().c_str());
    if (len == 0 || !ctx_.geo.fits(off.value, len))
      return make_error_fmt(Errc::kInvalid, "hold range", off.value,
                            "%llu bytes at %llu: empty or past the end of %s",
                            static_cast<unsigned long long>(len),
                            static_cast<unsigned long long>(off.value), ctx_.store->name().c_str());
    const std::uint64_t first = off.value / ctx_.ss;
    const std::uint64_t end = (off.value + len + ctx_.ss - 1) / ctx_.ss;
    RangeLock::Guard guard = ctx_.ranges.acquire(first, end, /*exclusive=*/true);
    return fn();
  }

  Result<std::size_t> read(ByteOffset off, std::span<std::byte> out) override {
    return read_path_.read(off.value, out);
  }

  Result<std::size_t> read_deliver(ByteOffset off, std::span<std::byte> out,
                                   Deliver deliver) override {
    return read_path_.read(off.value, out, &deliver);
  }

  Result<std::size_t> write(ByteOffset off, std::span<const std::byte> in) override {
    if (ctx_.zoned) return write_ordered(off, in, [] {}, {});  // no ordering point: call order
    return write_path_->write(off.value, in);
  }

  // Every write acknowledged before this call is in the cache (dirty), queued for write-behind
  // or already in the store: the queued write-behinds are waited for (a failed one's data is
  // back in the cache, dirty, or lost with its error latched), one write-back pass covers the
  // dirty blocks, then the store is synced. A write-behind's latched error is reported here
  // once, by the first flush after it (like the kernel's errseq on fsync).
  Result<void> flush() override {
    Result<void> r = ok();
    if (behind_) behind_->drain();
    if (writeback_ && !ctx_.read_only) r = writeback_->writeback_all();
    Result<void> s = ctx_.store->sync();
    if (r && !s) r = s;
    if (behind_) {
      if (std::optional<Error> lost = behind_->take_error()) r = *lost;
    }
    if (!r) ctx_.log_error("flush", r.error());
    return r;
  }

  Result<std::size_t> write_ordered(ByteOffset off, std::span<const std::byte> in,
                                    Admitted admitted, WriteOrder order) override {
    if (!ctx_.zoned || in.empty() || ctx_.read_only || !ctx_.geo.fits(off.value, in.size()) ||
        !ctx_.zoned->needs_admission(ctx_.geo.image_byte(off.value), in.size())) {
      admitted();
      return write_path_->write(off.value, in);
    }
    Result<ZoneTicket> t =
        ctx_.zoned->admit(ctx_.geo.image_byte(off.value), in.size(), order.wait_for_pointer);
    admitted();
    if (!t) {
      ctx_.log_error("write", t.error());
      return t.error();
    }
    Result<std::size_t> r = write_path_->write_zoned(*t, off.value, in);
    if (!r) ctx_.log_error("write", r.error());
    return r;
  }

  // Zoned volumes: the ordered write, then a flush (the default). Others: written through with
  // the store's durable write (WritePath::write, `fua`).
  Result<std::size_t> write_fua(ByteOffset off, std::span<const std::byte> in, Admitted admitted,
                                WriteOrder order) override {
    if (ctx_.zoned) return Volume::write_fua(off, in, std::move(admitted), order);
    admitted();
    return write_path_->write(off.value, in, /*fua=*/true);
  }

  Result<std::size_t> discard(ByteOffset off, std::uint64_t len) override {
    Result<std::size_t> r = write_path_->discard(off.value, len);
    if (!r) ctx_.log_error("discard", r.error());
    return r;
  }

  bool orders_writes() const noexcept override { return ctx_.zoned != nullptr; }
  const ZoneMap* zones() const noexcept override { return ctx_.store->zones(); }
  std::uint64_t size_bytes() const noexcept override { return ctx_.geo.size; }
  const VolumeLayout& layout() const noexcept override { return ctx_.layout; }
  bool read_only() const noexcept override { return ctx_.read_only; }

 private:
  Result<void> init_zoned(const VolumeOptions& options) {
    ctx_.allow_discards = options.allow_discards;
    ctx_.write_through = options.no_write_workqueue;
    if (ctx_.store->zones() == nullptr || ctx_.read_only) return ok();
    auto* zs = dynamic_cast<ZonedStore*>(ctx_.store.get());
    if (zs == nullptr) return ok();
    if (options.unordered_zone_writes) {
      // Debug mode: no admission, and no write-back cache that would sort writes either.
      ctx_.logger->warn("{}: writes into sequential zones are NOT ordered (debug option)",
                        ctx_.store->name());
      ctx_.write_through = true;
      return ok();
    }
    CRYPTMAP_TRY(z, ZonedWritePath::create(*zs, ctx_.ss, options.max_inflight_requests));
    ctx_.zoned = std::move(z);
    return ok();
  }

  // One info line at close when read-ahead served anything (issue #13: hits, waits, misses).
  void log_read_ahead_stats() {
    if (!ctx_.read_ahead) return;
    const std::string line = ctx_.read_ahead->stats().summary();
    if (!line.empty()) ctx_.logger->info("read-ahead on volume {}: {}", ctx_.store->name(), line);
  }

  // Read-ahead for the current size (nothing when it is off).
  Result<void> start_read_ahead() {
    if (!read_ahead_options_) return ok();
    ReadAhead::Options ro = *read_ahead_options_;
    ro.volume_sectors = ctx_.geo.sectors();
    CRYPTMAP_TRY(ra, ReadAhead::create(ro, [this](std::uint64_t first, std::span<std::byte> dst,
                                                  const ReadAhead::LoadTicket& t) {
                   return read_path_.load_ahead(first, dst, t);
                 }));
    ctx_.read_ahead = std::move(ra);
    return ok();
  }

  // Declaration order is destruction order reversed: the parts before the context they
  // borrow, the context (store, driver) before the engine, the engine before the cipher.
  std::unique_ptr<crypto::SectorCipher> cipher_;
  std::unique_ptr<crypto::CryptoEngine> engine_;
  EngineContext ctx_;
  ReadPath read_path_;
  std::unique_ptr<WriteBack> writeback_;                  // null without a cache
  std::unique_ptr<WriteBehind> behind_;                   // null when write-behind is off
  std::unique_ptr<WritePath> write_path_;                 // set by init
  std::optional<ReadAhead::Options> read_ahead_options_;  // set by init when read-ahead is on
};

}  // namespace

Result<std::unique_ptr<Volume>> open_volume_with_engine(
    VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
    const EngineFactory& make_engine, std::unique_ptr<BackingStore> store,
    const VolumeOptions& options, const EngineOptions& engine_options,
    std::shared_ptr<spdlog::logger> logger) {
  if (!cipher || !store)
    return make_error(Errc::kInvalid, "open volume: cipher and store required");
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
    size = round_down_to_sector(image - layout.data_offset_bytes, ss);
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
      make_engine ? make_engine(*cipher) : crypto::make_sync_engine(*cipher);
  if (!engine) return make_error(Errc::kInvalid, "open volume: no crypto engine");
  const std::size_t slots = std::max<std::uint32_t>(4, options.max_inflight_requests);
  auto vol =
      std::make_unique<VolumeImpl>(std::move(layout), std::move(cipher), std::move(engine),
                                   std::move(store), size, read_only, slots, std::move(logger));
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

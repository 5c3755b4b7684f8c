#include "volume/engine/writeback.h"

#include <algorithm>

#include "base/io_thread.h"
#include "volume/engine/volume_engine.h"

namespace cryptmap::volume {

using crypto::CryptoDir;

Result<std::unique_ptr<WriteBack>> WriteBack::start(EngineContext& ctx,
                                                    const VolumeOptions& options,
                                                    const EngineOptions& eo) {
  try {
    std::unique_ptr<WriteBack> wb(new WriteBack(ctx));
    const std::uint64_t cap = ctx.cache->capacity_blocks() * ctx.ss;
    wb->dirty_limit_ = std::max<std::uint64_t>(
        ctx.ss, cap * std::clamp<std::uint32_t>(eo.dirty_percent, 1, 100) / 100);
    wb->dirty_background_ = wb->dirty_limit_ / 2;
    wb->flush_age_ = std::chrono::milliseconds(options.flush_age_ms);
    wb->period_ =
        std::chrono::milliseconds(std::clamp<std::uint32_t>(options.flush_age_ms / 4, 10, 1000));
    {
      // Before the flusher exists: uncontended, keeps the rule uniform.
      MutexLock lock(wb->writeback_mu_);
      wb->dirty_scratch_.resize(ctx.cache->capacity_blocks());
      wb->versions_.resize(kWritebackDepth * ctx.buf_sectors);
      wb->piece_info_.resize(kWritebackDepth * ctx.buf_sectors);
      wb->pieces_.resize(kWritebackDepth * ctx.buf_sectors);
    }
    if (!ctx.read_only) wb->flusher_ = std::thread([p = wb.get()] { p->flusher_main(); });
    return wb;
  } catch (const std::exception&) {
    return make_error(Errc::kNoSpace, "open volume: start the write-back flusher");
  }
}

WriteBack::~WriteBack() { stop(); }

void WriteBack::stop() {
  if (!flusher_.joinable()) return;
  {
    MutexLock lock(flusher_mu_);
    stop_ = true;
  }
  flusher_cv_.notify_all();
  flusher_.join();
}

// Dirty throttling, before the range lock is taken: above `dirty_background_` the flusher is
// kicked; at `dirty_limit_` the writer writes through at its own depth (true) instead of
// waiting for the flusher's passes.
Result<bool> WriteBack::throttle() {
  cache::SectorCache& cache = *ctx_.cache;
  if (cache.dirty_bytes() < dirty_background_) return false;
  kick_flusher();
  if (cache.dirty_bytes() < dirty_limit_) return false;
  MutexLock lock(throttle_mu_);
  if (last_pass_error_) return *last_pass_error_;
  return true;
}

void WriteBack::kick_flusher() {
  {
    MutexLock lock(flusher_mu_);
    kick_ = true;
  }
  flusher_cv_.notify_one();
}

void WriteBack::flusher_main() {
  (void)mark_io_thread();
  MutexLock lock(flusher_mu_);
  while (!stop_) {
    // Until stop_ or kick_ is set, or period_ has passed.
    const auto deadline = std::chrono::steady_clock::now() + period_;
    while (!stop_ && !kick_) {
      if (!flusher_cv_.wait_until(lock, deadline)) break;
    }
    if (stop_) break;
    bool due = kick_;
    kick_ = false;
    lock.unlock();
    if (!due) {
      const auto oldest = ctx_.cache->oldest_dirty();
      due = oldest && std::chrono::steady_clock::now() - *oldest >= flush_age_;
    }
    if (due) {
      Result<void> r = writeback_all();
      if (!r) ctx_.log_error("background write-back", r.error());
      MutexLock tl(throttle_mu_);
      if (r) {
        last_pass_error_.reset();
      } else {
        last_pass_error_ = r.error();
      }
    }
    lock.lock();
  }
}

Result<void> WriteBack::writeback_all() {
  MutexLock wb(writeback_mu_);
  const std::size_t n = ctx_.cache->collect_dirty(dirty_scratch_);
  std::sort(dirty_scratch_.begin(), dirty_scratch_.begin() + static_cast<std::ptrdiff_t>(n));
  Result<void> first = ok();
  std::size_t i = 0;
  while (i < n) {
    std::size_t runs = 0;
    piece_count_ = 0;
    while (i < n && runs < kWritebackDepth) {
      std::size_t j = i + 1;
      while (j < n && dirty_scratch_[j] == dirty_scratch_[j - 1] + 1 && j - i < ctx_.buf_sectors) {
        ++j;
      }
      if (!gather_run(runs, dirty_scratch_[i], j - i, /*wait=*/runs == 0)) break;
      ++runs;
      i = j;
    }
    Result<void> r = write_gathered(runs);
    if (!r && first) first = r;
  }
  return first;
}

bool WriteBack::gather_run(std::size_t slot, std::uint64_t first, std::uint64_t count, bool wait) {
  const SectorGeometry& g = ctx_.geo;
  // Shared range: no writer is half-way through a read-modify-write of these blocks.
  RangeLock::Guard guard = wait ? ctx_.ranges.acquire(first, first + count, /*exclusive=*/false)
                                : ctx_.ranges.try_acquire(first, first + count, false);
  if (!guard) return false;
  BufferPool::Buffer buf = wait ? ctx_.buffers->acquire() : ctx_.buffers->try_acquire();
  if (!buf) return false;
  const std::span<std::byte> b = buf.span();
  const std::size_t version_base = slot * ctx_.buf_sectors;
  const std::size_t first_piece = piece_count_;
  std::size_t used = 0;  // sectors of the buffer filled by this run's pieces
  bool open = false;     // the last piece can still grow
  for (std::uint64_t k = 0; k < count; ++k) {
    const std::uint64_t idx = first + k;
    const auto v = ctx_.cache->snapshot_dirty(idx, b.subspan(g.bytes(used), ctx_.ss));
    if (!v) {  // no longer dirty (erased): split the run
      open = false;
      continue;
    }
    if (!open) {
      piece_info_[piece_count_++] = {idx, 0, version_base + used, {}};
      open = true;
    }
    PieceInfo& p = piece_info_[piece_count_ - 1];
    versions_[p.version_at + p.have] = *v;
    ++p.have;
    ++used;
  }
  for (std::size_t q = first_piece; q < piece_count_; ++q) {
    PieceInfo& p = piece_info_[q];
    p.data = b.subspan(g.bytes(p.version_at - version_base), g.bytes(p.have));
  }
  run_guards_[slot] = std::move(guard);
  run_bufs_[slot] = std::move(buf);
  return true;
}

Result<void> WriteBack::write_gathered(std::size_t runs) {
  Result<void> result = ok();
  // Encrypt each piece in its buffer (in place: the buffer is ours); a piece that fails to
  // encrypt is not written and keeps its blocks dirty.
  std::size_t keep = 0;
  for (std::size_t q = 0; q < piece_count_; ++q) {
    const PieceInfo p = piece_info_[q];
    Result<void> r = ctx_.driver->convert(CryptoDir::kEncrypt, p.data, SectorIndex{p.start});
    if (!r) {
      if (result) result = r;
      continue;
    }
    piece_info_[keep] = p;
    pieces_[keep] = {ByteOffset{ctx_.geo.image_offset(p.start)}, p.data};
    ++keep;
  }
  if (keep > 0) {
    (void)ctx_.store->write_batch(std::span<WritePiece>(pieces_.data(), keep));
  }
  for (std::size_t q = 0; q < keep; ++q) {
    const PieceInfo& p = piece_info_[q];
    if (pieces_[q].result) {
      for (std::size_t k = 0; k < p.have; ++k) {
        (void)ctx_.cache->mark_clean(p.start + k, versions_[p.version_at + k]);
      }
    } else if (result) {
      result = pieces_[q].result;
    }
  }
  for (std::size_t s = 0; s < runs; ++s) {
    run_bufs_[s].reset();
    run_guards_[s].release();
  }
  piece_count_ = 0;
  return result;
}

}  // namespace cryptmap::volume

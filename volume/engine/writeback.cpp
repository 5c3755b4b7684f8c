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
      wb->versions_.resize(ctx.buf_sectors);
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

// Dirty throttling (the only place a writer waits for write-back), before the range lock is
// taken, so the flusher can always make progress: above `dirty_background_` the flusher is
// kicked; at `dirty_limit_` the writer waits for write-back passes to bring it down.
Result<void> WriteBack::throttle() {
  cache::SectorCache& cache = *ctx_.cache;
  if (cache.dirty_bytes() < dirty_background_) return ok();
  kick_flusher();
  MutexLock lock(throttle_mu_);
  while (cache.dirty_bytes() >= dirty_limit_) {
    const std::uint64_t passes = writeback_passes_;
    kick_flusher();
    ++throttled_;
    // Woken by the end of a pass, or as soon as a run of it brought dirty data under the
    // limit (writeback_run), not only after the whole pass.
    while (writeback_passes_ == passes && cache.dirty_bytes() >= dirty_limit_) {
      throttle_cv_.wait(lock);
    }
    --throttled_;
    if (last_pass_error_ && cache.dirty_bytes() >= dirty_limit_) return *last_pass_error_;
  }
  return ok();
}

// After a write-back run: lets throttled writers go once dirty data is under the limit.
void WriteBack::release_throttled() {
  if (ctx_.cache->dirty_bytes() >= dirty_limit_) return;
  {
    MutexLock lock(throttle_mu_);
    if (throttled_ == 0) return;
  }
  throttle_cv_.notify_all();
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
      {
        MutexLock tl(throttle_mu_);
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

Result<void> WriteBack::writeback_all() {
  MutexLock wb(writeback_mu_);
  const std::size_t n = ctx_.cache->collect_dirty(dirty_scratch_);
  std::sort(dirty_scratch_.begin(), dirty_scratch_.begin() + static_cast<std::ptrdiff_t>(n));
  Result<void> first = ok();
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i + 1;
    while (j < n && dirty_scratch_[j] == dirty_scratch_[j - 1] + 1 && j - i < ctx_.buf_sectors) {
      ++j;
    }
    Result<void> r = writeback_run(dirty_scratch_[i], j - i);
    if (!r && first) first = r;
    i = j;
  }
  return first;
}

// Caller must hold writeback_mu_ (versions_ is its scratch).
Result<void> WriteBack::writeback_run(std::uint64_t first, std::uint64_t count) {
  const SectorGeometry& g = ctx_.geo;
  // Taken here, where writeback_mu_ is known to be held: `emit` below is a lambda, a separate
  // function to the analysis, which would not see the lock.
  std::uint64_t* const versions = versions_.data();
  // Shared range: no writer is half-way through a read-modify-write of these blocks.
  RangeLock::Guard guard = ctx_.ranges.acquire(first, first + count, /*exclusive=*/false);
  BufferPool::Buffer buf = ctx_.buffers->acquire();
  const std::span<std::byte> b = buf.span();
  std::uint64_t start = first;
  std::size_t have = 0;
  Result<void> result = ok();
  auto emit = [&]() {
    if (have == 0) return;
    const std::span<std::byte> data = b.first(g.bytes(have));
    Result<void> r = ctx_.driver->convert(CryptoDir::kEncrypt, data, SectorIndex{start});
    if (r) r = ctx_.store->write_at(ByteOffset{g.image_offset(start)}, data);
    if (r) {
      for (std::size_t k = 0; k < have; ++k) (void)ctx_.cache->mark_clean(start + k, versions[k]);
      release_throttled();
    } else if (result) {
      result = r;
    }
  };
  for (std::uint64_t k = 0; k < count; ++k) {
    const std::uint64_t idx = first + k;
    const auto v = ctx_.cache->snapshot_dirty(idx, b.subspan(g.bytes(have), ctx_.ss));
    if (!v) {  // no longer dirty (erased): split the run
      emit();
      start = idx + 1;
      have = 0;
      continue;
    }
    versions[have++] = *v;
  }
  emit();
  return result;
}

}  // namespace cryptmap::volume

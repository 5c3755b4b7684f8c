#include "volume/engine/write_behind.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "base/check.h"
#include "base/clock.h"
#include "base/io_thread.h"

namespace cryptmap::volume {

using crypto::CryptoDir;

// A job: fields other than `seq` belong to the writer between try_reserve() and submit(), then
// to the worker that runs it; `seq` is guarded by WriteBehind::mu_ (0: free or reserved).
class WriteBehind::Job {
 public:
  std::uint64_t first = 0;  // sectors [first, first + count)
  std::uint64_t count = 0;
  std::size_t n = 0;                     // pieces
  std::vector<BufferPool::Buffer> bufs;  // one per piece; sized by start()
  std::vector<WritePiece> batch;         // one per piece; sized by start()
  RangeLock::Guard range;                // the request's exclusive range, from submit()
  std::uint64_t reserved_ns = 0;         // steady clock at try_reserve(), then at submit()
  std::uint64_t sealed_ns = 0;           // steady clock at sealed()
  std::uint64_t seq = 0;
};

Result<std::unique_ptr<WriteBehind>> WriteBehind::start(EngineContext& ctx, std::size_t pool_bytes,
                                                        unsigned workers) {
  CRYPTMAP_CHECK(ctx.cache != nullptr);
  const std::size_t buf_bytes = ctx.geo.bytes(ctx.buf_sectors);
  const std::size_t count = std::max<std::size_t>(1, pool_bytes / buf_bytes);
  CRYPTMAP_TRY(pool, BufferPool::create(count, buf_bytes, "write-behind buffers"));
  try {
    std::unique_ptr<WriteBehind> wb(new WriteBehind(ctx));
    wb->pool_ = std::move(pool);
    wb->jobs_.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      auto j = std::make_unique<Job>();
      j->bufs.resize(count);
      j->batch.resize(count);
      wb->jobs_.push_back(std::move(j));
    }
    {
      // Before any worker exists: uncontended, keeps the rule uniform.
      MutexLock lock(wb->mu_);
      wb->free_.reserve(count);
      for (auto& j : wb->jobs_) wb->free_.push_back(j.get());
      wb->queue_.assign(count, nullptr);
    }
    for (unsigned i = 0; i < std::max(1u, workers); ++i) {
      wb->workers_.emplace_back([p = wb.get()] { p->worker_main(); });
    }
    return wb;
  } catch (const std::exception&) {
    return make_error(Errc::kNoSpace, "open volume: start the write-behind workers");
  }
}

WriteBehind::WriteBehind(EngineContext& ctx) : ctx_(ctx) {}

WriteBehind::~WriteBehind() { stop(); }

void WriteBehind::stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;  // workers finish every queued job first
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  log_stats();
}

WriteBehind::Stats WriteBehind::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

void WriteBehind::log_stats() {
  Stats st;
  {
    MutexLock lock(mu_);
    if (stats_logged_) return;
    stats_logged_ = true;
    st = stats_;
  }
  const std::uint64_t fallbacks = st.inline_no_slot + st.inline_no_buffer;
  if (st.queued == 0 && fallbacks == 0) return;
  const double q = static_cast<double>(std::max<std::uint64_t>(1, st.queued));
  auto us = [q](std::uint64_t ns) { return static_cast<double>(ns) / q / 1000.0; };
  const double between_us = static_cast<double>(st.between_ns) /
                            static_cast<double>(std::max<std::uint64_t>(1, st.between_count)) /
                            1000.0;
  ctx_.logger->info(
      "write-behind on volume {}: {} request(s) queued, {} written through inline ({} with no "
      "free job slot, {} with no free buffer), {} queued behind an earlier one; per queued "
      "request: merge and encryption {:.0f} us, cache update {:.0f} us, from the previous "
      "request's reply {:.0f} us (gaps under 100 ms), waiting for a worker {:.0f} us (max "
      "{:.0f}), store write {:.0f} us (max {:.0f})",
      ctx_.store->name(), st.queued, fallbacks, st.inline_no_slot, st.inline_no_buffer,
      st.behind_others, us(st.seal_ns), us(st.update_ns), between_us, us(st.wait_ns),
      static_cast<double>(st.wait_max_ns) / 1000.0, us(st.store_ns),
      static_cast<double>(st.store_max_ns) / 1000.0);
}

WriteBehind::Job* WriteBehind::try_reserve(std::uint64_t first, std::uint64_t count) {
  CRYPTMAP_CHECK(count > 0);
  const std::size_t n = static_cast<std::size_t>((count + ctx_.buf_sectors - 1) / ctx_.buf_sectors);
  const std::uint64_t t = steady_ns();
  Job* j = nullptr;
  {
    MutexLock lock(mu_);
    if (last_submit_ns_ != 0 && t - std::min(t, last_submit_ns_) < kIdleNs) {
      stats_.between_ns += t - std::min(t, last_submit_ns_);
      ++stats_.between_count;
    }
    last_submit_ns_ = 0;  // counted once, by the next reserve after a submit
    if (n > pool_->count()) {
      ++stats_.inline_no_buffer;
      return nullptr;
    }
    if (free_.empty()) {
      ++stats_.inline_no_slot;
      return nullptr;
    }
    j = free_.back();
    free_.pop_back();
  }
  j->first = first;
  j->count = count;
  j->n = n;
  j->reserved_ns = t;
  j->sealed_ns = 0;
  for (std::size_t q = 0; q < n; ++q) {
    j->bufs[q] = pool_->try_acquire();
    if (!j->bufs[q]) {
      cancel(j);
      MutexLock lock(mu_);
      ++stats_.inline_no_buffer;
      return nullptr;
    }
    j->batch[q] = {ByteOffset{ctx_.geo.image_offset(piece_first(*j, q))}, piece(*j, q), ok()};
  }
  return j;
}

std::size_t WriteBehind::pieces(const Job& j) const noexcept { return j.n; }

std::uint64_t WriteBehind::piece_first(const Job& j, std::size_t q) const noexcept {
  return j.first + q * ctx_.buf_sectors;
}

std::span<std::byte> WriteBehind::piece(Job& j, std::size_t q) const noexcept {
  const std::uint64_t start = q * ctx_.buf_sectors;
  const std::uint64_t n = std::min<std::uint64_t>(j.count - start, ctx_.buf_sectors);
  return j.bufs[q].span().first(ctx_.geo.bytes(n));
}

void WriteBehind::sealed(Job& j) const noexcept { j.sealed_ns = steady_ns(); }

void WriteBehind::cancel(Job* j) {
  for (std::size_t q = 0; q < j->n; ++q) j->bufs[q].reset();
  j->range.release();
  MutexLock lock(mu_);
  free_.push_back(j);
}

void WriteBehind::submit(Job* j, RangeLock::Guard range) {
  j->range = std::move(range);
  const std::uint64_t t = steady_ns();
  {
    MutexLock lock(mu_);
    ++stats_.queued;
    const std::uint64_t sealed = std::clamp(j->sealed_ns, j->reserved_ns, t);
    stats_.seal_ns += sealed - j->reserved_ns;
    stats_.update_ns += t - sealed;
    if (oldest_pending() != std::numeric_limits<std::uint64_t>::max()) ++stats_.behind_others;
    last_submit_ns_ = t;
    j->reserved_ns = t;  // from here: the time it waits for a worker
    j->seq = next_seq_++;
    queue_[(queue_head_ + queued_) % queue_.size()] = j;
    ++queued_;
  }
  work_cv_.notify_one();
}

std::uint64_t WriteBehind::oldest_pending() const {
  std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
  for (const auto& j : jobs_) {
    if (j->seq != 0) oldest = std::min(oldest, j->seq);
  }
  return oldest;
}

void WriteBehind::drain() {
  MutexLock lock(mu_);
  const std::uint64_t target = next_seq_;  // every job submitted so far has a smaller seq
  while (oldest_pending() < target) done_cv_.wait(lock);
}

std::optional<Error> WriteBehind::take_error() {
  MutexLock lock(mu_);
  return std::exchange(latched_, std::nullopt);
}

void WriteBehind::worker_main() {
  (void)mark_io_thread();
  for (;;) {
    Job* j = nullptr;
    {
      MutexLock lock(mu_);
      while (queued_ == 0 && !stop_) work_cv_.wait(lock);
      if (queued_ == 0) return;  // stopping, and nothing is left
      j = queue_[queue_head_];
      queue_head_ = (queue_head_ + 1) % queue_.size();
      --queued_;
      const std::uint64_t t = steady_ns();
      const std::uint64_t w = t - std::min(t, j->reserved_ns);
      stats_.wait_ns += w;
      stats_.wait_max_ns = std::max(stats_.wait_max_ns, w);
      j->reserved_ns = t;  // from here: the store write
    }
    run(*j);
    {
      MutexLock lock(mu_);
      const std::uint64_t t = steady_ns();
      const std::uint64_t w = t - std::min(t, j->reserved_ns);
      stats_.store_ns += w;
      stats_.store_max_ns = std::max(stats_.store_max_ns, w);
      j->seq = 0;
      free_.push_back(j);
    }
    done_cv_.notify_all();
  }
}

void WriteBehind::run(Job& j) {
  (void)ctx_.store->write_batch(std::span<WritePiece>(j.batch.data(), j.n));
  std::optional<Error> failure;
  std::uint64_t failed = 0, lost = 0;
  std::uint64_t lost_first = 0, lost_last = 0;
  for (std::size_t q = 0; q < j.n; ++q) {
    if (j.batch[q].result) continue;
    if (!failure) failure = j.batch[q].result.error();
    const std::uint64_t first = piece_first(j, q);
    const std::uint64_t n = ctx_.geo.sectors_in(j.batch[q].in.size());
    failed += n;
    if (const std::uint64_t l = keep_in_cache(j, q); l != 0) {
      if (lost == 0) lost_first = first;
      lost_last = first + n - 1;
      lost += l;
    }
  }
  for (std::size_t q = 0; q < j.n; ++q) j.bufs[q].reset();
  if (failure) {
    // One line per failed job, rate-limited with the volume's other errors (EngineContext).
    const std::uint64_t logged = ctx_.errors_logged.fetch_add(1, std::memory_order_relaxed);
    if (logged < 16 || logged % 1024 == 0) {
      ctx_.logger->error(
          "write-behind of sectors {}-{} on volume {} failed: {}; {} sector(s) kept dirty in "
          "the cache to retry, {} lost{}",
          j.first, j.first + j.count - 1, ctx_.store->name(), failure->message(), failed - lost,
          lost, lost != 0 ? " (the next fsync reports the error)" : "");
    }
    if (lost != 0) {
      Error e = make_error_fmt(
          failure->code, "write-behind to the store", lost_first,
          "sectors %llu-%llu of %s were lost", static_cast<unsigned long long>(lost_first),
          static_cast<unsigned long long>(lost_last), ctx_.store->name().c_str());
      e.sys_errno = failure->sys_errno;
      MutexLock lock(mu_);
      if (!latched_) latched_ = e;
    }
  }
  j.range.release();
}

std::uint64_t WriteBehind::keep_in_cache(Job& j, std::size_t q) {
  // The buffer still holds the ciphertext the store refused: decrypt it back in place. The job
  // still holds the exclusive range, so no newer write of these sectors exists anywhere yet.
  const std::span<std::byte> b = j.bufs[q].span().first(j.batch[q].in.size());
  const std::uint64_t first = piece_first(j, q);
  const std::uint64_t n = ctx_.geo.sectors_in(b.size());
  if (!ctx_.driver->convert(CryptoDir::kDecrypt, b, SectorIndex{first})) return n;
  std::uint64_t lost = 0;
  for (std::uint64_t k = 0; k < n; ++k) {
    const std::span<const std::byte> sec = b.subspan(ctx_.geo.bytes(k), ctx_.ss);
    if (ctx_.cache->put(first + k, sec, /*dirty=*/true) == cache::PutResult::kNoRoom) ++lost;
  }
  return lost;
}

}  // namespace cryptmap::volume

// WriteBehind — large writes of a write-back volume are acknowledged once they are encrypted
// and queued; a small set of workers writes them to the store (issue #13: a sequential writer
// at queue depth 1 used to wait for every store write before it could send its next request,
// so the store never overlapped the next request's receive and encryption).
//
//  * try_reserve(first, count): a job for sectors [first, first + count): a slot and every
//    pool buffer it needs, all only tried (never waited for, no allocation). nullptr when the
//    pool or the slots are exhausted: the writer then writes through inline, as before. Never
//    blocks on memory.
//  * The writer (WritePath, holding the request's exclusive range) merges and encrypts each
//    piece into the job's buffers (piece(q)), then submit()s the job with its range guard: the
//    range stays held until the store write completed, so reads and writes of the range that
//    come later (range tickets are in arrival order) see the new data and apply after it.
//    cancel() gives back a job that will not be submitted.
//  * Workers (mark_io_thread()) take jobs in submission order and write each as one store
//    batch. A failed piece is not lost: it is decrypted in its buffer and put into the cache
//    as dirty blocks (the flusher or the next flush() retries them); sectors the cache has no
//    room for are lost, and the error is latched (errseq-like: the next take_error(), i.e. the
//    next flush, reports it) with one log line naming the volume and the sector range. Then
//    the buffers and the range are released.
//  * drain(): waits until every job submitted before the call has finished (written, or put
//    back into the cache, or its error latched). flush() drains before its write-back pass.
//  * stop(): drains, then stops and joins the workers (close, §4.7: after the flusher stopped,
//    before the final write-back, the cache and the crypto driver go).
//
//  * stats(): what the path did so far (how often a writer fell back inline, and why; where a
//    queued request's time went); stop() logs them once, at info level, when the path was used.
//
// Memory: the buffers (`pool_bytes`, one locked mapping, base/buffer_pool.h) and the job slots
// are allocated by start(); reserving, submitting and running a job allocate nothing.
// Lock order: RangeLock -> mu_ (a writer submits holding its range); a worker holds no range
// but the jobs', never waits for one, and takes cache shards and crypto pools only inside their
// own calls, so a job always completes and waiting for it (drain, a range) cannot close a
// cycle.
// Thread-safety: every method may be called from any number of threads at once; a reserved job
// belongs to its writer until submit() or cancel().
// Ownership: borrows the EngineContext (store, driver, cache, logger), which outlives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <vector>

#include "base/buffer_pool.h"
#include "base/error.h"
#include "base/mutex.h"
#include "base/result.h"
#include "volume/engine/engine_context.h"
#include "volume/engine/range_lock.h"

namespace cryptmap::volume {

class WriteBehind {
 public:
  class Job;

  // `pool_bytes` of buffers (whole pool buffers of ctx.buf_sectors sectors, at least one) and
  // `workers` threads (at least one). REQUIRES: ctx.cache non-null, the volume writable.
  static Result<std::unique_ptr<WriteBehind>> start(EngineContext& ctx, std::size_t pool_bytes,
                                                    unsigned workers);
  ~WriteBehind();  // stop()
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // REQUIRES: count > 0. nullptr when not every buffer or no slot is free right now.
  Job* try_reserve(std::uint64_t first, std::uint64_t count) EXCLUDES(mu_);
  // The job's pieces: piece q holds sectors [first + q * buf_sectors, ...), at most one pool
  // buffer; the span is the buffer's part the piece uses (plaintext, then ciphertext in place).
  std::size_t pieces(const Job& j) const noexcept;
  std::uint64_t piece_first(const Job& j, std::size_t q) const noexcept;
  std::span<std::byte> piece(Job& j, std::size_t q) const noexcept;
  // The writer has encrypted every piece (stats: what follows until submit() is its cache
  // update).
  void sealed(Job& j) const noexcept;
  void cancel(Job* j) EXCLUDES(mu_);
  // Queues the job; `range` (the request's exclusive range) is released once it is done.
  void submit(Job* j, RangeLock::Guard range) EXCLUDES(mu_);

  void drain() EXCLUDES(mu_);
  // The error of a job whose data was lost since the last call (the first one), cleared.
  std::optional<Error> take_error() EXCLUDES(mu_);
  void stop() EXCLUDES(mu_);  // idempotent

  std::size_t capacity_bytes() const noexcept { return pool_->count() * pool_->buffer_bytes(); }

  // Counters since start() (issue #13: why write-behind gains little and varies). Times are
  // sums over the queued jobs, in nanoseconds of the steady clock.
  struct Stats {
    std::uint64_t queued = 0;            // jobs submitted
    std::uint64_t inline_no_slot = 0;    // try_reserve() refused: every job slot in use
    std::uint64_t inline_no_buffer = 0;  // try_reserve() refused: not every buffer free
    std::uint64_t behind_others = 0;     // jobs submitted while an earlier one was pending
    std::uint64_t seal_ns = 0;           // reserve -> sealed(): the writer's merge and encryption
    std::uint64_t update_ns = 0;         // sealed() -> submit(): resident cache blocks updated
    std::uint64_t between_ns = 0;        // one submit -> the next reserve (at queue depth 1: the
                                         // reply, the writer's turn, the next request's receive);
                                         // gaps of kIdleNs or more are idle time, not counted here
    std::uint64_t between_count = 0;     // the gaps between_ns sums
    std::uint64_t wait_ns = 0;           // submit -> a worker takes the job
    std::uint64_t wait_max_ns = 0;
    std::uint64_t store_ns = 0;  // the job's store batch
    std::uint64_t store_max_ns = 0;
  };
  Stats stats() const EXCLUDES(mu_);
  static constexpr std::uint64_t kIdleNs = 100'000'000;  // 100 ms

 private:
  explicit WriteBehind(EngineContext& ctx);  // in the .cpp, where Job is complete
  void worker_main() EXCLUDES(mu_);
  void log_stats() EXCLUDES(mu_);
  void run(Job& j) EXCLUDES(mu_);
  // A failed piece back into the cache as dirty blocks; returns how many sectors did not fit.
  std::uint64_t keep_in_cache(Job& j, std::size_t q);
  // The seq of the oldest job submitted and not finished (UINT64_MAX when none).
  std::uint64_t oldest_pending() const REQUIRES(mu_);

  EngineContext& ctx_;
  std::unique_ptr<BufferPool> pool_;        // set by start(), never changed
  std::vector<std::unique_ptr<Job>> jobs_;  // set by start(), never resized

  mutable Mutex mu_;
  CondVar work_cv_;                          // a job was queued, or stop_
  CondVar done_cv_;                          // a job finished
  std::vector<Job*> free_ GUARDED_BY(mu_);   // capacity: every job
  std::vector<Job*> queue_ GUARDED_BY(mu_);  // ring of submitted jobs, capacity: every job
  std::size_t queue_head_ GUARDED_BY(mu_) = 0;
  std::size_t queued_ GUARDED_BY(mu_) = 0;
  std::uint64_t next_seq_ GUARDED_BY(mu_) = 1;
  std::optional<Error> latched_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  bool stats_logged_ GUARDED_BY(mu_) = false;
  Stats stats_ GUARDED_BY(mu_);
  std::uint64_t last_submit_ns_ GUARDED_BY(mu_) = 0;  // 0: none yet
  std::vector<std::thread> workers_;
};

}  // namespace cryptmap::volume

// WriteBack — the write-back manager of a cached volume: the flusher thread, dirty throttling,
// age-based flushing and coalesced write-back passes.
//
//  * throttle(): the only place a writer waits for write-back, called BEFORE the writer takes
//    its range, so the flusher (which takes ranges) can always make progress. Above half the
//    dirty limit the flusher is kicked; at the limit (`dirty_percent` of the cache) the writer
//    waits until a run or a pass brings dirty data under it, or gets the error of a failed pass.
//  * The flusher wakes every clamp(flush_age_ms / 4, 10 ms, 1 s), or when kicked, and runs a
//    pass once kicked or once the oldest dirty block is older than `flush_age_ms`.
//  * writeback_all(): one pass over every block dirty at its start, sorted, adjacent blocks
//    coalesced into runs of up to one buffer, each encrypted and written with one store write
//    under the shared range, then marked clean if nobody wrote it meanwhile (the version
//    check). Blocks that fail stay dirty (the next pass retries); the first error is returned.
//    One pass at a time (flusher, flush(), close).
//
// Lock order: writeback_mu_ -> RangeLock -> throttle_mu_ -> flusher_mu_ (-> cache shards,
// taken inside cache calls only). A pass never waits for a writer: writers wait in throttle()
// holding no range.
// Memory: the pass's scratch arrays are allocated by start(); a pass allocates nothing.
// Thread-safety: throttle() and writeback_all() may be called from any number of threads.
// Ownership: borrows the EngineContext (its cache must be non-null), which outlives it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/mutex.h"
#include "base/result.h"
#include "volume/engine/engine_context.h"

namespace cryptmap::volume {

struct EngineOptions;

class WriteBack {
 public:
  // Sizes the dirty limits from the cache and `engine_options.dirty_percent`, allocates the
  // scratch arrays and, unless the volume is read-only, starts the flusher thread.
  static Result<std::unique_ptr<WriteBack>> start(EngineContext& ctx, const VolumeOptions& options,
                                                  const EngineOptions& engine_options);
  ~WriteBack();  // stop()
  WriteBack(const WriteBack&) = delete;
  WriteBack& operator=(const WriteBack&) = delete;

  Result<void> throttle() EXCLUDES(throttle_mu_, flusher_mu_);
  Result<void> writeback_all() EXCLUDES(writeback_mu_);
  // Stops and joins the flusher (a pass in progress finishes first). Idempotent. Does NOT
  // write back: the facade does that at close, after read-ahead and zoned admission stopped.
  void stop() EXCLUDES(flusher_mu_);

 private:
  explicit WriteBack(EngineContext& ctx) : ctx_(ctx) {}
  void release_throttled() EXCLUDES(throttle_mu_);
  void kick_flusher() EXCLUDES(flusher_mu_);
  void flusher_main() EXCLUDES(flusher_mu_);
  Result<void> writeback_run(std::uint64_t first, std::uint64_t count) REQUIRES(writeback_mu_);

  EngineContext& ctx_;
  std::uint64_t dirty_limit_ = 0;       // set by start()
  std::uint64_t dirty_background_ = 0;  // set by start()
  std::chrono::milliseconds flush_age_{5000};
  std::chrono::milliseconds period_{1000};

  // Lock order: writeback_mu_ -> RangeLock -> throttle_mu_ -> flusher_mu_ (see the top). The
  // mutexes' order is annotated below; a range of the RangeLock is not a capability the
  // analysis can name, so its place in the order stays a comment.
  Mutex writeback_mu_ ACQUIRED_BEFORE(throttle_mu_);  // one write-back pass at a time
  std::vector<std::uint64_t> dirty_scratch_ GUARDED_BY(writeback_mu_);
  std::vector<std::uint64_t> versions_ GUARDED_BY(writeback_mu_);

  Mutex flusher_mu_;    // the flusher's wake-up state
  CondVar flusher_cv_;  // kick_ or stop_ set
  bool kick_ GUARDED_BY(flusher_mu_) = false;
  bool stop_ GUARDED_BY(flusher_mu_) = false;

  // The pass counter and error throttled writers watch.
  Mutex throttle_mu_ ACQUIRED_BEFORE(flusher_mu_);
  CondVar throttle_cv_;  // a pass ended, or a run brought dirty data under limit
  std::uint64_t writeback_passes_ GUARDED_BY(throttle_mu_) = 0;
  std::uint32_t throttled_ GUARDED_BY(throttle_mu_) = 0;  // writers waiting in throttle()
  std::optional<Error> last_pass_error_ GUARDED_BY(throttle_mu_);

  std::thread flusher_;
};

}  // namespace cryptmap::volume

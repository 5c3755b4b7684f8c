// WriteBack — the write-back manager of a cached volume: the flusher thread, dirty throttling,
// age-based flushing and coalesced write-back passes.
//
//  * throttle(): called BEFORE the writer takes its range. Above half the dirty limit the
//    flusher is kicked; at the limit (`dirty_percent` of the cache) the writer does not wait
//    for the one flusher: throttle() returns true and the writer writes its sectors through
//    (encrypted and written by its own thread, resident blocks updated in place), so writers
//    above the limit add their own depth to the flusher's instead of queueing behind it. The
//    error of a failed pass is returned to writers at the limit (they would otherwise add
//    dirty data the store is refusing).
//  * The flusher wakes every clamp(flush_age_ms / 4, 10 ms, 1 s), or when kicked, and runs a
//    pass once kicked or once the oldest dirty block is older than `flush_age_ms`.
//  * writeback_all(): one pass over every block dirty at its start, sorted, adjacent blocks
//    coalesced into runs of up to one buffer, each encrypted under its shared range; up to
//    kWritebackDepth runs go to the store as one write batch (in flight together), then each
//    run's blocks are marked clean if nobody wrote them meanwhile (the version check). Only the
//    first run of a batch waits for its range and buffer; the others are only tried
//    (RangeLock::try_acquire, BufferPool::try_acquire), so a pass never waits while holding
//    anything and a batch shrinks instead when ranges or buffers are busy. Blocks that fail stay
//    dirty (the next pass retries); the first error is returned. One pass at a time (flusher,
//    flush(), close).
//
// Lock order: writeback_mu_ -> RangeLock -> throttle_mu_ -> flusher_mu_ (-> cache shards,
// taken inside cache calls only). A pass never waits for a writer: writers wait in throttle()
// holding no range.
// Memory: the pass's scratch arrays are allocated by start(); a pass allocates nothing.
// Thread-safety: throttle() and writeback_all() may be called from any number of threads.
// Ownership: borrows the EngineContext (its cache must be non-null), which outlives it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
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

  // true: write through (dirty data is at the limit).
  Result<bool> throttle() EXCLUDES(throttle_mu_, flusher_mu_);
  Result<void> writeback_all() EXCLUDES(writeback_mu_);
  // Stops and joins the flusher (a pass in progress finishes first). Idempotent. Does NOT
  // write back: the facade does that at close, after read-ahead and zoned admission stopped.
  void stop() EXCLUDES(flusher_mu_);

 private:
  explicit WriteBack(EngineContext& ctx) : ctx_(ctx) {}
  void kick_flusher() EXCLUDES(flusher_mu_);
  void flusher_main() EXCLUDES(flusher_mu_);
  // Runs of a pass in flight together (one store write batch).
  static constexpr std::size_t kWritebackDepth = 8;
  // Takes run [first, first + count) into batch slot `slot` (its range, a buffer, its dirty
  // blocks' snapshots as pieces); `wait`: acquire the range and buffer (the batch's first run),
  // else only try. false when a try failed (nothing taken).
  bool gather_run(std::size_t slot, std::uint64_t first, std::uint64_t count, bool wait)
      REQUIRES(writeback_mu_);
  // Encrypts and writes the gathered pieces as one batch, marks the written blocks clean and
  // gives the ranges and buffers back.
  Result<void> write_gathered(std::size_t runs) REQUIRES(writeback_mu_);

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
  std::vector<std::uint64_t> versions_ GUARDED_BY(writeback_mu_);  // kWritebackDepth buffers' worth
  // A batch being gathered: per run slot its range and buffer; per piece (a dirty stretch of a
  // run) its first sector, length and where its versions are. Sized by start().
  struct PieceInfo {
    std::uint64_t start = 0;
    std::size_t have = 0;
    std::size_t version_at = 0;
    std::span<std::byte> data;  // its plaintext, then ciphertext, in its run's buffer
  };
  std::array<RangeLock::Guard, kWritebackDepth> run_guards_ GUARDED_BY(writeback_mu_);
  std::array<BufferPool::Buffer, kWritebackDepth> run_bufs_ GUARDED_BY(writeback_mu_);
  std::vector<PieceInfo> piece_info_ GUARDED_BY(writeback_mu_);
  std::vector<WritePiece> pieces_ GUARDED_BY(writeback_mu_);
  std::size_t piece_count_ GUARDED_BY(writeback_mu_) = 0;

  Mutex flusher_mu_;    // the flusher's wake-up state
  CondVar flusher_cv_;  // kick_ or stop_ set
  bool kick_ GUARDED_BY(flusher_mu_) = false;
  bool stop_ GUARDED_BY(flusher_mu_) = false;

  // The error of the flusher's last pass, which writers at the dirty limit get.
  Mutex throttle_mu_ ACQUIRED_BEFORE(flusher_mu_);
  std::optional<Error> last_pass_error_ GUARDED_BY(throttle_mu_);

  std::thread flusher_;
};

}  // namespace cryptmap::volume

#include "volume/engine/crypto_driver.h"

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>
#include <oneapi/tbb/task_scheduler_observer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <optional>
#include <thread>
#include <vector>

#include "base/check.h"
#include "base/io_thread.h"
#include "base/mutex.h"

namespace cryptmap::volume {
namespace {

using crypto::CryptoDir;
using crypto::CryptoRequest;
using crypto::SubmitStatus;

// The per-call state of one conversion (dm-crypt's convert_context). Lives on the stack of the
// thread in convert(), which does not return before `pending` reached 0.
class Conversion {
 public:
  void add_pending() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    ++pending_;
  }
  void record(const Error& e) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (!error_) error_ = e;
    failed_.store(true, std::memory_order_relaxed);
  }
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
  // Makes a finished conversion reusable (pending back to the submitter's guard).
  void reset() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    CRYPTMAP_CHECK(pending_ == 0);
    pending_ = 1;
    error_.reset();
    failed_.store(false, std::memory_order_relaxed);
  }
  // The last access to *this by a completer: after the unlock the waiter may destroy it.
  void finish_one() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    CRYPTMAP_CHECK(pending_ > 0);
    if (--pending_ == 0) cv_.notify_all();
  }
  Result<void> wait() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    while (pending_ != 0) cv_.wait(lock);
    if (error_) return *error_;
    return ok();
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::uint32_t pending_ GUARDED_BY(mu_) = 1;   // the submitter's guard
  std::optional<Error> error_ GUARDED_BY(mu_);  // first error wins
  std::atomic<bool> failed_{false};
};

class IoFlusherObserver final : public tbb::task_scheduler_observer {
 public:
  explicit IoFlusherObserver(tbb::task_arena& arena) : tbb::task_scheduler_observer(arena) {
    observe(true);
  }
  ~IoFlusherObserver() override { observe(false); }
  void on_scheduler_entry(bool /*is_worker*/) override { (void)mark_io_thread(); }
};

// libtbb.so is not built with ThreadSanitizer, so TSan cannot see the happens-before edges of
// task spawning and reports the spawning thread's writes (the task, its range, the captured
// locals) as races with the thief. TSan builds therefore run every conversion inline on the
// calling thread; the same issue()/complete() code still runs concurrently there (many
// callers, asynchronous engine completions, the flusher). ASan builds keep the arena.
#if defined(__SANITIZE_THREAD__)
constexpr bool kUseArena = false;
#else
constexpr bool kUseArena = true;
#endif

}  // namespace

// A fixed set of objects handed out one at a time; take() waits while none is free (the
// backpressure of both pools below). Filled once at construction; never allocates after.
template <class T>
class WaitingPool {
 public:
  void fill(std::span<T> objects) EXCLUDES(mu_) {
    MutexLock lock(mu_);  // before the pool is shared: uncontended, keeps the rule uniform
    free_.reserve(objects.size());
    for (T& o : objects) free_.push_back(&o);
  }
  T* take() EXCLUDES(mu_) {
    MutexLock lock(mu_);
    while (free_.empty()) cv_.wait(lock);
    T* o = free_.back();
    free_.pop_back();
    return o;
  }
  void give(T* o) EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      free_.push_back(o);
    }
    cv_.notify_one();
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<T*> free_ GUARDED_BY(mu_);
};

// One started conversion: its counter and the task group of its arena task. Pooled; reused.
class CryptoDriver::Job {
 public:
  Conversion conv;
  tbb::task_group group;
  crypto::CryptoDir dir = crypto::CryptoDir::kDecrypt;
  std::span<std::byte> data;
  std::uint64_t first = 0;
  bool spawned = false;
  bool fresh = true;  // conv is in its initial state (never started)
};

struct CryptoDriver::Impl {
  Impl(crypto::CryptoEngine& e, const CryptoDriverOptions& o)
      : engine(e),
        opts(o),
        requests(o.max_inflight == 0 ? 1 : o.max_inflight),
        jobs(std::make_unique<Job[]>(requests.size())) {
    batch_sectors = std::max<std::size_t>(1, opts.batch_bytes / opts.sector_size);
    for (auto& r : requests) r.on_done = [this](CryptoRequest* q) { complete(q); };
    free_requests.fill(std::span(requests));
    free_jobs.fill(std::span(jobs.get(), requests.size()));
  }

  bool parallel(CryptoDir dir, std::size_t bytes) const {
    if (dir == CryptoDir::kDecrypt ? opts.inline_decrypt : opts.inline_encrypt) return false;
    const std::size_t count = bytes / opts.sector_size;
    const std::size_t batches = (count + batch_sectors - 1) / batch_sectors;
    return arena && bytes >= opts.parallel_threshold_bytes && batches > 1;
  }

  // Per-core slices of whole batches, one TBB task each; runs inside the arena.
  void issue_slices(Conversion& conv, CryptoDir dir, std::span<std::byte> data,
                    std::uint64_t first) {
    const std::size_t ss = opts.sector_size;
    const std::size_t count = data.size() / ss;
    const std::size_t batches = (count + batch_sectors - 1) / batch_sectors;
    const std::size_t slices = std::min<std::size_t>(threads, batches);
    const std::size_t per = (batches + slices - 1) / slices * batch_sectors;
    // simple_partitioner with grain 1: exactly one task per slice.
    tbb::parallel_for(
        tbb::blocked_range<std::size_t>(0, slices, 1),
        [&](const tbb::blocked_range<std::size_t>& r) {
          for (std::size_t i = r.begin(); i != r.end(); ++i) {
            const std::size_t begin = i * per;
            if (begin >= count) continue;
            const std::size_t n = std::min(per, count - begin);
            issue(conv, dir, data.subspan(begin * ss, n * ss), first + begin);
          }
        },
        tbb::simple_partitioner());
  }

  // Called exactly once per accepted batch (inline for kDone, by the engine otherwise).
  void complete(CryptoRequest* r) {
    auto* conv = static_cast<Conversion*>(r->user);
    if (!r->status) conv->record(r->status.error());
    free_requests.give(r);
    conv->finish_one();
  }

  // dm-crypt crypt_convert(): issue the batches of [first, first + count) one by one.
  void issue(Conversion& conv, CryptoDir dir, std::span<std::byte> data, std::uint64_t first) {
    const std::size_t ss = opts.sector_size;
    const std::size_t count = data.size() / ss;
    for (std::size_t pos = 0; pos < count; pos += batch_sectors) {
      if (conv.failed()) return;  // the request already failed: stop converting it
      const std::size_t n = std::min(batch_sectors, count - pos);
      CryptoRequest* r = free_requests.take();
      r->dir = dir;
      r->run = crypto::SectorRun{data.subspan(pos * ss, n * ss), {}, SectorIndex{first + pos}};
      r->status = ok();
      r->user = &conv;
      conv.add_pending();
      switch (engine.submit(r)) {
        case SubmitStatus::kDone:
          complete(r);
          break;
        case SubmitStatus::kInProgress:
          break;
        case SubmitStatus::kBackloggedBusy:
          // Accepted, but the engine is full: wait for its backlog to start draining (once
          // for this busy episode), then continue issuing.
          engine.wait_for_drain();
          break;
        case SubmitStatus::kBusyRejected: {
          // Not accepted and no backlog: fail the request rather than spin.
          Error e = make_error_fmt(Errc::kBusy, "crypto engine rejected request", first + pos,
                                   "%s is busy and has no backlog", engine.name());
          r->status = e;
          complete(r);
          return;
        }
      }
    }
  }

  crypto::CryptoEngine& engine;
  const CryptoDriverOptions opts;
  std::size_t batch_sectors = 1;
  std::vector<CryptoRequest> requests;
  std::unique_ptr<Job[]> jobs;
  WaitingPool<CryptoRequest> free_requests;  // max_inflight crypto requests
  WaitingPool<Job> free_jobs;                // as many conversion jobs
  unsigned threads = 1;
  std::unique_ptr<tbb::task_arena> arena;
  std::unique_ptr<IoFlusherObserver> observer;
};

Result<std::unique_ptr<CryptoDriver>> CryptoDriver::create(crypto::CryptoEngine& engine,
                                                           const CryptoDriverOptions& options) {
  if (options.sector_size < 512 || options.sector_size > 4096 ||
      (options.sector_size & (options.sector_size - 1)) != 0) {
    return make_error_fmt(Errc::kInvalid, "crypto driver: sector size", options.sector_size,
                          "must be a power of two from 512 to 4096");
  }
  try {
    auto impl = std::make_unique<Impl>(engine, options);
    unsigned t = options.threads != 0 ? options.threads : std::thread::hardware_concurrency();
    impl->threads = std::max(1u, t);
    if (kUseArena && !options.force_inline && impl->threads > 1) {
      impl->arena = std::make_unique<tbb::task_arena>(static_cast<int>(impl->threads));
      impl->arena->initialize();
      impl->observer = std::make_unique<IoFlusherObserver>(*impl->arena);
    }
    return std::unique_ptr<CryptoDriver>(new CryptoDriver(std::move(impl)));
  } catch (const std::exception&) {
    return make_error(Errc::kNoSpace, "crypto driver: allocate pools and task arena");
  }
}

CryptoDriver::CryptoDriver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CryptoDriver::~CryptoDriver() {
  if (impl_ && impl_->observer) impl_->observer.reset();
}

unsigned CryptoDriver::threads() const noexcept { return impl_->threads; }

void CryptoDriver::for_each_slice(std::size_t n, Slice slice) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(n <= kMaxSlices);
  std::array<std::atomic<bool>, kMaxSlices> ran{};
  if (im.arena && n > 1) {
    try {
      // simple_partitioner with grain 1: exactly one task per slice.
      im.arena->execute([&] {
        tbb::parallel_for(
            tbb::blocked_range<std::size_t>(0, n, 1),
            [&](const tbb::blocked_range<std::size_t>& r) {
              for (std::size_t i = r.begin(); i != r.end(); ++i) {
                slice(i);
                ran[i].store(true, std::memory_order_release);
              }
            },
            tbb::simple_partitioner());
      });
    } catch (const std::exception&) {
      // TBB could not schedule every task (it waits for those it started): the rest run here.
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    if (!ran[i].load(std::memory_order_acquire)) slice(i);
}

Result<void> CryptoDriver::convert(crypto::CryptoDir dir, std::span<std::byte> data,
                                   SectorIndex first) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(data.size() % im.opts.sector_size == 0);
  if (data.empty()) return ok();
  Conversion conv;
  if (!im.parallel(dir, data.size())) {
    im.issue(conv, dir, data, first.value);
  } else {
    // The calling thread joins the arena and works on the slices too.
    try {
      im.arena->execute([&] { im.issue_slices(conv, dir, data, first.value); });
    } catch (const std::exception&) {
      conv.record(make_error(Errc::kNoSpace, "crypto driver: schedule parallel batches"));
    }
  }
  conv.finish_one();  // drop the submitter's guard
  return conv.wait();
}

CryptoDriver::Job* CryptoDriver::start(crypto::CryptoDir dir, std::span<std::byte> data,
                                       SectorIndex first) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(data.size() % im.opts.sector_size == 0);
  Job* j = im.free_jobs.take();
  if (!j->fresh) j->conv.reset();
  j->fresh = false;
  j->dir = dir;
  j->data = data;
  j->first = first.value;
  j->spawned = false;
  if (data.empty()) return j;
  if (!im.parallel(dir, data.size())) {
    im.issue(j->conv, dir, data, first.value);
    return j;
  }
  try {
    im.arena->execute(
        [&] { j->group.run([&im, j] { im.issue_slices(j->conv, j->dir, j->data, j->first); }); });
    j->spawned = true;
  } catch (const std::exception&) {
    j->conv.record(make_error(Errc::kNoSpace, "crypto driver: schedule parallel batches"));
  }
  return j;
}

Result<void> CryptoDriver::finish(Job* j) {
  Impl& im = *impl_;
  if (j->spawned) {
    try {
      // Join the arena until the task is done: the caller helps instead of sleeping.
      im.arena->execute([&] { j->group.wait(); });
    } catch (const std::exception&) {
      j->conv.record(make_error(Errc::kNoSpace, "crypto driver: run parallel batches"));
    }
  }
  j->conv.finish_one();  // drop the submitter's guard
  Result<void> r = j->conv.wait();
  im.free_jobs.give(j);
  return r;
}

}  // namespace cryptmap::volume

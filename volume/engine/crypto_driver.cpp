#include "volume/engine/crypto_driver.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "base/check.h"
#include "base/mutex.h"
#include "volume/engine/slice_pool.h"

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
  // An authenticated decrypt's verdict: sector `index` failed its tag. The conversion goes on
  // (every sector gets its verdict); the error of the lowest failing sector is returned, unless
  // another error came first.
  void record_auth(const Error& e, std::uint64_t index) EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (!error_ || (error_->code == Errc::kAuth && index < auth_index_)) {
      error_ = e;
      auth_index_ = index;
    }
  }
  // Authenticated conversions: failed[i] is set for sector first + i when it fails its tag.
  std::span<bool> verdicts;
  std::uint64_t first = 0;
  bool failed() const noexcept { return failed_.load(std::memory_order_relaxed); }
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
  std::uint64_t auth_index_ GUARDED_BY(mu_) = UINT64_MAX;
  std::atomic<bool> failed_{false};
};

}  // namespace

// A fixed set of objects handed out one at a time; take() waits while none is free (the
// backpressure of the request pool below). Filled once at construction; never allocates after.
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

struct CryptoDriver::Impl {
  using FromTo = CryptoDriver::FromTo;  // `plain` empty: in place (convert())

  // The slices of one parallel conversion, as a fan-out of the volume's SlicePool; lives in the
  // frame of run(), which joins it before it returns.
  struct Slices {
    Impl* im = nullptr;
    Conversion* conv = nullptr;
    crypto::CryptoDir dir = crypto::CryptoDir::kDecrypt;
    std::span<const FromTo> parts;  // the conversion: its parts' sectors one after another
    std::size_t count = 0;          // sectors in all parts
    std::size_t per = 0;            // sectors per slice
    std::span<std::byte> meta;      // meta_bytes per sector of the sequence, or empty
    std::size_t meta_bytes = 0;
    std::size_t batch = 1;  // sectors per request
    SlicePool::FanOut fan;
  };

  Impl(crypto::CryptoEngine& e, const CryptoDriverOptions& o)
      : engine(e), opts(o), requests(o.max_inflight == 0 ? 1 : o.max_inflight) {
    batch_sectors = std::max<std::size_t>(1, opts.batch_bytes / opts.sector_size);
    for (auto& r : requests) r.on_done = [this](CryptoRequest* q) { complete(q); };
    free_requests.fill(std::span(requests));
  }

  bool parallel(CryptoDir dir, std::size_t bytes, std::size_t batch) const {
    if (dir == CryptoDir::kDecrypt ? opts.inline_decrypt : opts.inline_encrypt) return false;
    const std::size_t count = bytes / opts.sector_size;
    const std::size_t batches = (count + batch - 1) / batch;
    return pool && bytes >= opts.parallel_threshold_bytes && batches > 1;
  }

  // Cuts a conversion into per-core slices of whole batches (one fan-out slice each); a slice
  // may span the end of one part and the start of the next.
  void prepare_slices(Slices& t, Conversion& conv, CryptoDir dir, std::span<const FromTo> parts,
                      std::size_t count, std::span<std::byte> meta, std::size_t meta_bytes,
                      std::size_t batch) {
    const std::size_t batches = (count + batch - 1) / batch;
    const std::size_t slices = std::min<std::size_t>(threads, batches);
    t.im = this;
    t.conv = &conv;
    t.dir = dir;
    t.parts = parts;
    t.count = count;
    t.meta = meta;
    t.meta_bytes = meta_bytes;
    t.batch = batch;
    t.per = (batches + slices - 1) / slices * batch;
    t.fan.set(slices, &run_slice, &t);
  }
  static void run_slice(void* context, std::size_t i) {
    auto& t = *static_cast<Slices*>(context);
    const std::size_t begin = i * t.per;
    if (begin >= t.count) return;
    t.im->issue_range(*t.conv, t.dir, t.parts, begin, std::min(t.per, t.count - begin), t.meta,
                      t.meta_bytes, t.batch);
  }
  // Sectors [begin, begin + n) of the parts' sectors taken one after another; `meta`
  // (meta_bytes per sector of that sequence, or empty) travels with its sectors.
  void issue_range(Conversion& conv, CryptoDir dir, std::span<const FromTo> parts,
                   std::size_t begin, std::size_t n, std::span<std::byte> meta,
                   std::size_t meta_bytes, std::size_t batch) {
    const std::size_t ss = opts.sector_size;
    std::size_t base = 0;  // the first sector of part p in the sequence
    for (const FromTo& p : parts) {
      const std::size_t len = p.out.size() / ss;
      const std::size_t lo = std::max(begin, base), hi = std::min(begin + n, base + len);
      if (lo < hi) {
        const std::size_t at = (lo - base) * ss, bytes = (hi - lo) * ss;
        issue(conv, dir, p.out.subspan(at, bytes),
              p.plain.empty() ? p.plain : p.plain.subspan(at, bytes),
              meta.empty() ? meta : meta.subspan(lo * meta_bytes, (hi - lo) * meta_bytes),
              meta_bytes, batch, p.first.value + (lo - base));
      }
      base += len;
      if (base >= begin + n) break;
    }
  }

  // Called exactly once per accepted batch (inline for kDone, by the engine otherwise).
  void complete(CryptoRequest* r) {
    auto* conv = static_cast<Conversion*>(r->user);
    if (!r->status) {
      if (!conv->verdicts.empty() && r->status.error().code == Errc::kAuth) {
        // One sector per request: the verdict is exactly this request's sector.
        const std::uint64_t i = r->run.first.value - conv->first;
        conv->verdicts[i] = true;
        conv->record_auth(r->status.error(), r->run.first.value);
      } else {
        conv->record(r->status.error());
      }
    }
    free_requests.give(r);
    conv->finish_one();
  }

  // dm-crypt crypt_convert(): issue the batches of [first, first + count) one by one. With
  // `src` (encryption out of place), each batch's plaintext comes from there. `meta`
  // (meta_bytes per sector, or empty) travels in each request with its sectors.
  void issue(Conversion& conv, CryptoDir dir, std::span<std::byte> data,
             std::span<const std::byte> src, std::span<std::byte> meta, std::size_t meta_bytes,
             std::size_t batch, std::uint64_t first) {
    const std::size_t ss = opts.sector_size;
    const std::size_t count = data.size() / ss;
    for (std::size_t pos = 0; pos < count; pos += batch) {
      if (conv.failed()) return;  // the request already failed: stop converting it
      const std::size_t n = std::min(batch, count - pos);
      CryptoRequest* r = free_requests.take();
      r->dir = dir;
      r->run =
          crypto::SectorRun{data.subspan(pos * ss, n * ss),
                            meta.empty() ? meta : meta.subspan(pos * meta_bytes, n * meta_bytes),
                            SectorIndex{first + pos}};
      r->src = {};
      if (!src.empty()) {
        const std::span<const std::byte> from = src.subspan(pos * ss, n * ss);
        if (engine.reads_source()) {
          r->src = from;
        } else {  // the engine converts in place: the batch's plaintext goes there first
          std::memcpy(r->run.data.data(), from.data(), from.size());
        }
      }
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

  // One conversion of every part, inline or spread over the workers as one fan-out; returns
  // once every batch completed. `meta`, `meta_bytes`, `batch`: as issue_range's; `conv` may
  // carry verdicts (convert_auth).
  // on_caller: every batch issued from the calling thread, never fanned out (convert_on_caller).
  Result<void> run(Conversion& conv, CryptoDir dir, std::span<const FromTo> parts,
                   std::span<std::byte> meta, std::size_t meta_bytes, std::size_t batch,
                   bool on_caller = false) {
    std::size_t count = 0;
    for (const FromTo& p : parts) count += p.out.size() / opts.sector_size;
    if (on_caller || !parallel(dir, count * opts.sector_size, batch)) {
      issue_range(conv, dir, parts, 0, count, meta, meta_bytes, batch);
    } else {
      Slices task;
      prepare_slices(task, conv, dir, parts, count, meta, meta_bytes, batch);
      pool->run(task.fan);  // the calling thread works on the slices too
    }
    conv.finish_one();  // drop the submitter's guard
    return conv.wait();
  }

  crypto::CryptoEngine& engine;
  const CryptoDriverOptions opts;
  std::size_t batch_sectors = 1;
  std::vector<CryptoRequest> requests;
  WaitingPool<CryptoRequest> free_requests;  // max_inflight crypto requests
  unsigned threads = 1;
  std::unique_ptr<SlicePool> pool;  // threads - 1 workers; the caller is the last one
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
    if (!options.force_inline && impl->threads > 1)
      impl->pool = std::make_unique<SlicePool>(impl->threads - 1);
    return std::unique_ptr<CryptoDriver>(new CryptoDriver(std::move(impl)));
  } catch (const std::exception&) {
    return make_error(Errc::kNoSpace, "crypto driver: allocate pools and start the crypto workers");
  }
}

CryptoDriver::CryptoDriver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CryptoDriver::~CryptoDriver() = default;

unsigned CryptoDriver::threads() const noexcept { return impl_->threads; }

Result<void> CryptoDriver::convert(crypto::CryptoDir dir, std::span<std::byte> data,
                                   SectorIndex first) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(data.size() % im.opts.sector_size == 0);
  if (data.empty()) return ok();
  const FromTo part{{}, data, first};
  Conversion conv;
  return im.run(conv, dir, std::span(&part, 1), {}, 0, im.batch_sectors);
}

Result<void> CryptoDriver::convert_on_caller(crypto::CryptoDir dir, std::span<std::byte> data,
                                             SectorIndex first) {
  Impl& im = *impl_;
  CRYPTMAP_CHECK(data.size() % im.opts.sector_size == 0);
  if (data.empty()) return ok();
  const FromTo part{{}, data, first};
  Conversion conv;
  return im.run(conv, dir, std::span(&part, 1), {}, 0, im.batch_sectors, /*on_caller=*/true);
}

Result<void> CryptoDriver::encrypt_from(std::span<const std::byte> plain, std::span<std::byte> out,
                                        SectorIndex first) {
  const FromTo part{plain, out, first};
  return encrypt_from(std::span(&part, 1));
}

Result<void> CryptoDriver::encrypt_from(std::span<const FromTo> parts) {
  Impl& im = *impl_;
  for (const FromTo& p : parts) {
    CRYPTMAP_CHECK(p.plain.size() == p.out.size() && p.out.size() % im.opts.sector_size == 0);
  }
  Conversion conv;
  return im.run(conv, CryptoDir::kEncrypt, parts, {}, 0, im.batch_sectors);
}

Result<void> CryptoDriver::convert_auth(crypto::CryptoDir dir, std::span<std::byte> data,
                                        std::span<std::byte> meta, SectorIndex first,
                                        std::span<bool> failed) {
  Impl& im = *impl_;
  const std::size_t ss = im.opts.sector_size;
  CRYPTMAP_CHECK(data.size() % ss == 0);
  const std::size_t count = data.size() / ss;
  if (count == 0) return ok();
  CRYPTMAP_CHECK(meta.size() % count == 0);
  const std::size_t mb = meta.size() / count;
  const bool verdicts = dir == crypto::CryptoDir::kDecrypt && !failed.empty();
  if (verdicts) CRYPTMAP_CHECK(failed.size() == count);
  // A decrypt with verdicts is one sector per request (dm-crypt's one AEAD request per sector):
  // a failed request names exactly its sector.
  const std::size_t batch = verdicts ? 1 : im.batch_sectors;
  Conversion conv;
  if (verdicts) {
    conv.verdicts = failed;
    conv.first = first.value;
  }
  const FromTo part{{}, data, first};
  return im.run(conv, dir, std::span(&part, 1), meta, mb, batch);
}

}  // namespace cryptmap::volume

#include "volume/engine/read_ahead.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/fmt/fmt.h>

#include "base/buffer_pool.h"
#include "base/check.h"
#include "base/clock.h"
#include "base/io_thread.h"
#include "base/locked_memory.h"
#include "base/mutex.h"
#include "volume/engine/sector_math.h"

namespace cryptmap::volume {
namespace {

enum class State : std::uint8_t { kEmpty, kLoading, kReady };

struct Window {
  std::byte* mem = nullptr;
  std::uint64_t first = 0;  // sectors [first, first + count)
  std::uint64_t count = 0;
  State state = State::kEmpty;
  std::uint64_t generation = 0;  // bumped whenever the window is (re)assigned or invalidated
  std::uint32_t readers = 0;     // pins
  std::uint64_t last_use = 0;
};

struct Stream {
  std::uint64_t next = ~std::uint64_t{0};  // byte offset where the last read of it ended
  std::uint32_t hits = 0;
  std::uint64_t last_use = 0;
};

constexpr std::size_t kStreams = 8;

}  // namespace

struct ReadAhead::Impl {
  const ReadAhead* owner = nullptr;
  Options opts;
  Loader loader;
  std::uint64_t window_sectors = 0;
  std::uint32_t stream_depth = 0;  // max(depth, min(stream_depth, windows - 1))
  LockedMemory mem;                // the windows' sectors: plaintext

  mutable Mutex mu;
  // One per window: it left kLoading (loaded, dropped) or was invalidated. Per window, so a
  // reader waiting for window k is not woken by the load of k + 1 finishing first.
  std::unique_ptr<CondVar[]> loaded_cv;
  CondVar work_cv;  // queue or stop
  // The vector is sized at create; a pinned window's mem/first/count are read without mu (see
  // copy()), everything else under it.
  std::vector<Window> windows GUARDED_BY(mu);
  Stream streams[kStreams] GUARDED_BY(mu);
  std::vector<std::uint32_t> queue GUARDED_BY(mu);  // ring of windows to load (each at most once)
  std::size_t q_head GUARDED_BY(mu) = 0;
  std::size_t q_size GUARDED_BY(mu) = 0;
  std::uint64_t clock GUARDED_BY(mu) = 0;
  bool stop GUARDED_BY(mu) = false;
  Stats stats GUARDED_BY(mu);
  std::uint32_t loading GUARDED_BY(mu) = 0;  // windows queued or being loaded
  std::vector<std::thread> threads;          // create and the destructor only

  bool overlaps(const Window& w, std::uint64_t s0, std::uint64_t s1) const {
    return w.state != State::kEmpty && w.first < s1 && s0 < w.first + w.count;
  }

  // Streams read from lately (at least the caller's): sequential ones (2 reads or more) whose
  // last read was within the last kLiveTicks ticks of the clock.
  static constexpr std::uint64_t kLiveTicks = 64;
  std::uint32_t live_streams() const REQUIRES(mu) {
    std::uint32_t n = 0;
    for (const Stream& c : streams) {
      if (c.hits >= 2 && clock - c.last_use <= kLiveTicks) ++n;
    }
    return std::max<std::uint32_t>(1, n);
  }

  // An idle window to reuse: not loading, not pinned; empty ones first, then the LRU one (a
  // consumed window, read to its end, counts as the least recently used: pin()).
  // Caller holds mu.
  Window* victim() REQUIRES(mu) {
    Window* best = nullptr;
    for (Window& w : windows) {
      if (w.state == State::kLoading || w.readers != 0) continue;
      if (w.state == State::kEmpty) return &w;
      if (best == nullptr || w.last_use < best->last_use) best = &w;
    }
    return best;
  }

  // Makes sure a window starting at sector `first` exists; false when none could be taken.
  // Counts in `queued` a load it queued (the caller wakes a loader for each after dropping mu,
  // so a loader does not wake only to block on it). Caller holds mu.
  bool want(std::uint64_t first, std::uint64_t count, std::uint32_t& queued) REQUIRES(mu) {
    for (Window& w : windows) {
      if (w.state != State::kEmpty && w.first == first && w.count >= count) {
        w.last_use = ++clock;
        return true;
      }
    }
    Window* w = victim();
    if (w == nullptr) return false;
    w->first = first;
    w->count = count;
    w->state = State::kLoading;
    ++w->generation;
    w->last_use = ++clock;
    queue[(q_head + q_size++) % queue.size()] = static_cast<std::uint32_t>(w - windows.data());
    ++loading;
    ++queued;
    return true;
  }

  void worker() EXCLUDES(mu) {
    (void)mark_io_thread();
    MutexLock lock(mu);
    while (true) {
      while (!stop && q_size == 0) work_cv.wait(lock);
      if (stop) return;
      const std::uint32_t i = queue[q_head];
      q_head = (q_head + 1) % queue.size();
      --q_size;
      Window& w = windows[i];
      const std::uint64_t gen = w.generation;
      const std::uint64_t first = w.first;
      const std::span<std::byte> dst(w.mem, w.count * opts.sector_size);
      lock.unlock();
      const std::uint64_t t0 = steady_ns();
      const bool loaded = loader(first, dst, LoadTicket(owner, i, gen));
      const std::uint64_t t1 = steady_ns();
      lock.lock();
      stats.load_ns += t1 - t0;
      --loading;
      if (loaded && w.generation == gen) {
        w.state = State::kReady;
        ++stats.loads;
      } else {
        ++stats.dropped;
        if (w.generation == gen) ++w.generation;  // a failed load: readers must not use it
        w.state = State::kEmpty;
      }
      // Notified without the mutex: a woken reader does not wake only to block on it.
      lock.unlock();
      loaded_cv[i].notify_all();
      lock.lock();
    }
  }
};

Result<std::unique_ptr<ReadAhead>> ReadAhead::create(const Options& options, Loader loader) {
  if (options.windows == 0 || options.window_bytes < options.sector_size || !loader) {
    return make_error(Errc::kInvalid, "read-ahead: needs windows of at least one sector");
  }
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  impl->loader = std::move(loader);
  impl->window_sectors = options.window_bytes / options.sector_size;
  impl->stream_depth = std::max(options.depth, std::min(options.stream_depth, options.windows - 1));
  CRYPTMAP_TRY(mem,
               LockedMemory::allocate(impl->window_sectors * options.sector_size * options.windows,
                                      MemoryLock::kBestEffort, "read-ahead windows"));
  impl->mem = std::move(mem);
  try {
    {
      MutexLock lock(impl->mu);  // before the workers exist: uncontended, keeps the rule uniform
      impl->windows.resize(options.windows);
      impl->queue.resize(options.windows);
      impl->loaded_cv = std::make_unique<CondVar[]>(options.windows);
      for (std::uint32_t i = 0; i < options.windows; ++i) {
        impl->windows[i].mem = impl->mem.data() + i * impl->window_sectors * options.sector_size;
      }
    }
    auto ra = std::unique_ptr<ReadAhead>(new ReadAhead(std::move(impl)));
    ra->impl_->owner = ra.get();
    for (unsigned t = 0; t < std::max(1u, options.threads); ++t) {
      Impl* im = ra->impl_.get();
      ra->impl_->threads.emplace_back([im] { im->worker(); });
    }
    return ra;
  } catch (const std::exception&) {
    return make_error(Errc::kNoSpace, "read-ahead: allocate windows and start threads");
  }
}

ReadAhead::ReadAhead(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

bool ReadAhead::LoadTicket::still_wanted() const {
  const Impl& im = *ra_->impl_;
  MutexLock lock(im.mu);
  return im.windows[window_].generation == generation_ && !im.stop;
}

bool ReadAhead::LoadTicket::others_loading() const {
  const Impl& im = *ra_->impl_;
  MutexLock lock(im.mu);
  return im.loading > 1;
}

ReadAhead::~ReadAhead() {
  if (!impl_) return;
  {
    MutexLock lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->work_cv.notify_all();
  for (std::thread& t : impl_->threads) t.join();
}

ReadAhead::Pin::Pin(Pin&& o) noexcept
    : ra_(std::exchange(o.ra_, nullptr)), window_(o.window_), generation_(o.generation_) {}

ReadAhead::Pin& ReadAhead::Pin::operator=(Pin&& o) noexcept {
  if (this != &o) {
    if (ra_ != nullptr) ra_->unpin(window_);
    ra_ = std::exchange(o.ra_, nullptr);
    window_ = o.window_;
    generation_ = o.generation_;
  }
  return *this;
}

ReadAhead::Pin::~Pin() {
  if (ra_ != nullptr) ra_->unpin(window_);
}

void ReadAhead::unpin(std::uint32_t window) noexcept {
  MutexLock lock(impl_->mu);
  CRYPTMAP_CHECK(impl_->windows[window].readers > 0);
  --impl_->windows[window].readers;
}

ReadAhead::Pin ReadAhead::pin(std::uint64_t s0, std::uint64_t s1) {
  Impl& im = *impl_;
  MutexLock lock(im.mu);
  for (std::uint32_t i = 0; i < im.windows.size(); ++i) {
    Window& w = im.windows[i];
    if (w.state == State::kEmpty || w.first > s0 || s1 > w.first + w.count) continue;
    const std::uint64_t gen = w.generation;
    // Loading: wait until it is loaded, dropped, or reassigned (never while holding a range).
    if (w.state == State::kLoading) {
      ++im.stats.waits;  // counted before it waits (a test's loader sees it)
      const std::uint64_t t0 = steady_ns();
      while (w.state == State::kLoading && w.generation == gen) im.loaded_cv[i].wait(lock);
      im.stats.wait_ns += steady_ns() - t0;
    } else {
      ++im.stats.hits;
    }
    if (w.state != State::kReady || w.generation != gen) {
      ++im.stats.misses;
      return {};
    }
    ++w.readers;
    // A read to the window's end consumed it (the stream goes on past it): once unpinned it is
    // the first window to reuse, before the ones loaded ahead that are not read yet.
    w.last_use = s1 >= w.first + w.count ? 0 : ++im.clock;
    Pin p;
    p.ra_ = this;
    p.window_ = i;
    p.generation_ = gen;
    return p;
  }
  ++im.stats.misses;
  return {};
}

std::string ReadAhead::Stats::summary() const {
  if (loads + dropped == 0) return {};
  const auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  const auto us_each = [](std::uint64_t ns, std::uint64_t n) {
    return static_cast<double>(ns) / static_cast<double>(std::max<std::uint64_t>(1, n)) / 1e3;
  };
  return fmt::format(
      "{} read(s) found their window loaded, {} waited for a loading one ({:.1f} ms, {:.0f} us "
      "each), {} had none; {} window(s) loaded, {} dropped, loaders busy {:.1f} ms ({:.0f} us "
      "per load)",
      hits, waits, ms(wait_ns), us_each(wait_ns, waits), misses, loads, dropped, ms(load_ns),
      us_each(load_ns, loads + dropped));
}

ReadAhead::Stats ReadAhead::stats() const {
  MutexLock lock(impl_->mu);
  return impl_->stats;
}

std::span<const std::byte> ReadAhead::view(const Pin& pin, std::uint64_t off, std::size_t len) {
  Impl& im = *impl_;
  const Window* wp = nullptr;
  {
    MutexLock lock(im.mu);
    wp = &im.windows[pin.window_];
    const Window& w = *wp;
    if (w.generation != pin.generation_ || w.state != State::kReady) return {};
  }
  // The caller's shared range keeps writers (the only invalidators) out, and the pin keeps the
  // window from being reused: its memory is stable without the mutex.
  const Window& w = *wp;
  const SectorGeometry g{im.opts.sector_size, 0, im.opts.volume_sectors * im.opts.sector_size};
  const std::uint64_t base = g.byte_of(w.first);
  CRYPTMAP_CHECK(off >= base && off + len <= base + g.bytes(w.count));
  return {w.mem + (off - base), len};
}

bool ReadAhead::copy(const Pin& pin, std::uint64_t off, std::span<std::byte> out) {
  if (out.empty()) return true;
  const std::span<const std::byte> v = view(pin, off, out.size());
  if (v.empty()) return false;
  std::memcpy(out.data(), v.data(), v.size());
  return true;
}

void ReadAhead::invalidate(std::uint64_t s0, std::uint64_t s1) {
  Impl& im = *impl_;
  MutexLock lock(im.mu);
  for (std::uint32_t i = 0; i < im.windows.size(); ++i) {
    Window& w = im.windows[i];
    if (!im.overlaps(w, s0, s1)) continue;
    ++w.generation;  // a loader in flight drops its result; pins fail their copy
    if (w.state == State::kReady) w.state = State::kEmpty;
    im.loaded_cv[i].notify_all();
  }
}

void ReadAhead::note(std::uint64_t off, std::uint64_t len) {
  Impl& im = *impl_;
  if (len == 0) return;
  const SectorGeometry g{im.opts.sector_size, 0, im.opts.volume_sectors * im.opts.sector_size};
  std::uint32_t queued = 0;  // loads queued: a loader woken for each, after mu is dropped
  {
    MutexLock lock(im.mu);
    Stream* s = nullptr;
    for (Stream& c : im.streams) {
      if (c.next == off) {
        s = &c;
        break;
      }
    }
    if (s == nullptr) {
      s = &im.streams[0];
      for (Stream& c : im.streams) {
        if (c.last_use < s->last_use) s = &c;
      }
      s->hits = 0;
    }
    ++s->hits;
    s->next = off + len;
    s->last_use = ++im.clock;
    if (s->hits < 2) return;
    // Cover the next `depth` requests of the same length, one window each (capped); a stream
    // that kept going for stream_depth reads gets up to stream_depth windows ahead, as many as
    // the windows allow beside the other live streams (each keeps the one it reads from): four
    // streams over eight windows stay at depth, or they would take each other's windows
    // before they are read.
    std::uint32_t depth = im.opts.depth;
    if (s->hits > im.opts.stream_depth) {
      const std::uint32_t share = static_cast<std::uint32_t>(im.windows.size()) / im.live_streams();
      depth = std::max(depth, std::min(im.stream_depth, share > 0 ? share - 1 : 0));
    }
    std::uint64_t at = off + len;
    for (std::uint32_t d = 0; d < depth; ++d) {
      const std::uint64_t first = g.sector_of(at);
      if (first >= im.opts.volume_sectors) break;
      const std::uint64_t end = std::min(g.covering(at, len).end, im.opts.volume_sectors);
      const std::uint64_t count = std::min<std::uint64_t>(end - first, im.window_sectors);
      if (count == 0 || !im.want(first, count, queued)) break;
      at = g.byte_of(first + count);
    }
  }
  for (std::uint32_t i = 0; i < queued; ++i) im.work_cv.notify_one();
}

}  // namespace cryptmap::volume

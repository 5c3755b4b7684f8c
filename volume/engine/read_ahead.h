// ReadAhead — sequential-stream detection and asynchronous prefetch of the volume's plaintext
// into a few fixed windows, so a sequential reader finds its next request already fetched and
// decrypted while it was busy with the previous one (the FUSE round trip, the copy out).
//
// Streams: a small table of recent read ends; a read that starts where one ended continues
// that stream. From the second read of a stream on, note() makes sure the next `depth` request
// lengths after it are covered by windows (loading or loaded), taking the least recently used
// idle windows. Prefetch threads (marked as I/O threads) run the caller's Loader for a window;
// the Loader takes the shared range itself, re-checks still_wanted() under it, and fetches.
//
// Consistency (the caller's side of the contract):
//  * A reader calls pin() BEFORE taking its range lock: pin() may wait for a window that is
//    loading, and a loader waits for its own range lock, so waiting while holding a range
//    could close a cycle reader -> loader -> writer -> reader.
//  * With its shared range held, the reader calls copy(): it copies only if the window was not
//    invalidated since pin() (a pinned window is never reused for other sectors); or view(),
//    which hands out the window's memory itself, valid while the pin and the range are held.
//  * A writer calls invalidate() for its sectors with its exclusive range held, before it
//    changes anything; a loader that was overtaken by that writer drops its result.
//  * The Loader must only fetch when the store holds the latest data of every sector it loads
//    (the engine checks that nothing in the cache is dirty).
//
// Memory: windows x window_bytes, one locked, non-dumpable mapping allocated at create and
// wiped at destruction; no allocation afterwards.
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"

namespace cryptmap::volume {

class ReadAhead {
 public:
  struct Options {
    std::uint32_t sector_size = 4096;
    std::uint64_t volume_sectors = 0;
    std::uint32_t windows = 8;
    std::size_t window_bytes = 1 << 20;  // rounded down to sectors; a request's look-ahead cap
    std::uint32_t depth = 2;             // requests ahead of the reader
    // Requests ahead of a stream that has gone on for more than this many reads (capped at
    // windows - 1; never below depth): a long sequential reader keeps several windows in
    // flight, so the loaders stay busy (no wake-up per window) and the store sees depth.
    std::uint32_t stream_depth = 4;
    unsigned threads = 2;  // prefetch threads
  };
  class LoadTicket;
  // Fills `dst` with the plaintext of sectors [first, first + dst.size()/ss) and returns true,
  // or returns false to drop the load (the foreground read then does the work and reports any
  // error). Runs on a prefetch thread; must call ticket.still_wanted() after taking its range
  // lock and give up when it says false.
  using Loader =
      std::function<bool(std::uint64_t first, std::span<std::byte> dst, const LoadTicket& ticket)>;

  static Result<std::unique_ptr<ReadAhead>> create(const Options& options, Loader loader);
  ~ReadAhead();  // stops and joins the prefetch threads; no reader may be running
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  class LoadTicket {
   public:
    bool still_wanted() const;  // false once the window was invalidated or we are stopping
    // Whether another window is queued or loading beside this one: the loader may then keep
    // its decryption on its own thread (the loads run in parallel already) instead of spreading
    // it over the crypto workers, a wake-up each.
    bool others_loading() const;

   private:
    friend class ReadAhead;
    LoadTicket(const ReadAhead* ra, std::uint32_t window, std::uint64_t generation)
        : ra_(ra), window_(window), generation_(generation) {}
    const ReadAhead* ra_;
    std::uint32_t window_;
    std::uint64_t generation_;
  };

  class Pin {
   public:
    Pin() = default;
    Pin(Pin&& o) noexcept;
    Pin& operator=(Pin&& o) noexcept;
    ~Pin();
    explicit operator bool() const noexcept { return ra_ != nullptr; }

   private:
    friend class ReadAhead;
    ReadAhead* ra_ = nullptr;
    std::uint32_t window_ = 0;
    std::uint64_t generation_ = 0;
  };

  // A loaded window holding all of sectors [s0, s1) (waiting while one is loading), or an
  // empty Pin. Call before taking the range lock.
  Pin pin(std::uint64_t s0, std::uint64_t s1);
  // Copies bytes [off, off + out.size()) of the volume from the pinned window; false (nothing
  // copied) when the window was invalidated since pin(). Call with the shared range held.
  bool copy(const Pin& pin, std::uint64_t off, std::span<std::byte> out);
  // Bytes [off, off + len) of the volume where the pinned window holds them, for a caller that
  // sends them on without copying (Volume::read_deliver); empty when the window was
  // invalidated since pin(). They stay valid and unchanged while the caller keeps both the pin
  // (the window is not reused) and its shared range (writers, the only invalidators, wait).
  std::span<const std::byte> view(const Pin& pin, std::uint64_t off, std::size_t len);
  // Drops every window overlapping sectors [s0, s1). Call with the exclusive range held.
  void invalidate(std::uint64_t s0, std::uint64_t s1);
  // Records a completed read [off, off + len) and schedules prefetches for its stream.
  void note(std::uint64_t off, std::uint64_t len);

  // What pin() found and what the loaders did, since create (where a sequential reader waits:
  // bench/README.md, rahmac). Counted under the mutex pin() and the loaders take anyway.
  struct Stats {
    std::uint64_t hits = 0;     // pin() found its window loaded
    std::uint64_t waits = 0;    // pin() found its window loading and waited for it
    std::uint64_t wait_ns = 0;  // time those waits took
    std::uint64_t misses = 0;   // no usable window (the request reads itself)
    std::uint64_t loads = 0;    // windows loaded
    std::uint64_t dropped = 0;  // loads dropped (overtaken by a writer, a failed block, stop)
    std::uint64_t load_ns = 0;  // time in the Loader, loaded or dropped

    // One line for a volume's close log: the counts, the time waited and the loaders' time (in
    // all and per wait / per load). Empty when no window was ever loaded or dropped.
    std::string summary() const;
  };
  Stats stats() const;

 private:
  struct Impl;
  explicit ReadAhead(std::unique_ptr<Impl> impl);
  void unpin(std::uint32_t window) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cryptmap::volume

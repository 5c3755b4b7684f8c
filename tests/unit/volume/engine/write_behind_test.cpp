// Write-behind (#13): a large write in write-back mode is acknowledged once it is encrypted and
// queued, and its store write completes later on a write-behind worker. What must hold, each
// checked against a hostile store: the write returns before its store write completed; reads
// and later writes of the range wait for it (the range stays held), so they see its data and
// the later write wins on the store; flush() waits for it before the sync; a failed one is kept
// dirty in the cache and retried, or, when the cache cannot hold it, reported by the next flush
// with one log line naming the volume and the range; an exhausted pool falls back to the inline
// write-through instead of waiting. Every test fails on the engine before write-behind (its
// large writes return only after their store writes, and report their errors themselves).
//
// The bounded waits (std::async + wait_for) only turn a hang into a failure; the short sleeps
// only give a wrong engine the time to show itself (a read or write reaching the store while
// an earlier write is held there): a correct engine passes whatever the timing.
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "base/error.h"
#include "tests/unit/volume/engine/volume_test_util.h"

namespace cryptmap::testing {
namespace {

using namespace std::chrono_literals;
using volume::EngineOptions;
using volume::VolumeOptions;

constexpr std::uint32_t kSs = 4096;
constexpr std::size_t kMiB = 1 << 20;

// Forwards to a MemBackingStore the test owns and can hold writes at a gate: while the gate is
// closed, a write overlapping [lo, hi) waits inside write_at before it reaches the memory.
// Records what happened: writes completed, syncs, and "violations" (a read or a write that
// reached the store over the gated range while a write was held there).
class GatedStore final : public volume::BackingStore {
 public:
  explicit GatedStore(volume::MemBackingStore& s) : s_(s) {}

  void close_gate(std::uint64_t lo, std::uint64_t hi) {
    std::lock_guard lock(mu_);
    lo_ = lo;
    hi_ = hi;
    closed_ = true;
  }
  // Notifies under the lock: a test may destroy the store (close the volume) as soon as the
  // held write goes on.
  void open_gate() {
    std::lock_guard lock(mu_);
    closed_ = false;
    cv_.notify_all();
  }
  // Bounded: false when no write reached the gate within 10 s.
  bool wait_held() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return held_ > 0; });
  }
  std::uint64_t writes_done() {
    std::lock_guard lock(mu_);
    return writes_done_;
  }
  int violations() {
    std::lock_guard lock(mu_);
    return violations_;
  }
  // Writes completed before the first sync ("w" per write, "s" per sync, in order).
  std::string events() {
    std::lock_guard lock(mu_);
    return events_;
  }
  std::function<void()> before_write;  // runs before every write (set before opening)

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    {
      std::lock_guard lock(mu_);
      if (holding_ > 0 && overlaps(off.value, out.size())) ++violations_;
    }
    return s_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (before_write) before_write();
    {
      std::unique_lock lock(mu_);
      if (holding_ > 0 && overlaps(off.value, in.size())) ++violations_;
      if (closed_ && overlaps(off.value, in.size())) {
        ++held_;
        ++holding_;
        cv_.notify_all();
        cv_.wait_for(lock, 30s, [&] { return !closed_; });
        --holding_;
      }
    }
    Result<void> r = s_.write_at(off, in);
    std::lock_guard lock(mu_);
    ++writes_done_;
    events_ += 'w';
    return r;
  }
  Result<void> sync() override {
    {
      std::lock_guard lock(mu_);
      events_ += 's';
    }
    return s_.sync();
  }
  Result<void> discard(ByteOffset off, std::uint64_t len) override { return s_.discard(off, len); }
  std::uint64_t size_bytes() const noexcept override { return s_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return s_.name(); }

 private:
  bool overlaps(std::uint64_t off, std::uint64_t len) const { return off < hi_ && lo_ < off + len; }

  volume::MemBackingStore& s_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t lo_ = 0, hi_ = 0;
  bool closed_ = false;
  int held_ = 0;     // writes that waited at the gate, ever
  int holding_ = 0;  // writes waiting at the gate now
  mutable int violations_ = 0;
  std::uint64_t writes_done_ = 0;
  std::string events_;
};

struct Opened {
  std::unique_ptr<volume::MemBackingStore> mem;
  GatedStore* store = nullptr;  // owned by the volume
  TestVolume t;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log;
};

Opened open_gated(std::uint64_t image, VolumeOptions opts, EngineOptions eo,
                  std::function<void()> before_write = {}) {
  Opened o;
  o.mem = std::make_unique<volume::MemBackingStore>(image, "mem:wbehind");
  auto store = std::make_unique<GatedStore>(*o.mem);
  store->before_write = std::move(before_write);
  o.store = store.get();
  o.log = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  o.t = open_test_volume_over(*o.mem, std::move(store), kSs, opts, eo,
                              std::make_shared<spdlog::logger>("wbehind", o.log));
  return o;
}

VolumeOptions no_age() {
  VolumeOptions opts;
  opts.flush_age_ms = 3600 * 1000;  // only flush() writes back
  return opts;
}

// Writes `a` at 0 with the store's gate closed over it: the write returns (written behind)
// while its store write is held, so its pool buffers and job slot stay taken. Call with
// ASSERT_NO_FATAL_FAILURE.
void write_behind_held_at_zero(Opened& o, std::span<const std::byte> a) {
  o.store->close_gate(0, a.size());
  auto wa = std::async(std::launch::async, [&] { return o.t.vol->write(ByteOffset{0}, a); });
  const bool a_returned = wa.wait_for(10s) == std::future_status::ready;
  if (!a_returned) o.store->open_gate();
  ASSERT_TRUE(a_returned) << "the first write waited for its store write";
  ASSERT_TRUE(wa.get());
  ASSERT_TRUE(o.store->wait_held());
}

// The write returns while its store write is held; a read of the range and a flush started
// then both wait for it: the read returns the new data and never reaches the store while the
// write is held, and the flush's sync comes after the write's pieces.
TEST(WriteBehind, AWriteReturnsBeforeItsStoreWriteAndReadsAndFlushWaitForIt) {
  Opened o = open_gated(8 * kMiB, no_age(), {});
  ASSERT_TRUE(o.t.vol);
  const auto d = pattern(kMiB, 1);
  o.store->close_gate(0, kMiB);
  auto w = std::async(std::launch::async, [&] { return o.t.vol->write(ByteOffset{0}, d); });
  const bool returned = w.wait_for(10s) == std::future_status::ready;
  if (!returned) o.store->open_gate();
  ASSERT_TRUE(returned) << "the write waited for its store write";
  auto wr = w.get();
  ASSERT_TRUE(wr) << wr.error().message();
  EXPECT_EQ(*wr, kMiB);
  ASSERT_TRUE(o.store->wait_held()) << "no store write was issued for the queued write";
  EXPECT_EQ(o.store->writes_done(), 0u) << "acknowledged only after its store write completed";

  std::vector<std::byte> back(kMiB);
  auto r = std::async(std::launch::async, [&] { return o.t.vol->read(ByteOffset{0}, back); });
  auto f = std::async(std::launch::async, [&] { return o.t.vol->flush(); });
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(o.store->events(), "") << "the flush synced while the write was still held";
  o.store->open_gate();
  ASSERT_TRUE(r.get());
  EXPECT_EQ(back, d) << "a read of the range did not see the queued write";
  ASSERT_TRUE(f.get());
  EXPECT_EQ(o.store->violations(), 0) << "a read reached the store while the write was held";
  // 1 MiB = 4 pieces of 256 KiB, one store write each, then the flush's sync.
  EXPECT_EQ(o.store->events(), "wwwws");
  EXPECT_EQ(image_plaintext(o.t, 0, kMiB), d);
}

// The store refuses the write-behind: the write was acknowledged, so its data must not be lost.
// It goes back into the cache as dirty blocks: reads see it, the flush's write-back retries it
// (and reports the store's error while it keeps failing), and once the store works it lands.
TEST(WriteBehind, AFailedWriteIsKeptDirtyInTheCacheAndRetriedUntilItLands) {
  Opened o = open_gated(8 * kMiB, no_age(), {});
  ASSERT_TRUE(o.t.vol);
  const auto d = pattern(kMiB, 2);
  o.mem->fail_writes(kMiB + 300 * 1024, 1);  // one sector of the second piece
  auto w = o.t.vol->write(ByteOffset{kMiB}, d);
  ASSERT_TRUE(w) << "a write-behind write reports its store error itself: " << w.error().message();
  auto f = o.t.vol->flush();
  ASSERT_FALSE(f) << "the flush did not report the failing store";
  EXPECT_EQ(to_errno(f.error()), EIO);
  std::vector<std::byte> back(kMiB);
  ASSERT_TRUE(o.t.vol->read(ByteOffset{kMiB}, back));
  EXPECT_EQ(back, d) << "the refused data must stay readable";
  o.mem->fail_writes(0, 0);
  auto f2 = o.t.vol->flush();
  ASSERT_TRUE(f2) << f2.error().message();
  EXPECT_EQ(image_plaintext(o.t, kMiB, kMiB), d) << "the refused data never landed";
}

// The cache cannot take the refused data back (it is smaller than the request): the data is
// lost, as in the kernel's page cache, and the next flush reports it once (errseq), after one
// log line naming the volume and the sector range.
TEST(WriteBehind, ALostWriteIsReportedOnceByTheNextFlushAndLoggedWithItsRange) {
  VolumeOptions opts = no_age();
  opts.cache_bytes = 8 * kSs;
  Opened o = open_gated(8 * kMiB, opts, {});
  ASSERT_TRUE(o.t.vol);
  const auto d = pattern(256 * 1024, 3);
  o.mem->fail_writes(2 * kMiB, 256 * 1024);
  auto w = o.t.vol->write(ByteOffset{2 * kMiB}, d);
  ASSERT_TRUE(w) << "a write-behind write reports its store error itself: " << w.error().message();
  // Once the store refused it (bounded wait), the store works again: only the latched error can
  // fail the flush.
  for (int i = 0; i < 10000 && o.store->writes_done() == 0; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(o.store->writes_done(), 1u) << "the write-behind never reached the store";
  o.mem->fail_writes(0, 0);
  auto f = o.t.vol->flush();
  ASSERT_FALSE(f) << "a lost write-behind was not reported by the next flush";
  EXPECT_EQ(to_errno(f.error()), EIO);
  EXPECT_NE(f.error().message().find("mem:wbehind"), std::string::npos) << f.error().message();
  EXPECT_TRUE(o.t.vol->flush()) << "the error is reported once";
  int lines = 0;
  for (const std::string& line : o.log->last_formatted()) {
    if (line.find("write-behind of sectors 512-575 on volume mem:wbehind failed") !=
        std::string::npos) {
      ++lines;
    }
  }
  EXPECT_EQ(lines, 1) << "one log line naming the volume and the range";
}

// The write-behind pool (two 64 KiB buffers here) is taken by a write whose store write is
// held; the next large write does not wait for a buffer: it is written through inline, so its
// data is in the store when it returns.
TEST(WriteBehind, WhenThePoolIsExhaustedALargeWriteIsWrittenThroughInline) {
  EngineOptions eo;
  eo.buffer_bytes = 64 * 1024;
  eo.write_behind_bytes = 128 * 1024;
  Opened o = open_gated(8 * kMiB, no_age(), eo);
  ASSERT_TRUE(o.t.vol);
  const auto a = pattern(128 * 1024, 4);
  const auto b = pattern(128 * 1024, 5);
  ASSERT_NO_FATAL_FAILURE(write_behind_held_at_zero(o, a));
  auto wb = std::async(std::launch::async, [&] { return o.t.vol->write(ByteOffset{kMiB}, b); });
  const bool b_returned = wb.wait_for(10s) == std::future_status::ready;
  if (b_returned) {
    EXPECT_TRUE(wb.get());
    EXPECT_EQ(image_plaintext(o.t, kMiB, b.size()), b)
        << "without a write-behind buffer the write must be written through before it returns";
  }
  o.store->open_gate();
  ASSERT_TRUE(b_returned) << "a write waited for the exhausted write-behind pool";
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_EQ(image_plaintext(o.t, 0, a.size()), a);
}

// A later write overlapping a held write-behind waits for it: it never reaches the store while
// the earlier one is held, and the store ends with the later write's bytes where they overlap.
TEST(WriteBehind, AnOverlappingLaterWriteWaitsAndWinsOnTheStore) {
  Opened o = open_gated(8 * kMiB, no_age(), {});
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 2 * kMiB);
  const auto a = pattern(kMiB, 6);
  const auto b = pattern(kMiB, 7);
  o.store->close_gate(0, 2 * kMiB);
  auto wa = std::async(std::launch::async, [&] { return o.t.vol->write(ByteOffset{0}, a); });
  const bool a_returned = wa.wait_for(10s) == std::future_status::ready;
  if (!a_returned) o.store->open_gate();
  ASSERT_TRUE(a_returned) << "the first write waited for its store write";
  ASSERT_TRUE(wa.get());
  std::memcpy(model.data(), a.data(), a.size());
  ASSERT_TRUE(o.store->wait_held());
  // Overlaps a's second half. Unaligned, so its edge sectors are read-modify-written.
  auto wb =
      std::async(std::launch::async, [&] { return o.t.vol->write(ByteOffset{kMiB / 2 + 100}, b); });
  std::this_thread::sleep_for(200ms);
  o.store->open_gate();
  ASSERT_TRUE(wb.get());
  std::memcpy(model.data() + kMiB / 2 + 100, b.data(), b.size());
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_EQ(o.store->violations(), 0) << "the later write reached the store first";
  EXPECT_EQ(image_plaintext(o.t, 0, 2 * kMiB), model);
}

// Many overlapping large writes in a row over a store that completes writes after random
// delays (two workers, so out of order where nothing orders them): every read sees the newest
// data and the image ends as the model says.
TEST(WriteBehind, OverlappingWritesOverASlowStoreApplyInOrder) {
  std::mutex rng_mu;
  std::mt19937_64 delays(42);
  Opened o = open_gated(4 * kMiB, no_age(), {}, [&] {
    std::uint64_t us;
    {
      std::lock_guard lock(rng_mu);
      us = delays() % 300;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(us));
  });
  ASSERT_TRUE(o.t.vol);
  std::vector<std::byte> model = image_plaintext(o.t, 0, 2 * kMiB);
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    const std::size_t len = 128 * 1024 + rng() % (384 * 1024);
    const std::uint64_t off = rng() % (2 * kMiB - len);
    const auto d = pattern(len, 100 + i);
    ASSERT_TRUE(o.t.vol->write(ByteOffset{off}, d)) << "write " << i;
    std::memcpy(model.data() + off, d.data(), len);
    if (i % 16 == 15) {
      std::vector<std::byte> back(2 * kMiB);
      ASSERT_TRUE(o.t.vol->read(ByteOffset{0}, back));
      ASSERT_EQ(back, model) << "after write " << i;
    }
  }
  ASSERT_TRUE(o.t.vol->flush());
  EXPECT_EQ(image_plaintext(o.t, 0, 2 * kMiB), model);
}

// Close waits for the queued write-behinds: what was acknowledged is in the image afterwards.
TEST(WriteBehind, ClosingTheVolumeFinishesQueuedWrites) {
  Opened o = open_gated(8 * kMiB, no_age(), {});
  ASSERT_TRUE(o.t.vol);
  const auto d = pattern(2 * kMiB, 8);
  o.store->close_gate(0, 2 * kMiB);
  auto w = std::async(std::launch::async, [&] { return o.t.vol->write(ByteOffset{0}, d); });
  const bool returned = w.wait_for(10s) == std::future_status::ready;
  if (!returned) o.store->open_gate();
  ASSERT_TRUE(returned) << "the write waited for its store write";
  ASSERT_TRUE(w.get());
  ASSERT_TRUE(o.store->wait_held());
  auto closed = std::async(std::launch::async, [&] { o.t.vol.reset(); });
  std::this_thread::sleep_for(100ms);
  o.store->open_gate();
  closed.get();
  EXPECT_EQ(image_plaintext(o.t, 0, d.size()), d);
}

// The counters the volume logs at close (issue #13: why write-behind gains little): a write
// held at the store is queued; the next one finds no free buffer and a request larger than the
// whole pool never fits, so both are written through inline; each reason is counted, and the
// one line at close says so and names the volume. A volume that never wrote behind says nothing.
TEST(WriteBehind, ItCountsQueuedAndInlineWritesAndLogsThemAtClose) {
  EngineOptions eo;
  eo.buffer_bytes = 64 * 1024;
  eo.write_behind_bytes = 128 * 1024;  // two buffers, two job slots
  Opened o = open_gated(8 * kMiB, no_age(), eo);
  ASSERT_TRUE(o.t.vol);
  const auto a = pattern(128 * 1024, 9);
  ASSERT_NO_FATAL_FAILURE(write_behind_held_at_zero(o, a));
  auto wb = std::async(std::launch::async,
                       [&] { return o.t.vol->write(ByteOffset{kMiB}, pattern(128 * 1024, 10)); });
  const bool b_returned = wb.wait_for(10s) == std::future_status::ready;
  o.store->open_gate();
  ASSERT_TRUE(b_returned) << "a write waited for the exhausted write-behind pool";
  ASSERT_TRUE(wb.get());
  ASSERT_TRUE(o.t.vol->write(ByteOffset{2 * kMiB}, pattern(256 * 1024, 11)));  // > the pool
  ASSERT_TRUE(o.t.vol->flush());
  o.t.vol.reset();
  int lines = 0;
  for (const std::string& line : o.log->last_formatted()) {
    if (line.find("write-behind on volume mem:wbehind: 1 request(s) queued, 2 written through "
                  "inline (0 with no free job slot, 2 with no free buffer), 0 queued behind an "
                  "earlier one; per queued request: merge and encryption ") != std::string::npos) {
      ++lines;
    }
  }
  EXPECT_EQ(lines, 1) << "one line at close with the counts";

  Opened quiet = open_gated(8 * kMiB, no_age(), {});
  ASSERT_TRUE(quiet.t.vol);
  ASSERT_TRUE(quiet.t.vol->write(ByteOffset{0}, pattern(4096, 12)));  // cached, not behind
  quiet.t.vol.reset();
  for (const std::string& line : quiet.log->last_formatted()) {
    EXPECT_EQ(line.find("write-behind on volume"), std::string::npos) << line;
  }
}

}  // namespace
}  // namespace cryptmap::testing

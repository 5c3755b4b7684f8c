// Read-ahead: sequential streams are served from windows loaded by the prefetch threads, writes
// invalidate them, and under concurrent writers every read returns, for each sector, a version
// that was current at some moment during the read (never an older one).
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "tests/unit/volume/engine/volume_test_util.h"
#include "volume/engine/read_ahead.h"

namespace cryptmap::testing {
namespace {

using volume::EngineOptions;
using volume::VolumeOptions;

// Counts the store reads issued by one thread (the test's) through a BorrowedStore's hook.
struct ReadCounter {
  std::atomic<std::thread::id> watched{};
  std::atomic<std::uint64_t> reads{0};
  std::function<void(std::uint64_t, bool)> hook() {
    return [this](std::uint64_t, bool write) {
      if (!write && std::this_thread::get_id() == watched.load()) reads.fetch_add(1);
    };
  }
};

struct RaVolume {
  std::unique_ptr<volume::MemBackingStore> mem;  // outlives vol (declared first)
  std::unique_ptr<ReadCounter> counter = std::make_unique<ReadCounter>();
  std::unique_ptr<volume::Volume> vol;
  TestVolume check;  // for image_plaintext
};

RaVolume open_ra(std::uint32_t ss, std::uint64_t bytes, VolumeOptions opts, EngineOptions eo) {
  RaVolume r;
  r.mem = std::make_unique<volume::MemBackingStore>(bytes, "mem:ra");
  auto store = std::make_unique<BorrowedStore>(*r.mem);
  store->on_io = r.counter->hook();
  const std::uint64_t key = 0xC0FFEE ^ ss;
  auto v = volume::open_volume_with_engine(test_layout(ss, 0),
                                           std::make_unique<FakeSectorCipher>(ss, key), {},
                                           std::move(store), opts, eo, nullptr);
  if (!v) {
    ADD_FAILURE() << v.error().message();
    return r;
  }
  r.vol = std::move(*v);
  r.check.store = r.mem.get();
  r.check.ss = ss;
  r.check.key = key;
  return r;
}

// ReadAhead::stats() counts what pin() found (a loaded window, a loading one it waited for,
// none) and what the loaders did (loaded, dropped, their time): the numbers integrity volumes
// log at close to show where a sequential reader waits. A loader held until the reader is
// counted as waiting makes the wait certain, without timing.
TEST(ReadAhead, StatsCountHitsWaitsMissesLoadsAndDrops) {
  std::atomic<const volume::ReadAhead*> self{nullptr};
  std::atomic<bool> hold{true};
  volume::ReadAhead::Options o;
  o.sector_size = 4096;
  o.volume_sectors = 64;
  o.windows = 4;
  o.window_bytes = 4096;
  o.depth = 2;
  o.threads = 1;
  auto ra = volume::ReadAhead::create(
      o, [&](std::uint64_t first, std::span<std::byte> dst, const volume::ReadAhead::LoadTicket&) {
        // The first window (sector 2) loads only once a reader waits for it.
        if (first == 2)
          while (hold.load() && self.load()->stats().waits == 0) std::this_thread::yield();
        std::memset(dst.data(), static_cast<int>(first), dst.size());
        return first != 4;  // sector 4's load fails: dropped
      });
  ASSERT_TRUE(ra) << ra.error().message();
  self = ra->get();
  auto wait_for = [&](auto done) {
    while (!done((*ra)->stats())) std::this_thread::yield();
  };
  EXPECT_FALSE((*ra)->pin(0, 1));  // nothing loaded: a miss
  (*ra)->note(0, 4096);
  (*ra)->note(4096, 4096);  // the stream's second read: windows at sectors 2 and 3
  std::thread reader([&] {
    auto p = (*ra)->pin(2, 3);
    EXPECT_TRUE(p);
    std::array<std::byte, 4096> b{};
    EXPECT_TRUE((*ra)->copy(p, 2 * 4096, b));
    EXPECT_EQ(b[0], std::byte{2});
  });
  reader.join();
  wait_for([](const auto& s) { return s.loads == 2; });
  EXPECT_TRUE((*ra)->pin(3, 4));  // loaded: a hit
  (*ra)->invalidate(3, 4);
  EXPECT_FALSE((*ra)->pin(3, 4));  // invalidated: a miss
  (*ra)->note(2 * 4096, 4096);     // windows at sectors 3 (again) and 4 (fails)
  wait_for([](const auto& s) { return s.dropped == 1 && s.loads == 3; });
  hold = false;
  const volume::ReadAhead::Stats s = (*ra)->stats();
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.waits, 1u);
  EXPECT_GT(s.wait_ns, 0u);
  EXPECT_EQ(s.misses, 2u);
  EXPECT_EQ(s.loads, 3u);
  EXPECT_EQ(s.dropped, 1u);
  EXPECT_GT(s.load_ns, 0u);
}

TEST(ReadAhead, SequentialReadsAreServedFromPrefetchedWindows) {
  for (const std::uint64_t chunk : {std::uint64_t{64} << 10, std::uint64_t{1} << 20}) {
    SCOPED_TRACE(chunk);
    constexpr std::uint64_t kBytes = 32ull << 20;
    RaVolume r = open_ra(4096, kBytes, {}, {});
    ASSERT_TRUE(r.vol);
    const std::vector<std::byte> model = image_plaintext(r.check, 0, kBytes);
    r.counter->watched = std::this_thread::get_id();
    std::vector<std::byte> buf(chunk);
    std::uint64_t late_reads = 0;
    for (std::uint64_t off = 0, i = 0; off + chunk <= kBytes; off += chunk, ++i) {
      const std::uint64_t before = r.counter->reads.load();
      ASSERT_EQ(*r.vol->read(ByteOffset{off}, buf), chunk);
      ASSERT_EQ(std::memcmp(buf.data(), model.data() + off, chunk), 0) << off;
      if (i >= 2) late_reads += r.counter->reads.load() - before;
    }
    EXPECT_EQ(late_reads, 0u) << "from the third sequential read on, the reader itself should "
                                 "never have to go to the store";
  }
}

// A stream that went on for more than stream_depth reads gets stream_depth windows ahead of
// it (the loaders keep busy and the store sees several windows in flight), a short one only
// depth. After ten sequential 1 MiB reads the prefetch threads must read the window four
// requests ahead of the last one; with depth 2 alone they never go past two. Fails when the
// stream depth is not applied (the wait for the fourth window then gives up).
TEST(ReadAhead, ALongStreamKeepsStreamDepthWindowsAhead) {
  constexpr std::uint64_t kBytes = 32ull << 20, kChunk = 1 << 20, kReads = 10;
  struct Seen {
    std::atomic<std::thread::id> reader{};
    std::atomic<std::uint64_t> furthest{0};  // end of the furthest prefetch read, + 1
  };
  auto seen = std::make_unique<Seen>();
  volume::MemBackingStore mem(kBytes, "mem:ra");
  auto store = std::make_unique<BorrowedStore>(mem);
  store->on_io = [s = seen.get()](std::uint64_t off, bool write) {
    if (write || std::this_thread::get_id() == s->reader.load()) return;
    std::uint64_t cur = s->furthest.load();
    while (off + 1 > cur && !s->furthest.compare_exchange_weak(cur, off + 1)) {
    }
  };
  EngineOptions eo;
  eo.read_ahead_depth = 2;
  eo.read_ahead_stream_depth = 4;
  auto v = volume::open_volume_with_engine(test_layout(4096, 0),
                                           std::make_unique<FakeSectorCipher>(4096, 5), {},
                                           std::move(store), {}, eo, nullptr);
  ASSERT_TRUE(v) << v.error().message();
  seen->reader = std::this_thread::get_id();
  std::vector<std::byte> buf(kChunk);
  for (std::uint64_t i = 0; i < kReads; ++i) {
    ASSERT_EQ(*(*v)->read(ByteOffset{i * kChunk}, buf), kChunk);
  }
  // The last read noted [9, 10) MiB: windows 10..13 MiB are wanted. Wait (bounded, generously:
  // this is about which windows, not how fast) until a prefetch thread read into the fourth.
  const std::uint64_t fourth = (kReads + 3) * kChunk;
  for (int i = 0; i < 3000 && seen->furthest.load() <= fourth; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_GT(seen->furthest.load(), fourth)
      << "no window was loaded four requests ahead of a ten-read stream";
  EXPECT_LE(seen->furthest.load(), (kReads + 4) * kChunk) << "loaded past the stream depth";
}

// Four long streams read in turn share the eight windows: each keeps depth (2) windows ahead,
// not stream_depth (4), or the streams take each other's loaded windows before they are read
// and the readers go to the store themselves. From the third round on no read may reach the
// store on the reader's thread. Fails when every long stream gets stream_depth regardless of
// the others.
TEST(ReadAhead, LongStreamsSharingTheWindowsKeepTheirWindowsUntilRead) {
  constexpr std::uint64_t kChunk = 1 << 20, kRegion = 16 * kChunk, kStreams = 4;
  constexpr std::uint64_t kBytes = kStreams * kRegion, kRounds = 14;
  RaVolume r = open_ra(4096, kBytes, {}, {});
  ASSERT_TRUE(r.vol);
  const std::vector<std::byte> model = image_plaintext(r.check, 0, kBytes);
  r.counter->watched = std::this_thread::get_id();
  std::vector<std::byte> buf(kChunk);
  std::uint64_t late_reads = 0;
  for (std::uint64_t i = 0; i < kRounds; ++i) {
    for (std::uint64_t st = 0; st < kStreams; ++st) {
      const std::uint64_t off = st * kRegion + i * kChunk;
      const std::uint64_t before = r.counter->reads.load();
      ASSERT_EQ(*r.vol->read(ByteOffset{off}, buf), kChunk);
      ASSERT_EQ(std::memcmp(buf.data(), model.data() + off, kChunk), 0) << off;
      if (i >= 2) late_reads += r.counter->reads.load() - before;
    }
  }
  EXPECT_EQ(late_reads, 0u) << "a stream's loaded window was taken before it was read";
}

TEST(ReadAhead, WritesIntoAPrefetchedWindowAreSeenByTheNextRead) {
  for (const std::uint64_t cache : {std::uint64_t{0}, std::uint64_t{4} << 20}) {
    SCOPED_TRACE(cache);
    constexpr std::uint64_t kBytes = 8ull << 20, kChunk = 256 << 10;
    VolumeOptions opts;
    opts.cache_bytes = cache;
    RaVolume r = open_ra(512, kBytes, opts, {});
    ASSERT_TRUE(r.vol);
    std::vector<std::byte> model = image_plaintext(r.check, 0, kBytes);
    std::vector<std::byte> buf(kChunk);
    for (std::uint64_t off = 0, i = 0; off + kChunk <= kBytes; off += kChunk, ++i) {
      // The next two chunks are being (or have been) prefetched: change bytes in both.
      const std::uint64_t w = off + kChunk + (i * 7919) % (2 * kChunk - 600);
      if (w + 600 <= kBytes) {
        const auto d = pattern(600, 100 + i);
        ASSERT_TRUE(r.vol->write(ByteOffset{w}, d));
        std::memcpy(model.data() + w, d.data(), d.size());
      }
      ASSERT_EQ(*r.vol->read(ByteOffset{off}, buf), kChunk);
      ASSERT_EQ(std::memcmp(buf.data(), model.data() + off, kChunk), 0) << "stale data at " << off;
    }
    ASSERT_TRUE(r.vol->flush());
    EXPECT_TRUE(image_plaintext(r.check, 0, kBytes) == model);
  }
}

// Sector s holds (s, version) stamps. A writer bumps versions of random sectors; sequential
// readers check that each sector they read is at least the version completed before their read
// started and at most the version started before it ended.
TEST(ReadAhead, ConcurrentSequentialReadersNeverSeeAVersionOlderThanTheirStart) {
  constexpr std::uint32_t kSs = 4096;
  constexpr std::uint64_t kSectors = 512;  // 2 MiB
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kRounds = 3;
#else
  constexpr int kRounds = 30;
#endif
  for (const std::uint64_t cache : {std::uint64_t{0}, std::uint64_t{512} << 10}) {
    SCOPED_TRACE(cache);
    VolumeOptions opts;
    opts.cache_bytes = cache;
    opts.flush_age_ms = 2;
    EngineOptions eo;
    eo.read_ahead_bytes = 64 << 10;
    eo.read_ahead_windows = 6;
    RaVolume r = open_ra(kSs, kSectors * kSs, opts, eo);
    ASSERT_TRUE(r.vol);
    std::vector<std::atomic<std::uint64_t>> started(kSectors), completed(kSectors);
    auto stamp = [&](std::uint64_t s, std::uint64_t v) {
      std::vector<std::byte> b(kSs);
      for (std::size_t k = 0; k + 16 <= kSs; k += 16) {
        std::memcpy(b.data() + k, &s, 8);
        std::memcpy(b.data() + k + 8, &v, 8);
      }
      return b;
    };
    for (std::uint64_t s = 0; s < kSectors; ++s) {
      ASSERT_TRUE(r.vol->write(ByteOffset{s * kSs}, stamp(s, 0)));
    }
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> bad{0}, reads{0};
    std::thread writer([&] {
      std::mt19937_64 rng(7);
      std::vector<std::uint64_t> version(kSectors, 0);
      while (!stop) {
        const std::uint64_t s = rng() % kSectors;
        const std::uint64_t v = ++version[s];
        started[s].store(v);
        if (!r.vol->write(ByteOffset{s * kSs}, stamp(s, v))) ++bad;
        completed[s].store(v);
      }
    });
    std::vector<std::thread> readers;
    for (int t = 0; t < 3; ++t) {
      readers.emplace_back([&, t] {
        const std::uint64_t chunk = (16 + 16 * t) * 1024;  // 16, 32, 48 KiB: windows misalign
        std::vector<std::byte> buf(chunk);
        std::vector<std::uint64_t> lo(chunk / kSs);
        for (int round = 0; round < kRounds; ++round) {
          for (std::uint64_t off = 0; off + chunk <= kSectors * kSs; off += chunk) {
            const std::uint64_t s0 = off / kSs;
            for (std::size_t k = 0; k < lo.size(); ++k) lo[k] = completed[s0 + k].load();
            auto res = r.vol->read(ByteOffset{off}, buf);
            ++reads;
            if (!res || *res != chunk) {
              ++bad;
              continue;
            }
            for (std::size_t k = 0; k < lo.size(); ++k) {
              std::uint64_t s = 0, v = 0;
              std::memcpy(&s, buf.data() + k * kSs, 8);
              std::memcpy(&v, buf.data() + k * kSs + 8, 8);
              const std::uint64_t hi = started[s0 + k].load();
              if (s != s0 + k || v < lo[k] || v > hi) ++bad;
            }
          }
        }
      });
    }
    for (auto& th : readers) th.join();
    stop = true;
    writer.join();
    EXPECT_EQ(bad.load(), 0u) << "stale or torn sectors out of " << reads.load() << " reads";
  }
}

}  // namespace
}  // namespace cryptmap::testing

namespace cryptmap::testing {
namespace {

// --perf-no_read_workqueue: no read-ahead threads, and decryption only on the reader's thread.
class ThreadRecordingEngine final : public crypto::CryptoEngine {
 public:
  explicit ThreadRecordingEngine(const crypto::SectorCipher& c) : c_(c) {}
  crypto::SubmitStatus submit(crypto::CryptoRequest* r) override {
    if (r->dir == crypto::CryptoDir::kDecrypt && std::this_thread::get_id() != reader) {
      foreign_decrypts.fetch_add(1);
    }
    r->status = r->dir == crypto::CryptoDir::kEncrypt ? c_.encrypt(r->run) : c_.decrypt(r->run);
    return crypto::SubmitStatus::kDone;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "thread-recording"; }
  std::thread::id reader;
  std::atomic<std::uint64_t> foreign_decrypts{0};

 private:
  const crypto::SectorCipher& c_;
};

TEST(ReadAhead, NoReadWorkqueueReadsAndDecryptsOnlyOnTheReadersThread) {
  for (const bool no_read_wq : {false, true}) {
    SCOPED_TRACE(no_read_wq);
    constexpr std::uint64_t kBytes = 16ull << 20, kChunk = 1 << 20;
    volume::MemBackingStore mem(kBytes, "mem:ra");
    ReadCounter counter;
    auto store = std::make_unique<BorrowedStore>(mem);
    store->on_io = counter.hook();
    ThreadRecordingEngine* engine = nullptr;
    VolumeOptions opts;
    opts.no_read_workqueue = no_read_wq;
    EngineOptions eo;
    eo.threads = 2;
    eo.parallel_threshold_bytes = 8192;
    auto v = volume::open_volume_with_engine(
        test_layout(4096, 0), std::make_unique<FakeSectorCipher>(4096, 1),
        [&](const crypto::SectorCipher& c) {
          auto e = std::make_unique<ThreadRecordingEngine>(c);
          engine = e.get();
          return e;
        },
        std::move(store), opts, eo, nullptr);
    ASSERT_TRUE(v) << v.error().message();
    engine->reader = std::this_thread::get_id();
    counter.watched = std::this_thread::get_id();
    std::vector<std::byte> buf(kChunk);
    std::uint64_t late_reads = 0;
    for (std::uint64_t off = 0, i = 0; off + kChunk <= kBytes; off += kChunk, ++i) {
      const std::uint64_t before = counter.reads.load();
      ASSERT_EQ(*(*v)->read(ByteOffset{off}, buf), kChunk);
      if (i >= 2) late_reads += counter.reads.load() - before;
    }
    if (no_read_wq) {
      EXPECT_EQ(engine->foreign_decrypts.load(), 0u) << "a decryption ran on another thread";
      EXPECT_GT(late_reads, 0u) << "sequential reads were read ahead by another thread";
    } else {
      EXPECT_GT(engine->foreign_decrypts.load(), 0u) << "the default fans decryption out";
    }
  }
}

// Volume::read_deliver hands a request a loaded window holds to the caller (the FUSE reply) from
// the window's own memory. While the reply is being sent, the window must stay as it was:
// other streams recycle every window that is not pinned (here: several times over), and a
// writer of the same range must wait (it would invalidate the window, and the next load into it
// would overwrite the bytes being sent). Fails if a delivered window can be reused, or written
// under, before `deliver` returns.
TEST(ReadAhead, AWindowBeingDeliveredIsNeitherRecycledNorWrittenUnder) {
  constexpr std::uint64_t kBytes = 48ull << 20, kChunk = 1 << 20, kAt = 2 * kChunk;
  RaVolume r = open_ra(4096, kBytes, {}, {});
  ASSERT_TRUE(r.vol);
  const std::vector<std::byte> model = image_plaintext(r.check, 0, kBytes);
  std::vector<std::byte> buf(kChunk);
  // Two sequential reads make a stream: the windows of the next two requests are loaded.
  ASSERT_EQ(*r.vol->read(ByteOffset{0}, buf), kChunk);
  ASSERT_EQ(*r.vol->read(ByteOffset{kChunk}, buf), kChunk);

  const std::vector<std::byte> fresh = pattern(kChunk, 77);
  std::thread writer;
  std::atomic<bool> wrote{false};
  bool from_window = false, unchanged_after_turnover = false;
  int calls = 0;
  std::vector<std::byte> seen;
  auto reply = [&](std::span<const std::byte> data) {
    ++calls;
    from_window = data.size() == kChunk &&
                  (data.data() < buf.data() || data.data() >= buf.data() + buf.size());
    // A writer of the same range: it must wait until this reply has been sent.
    writer = std::thread([&] {
      EXPECT_TRUE(r.vol->write(ByteOffset{kAt}, fresh));
      wrote = true;
    });
    // Other streams take every window that is free, many times over.
    std::thread turnover([&] {
      std::vector<std::byte> b(kChunk);
      for (std::uint64_t base : {8ull << 20, 18ull << 20, 28ull << 20, 38ull << 20}) {
        for (std::uint64_t i = 0; i < 8; ++i) {
          EXPECT_EQ(*r.vol->read(ByteOffset{base + i * kChunk}, b), kChunk);
        }
      }
    });
    turnover.join();
    unchanged_after_turnover = std::memcmp(data.data(), model.data() + kAt,
                                           std::min<std::size_t>(data.size(), kChunk)) == 0;
    seen.assign(data.begin(), data.end());
    EXPECT_FALSE(wrote.load()) << "a write of the range completed during the reply";
  };
  Result<std::size_t> n = r.vol->read_deliver(
      ByteOffset{kAt}, buf, [&reply](std::span<const std::byte> data) { reply(data); });
  if (writer.joinable()) writer.join();
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, kChunk);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(from_window) << "the request was not delivered from a read-ahead window";
  EXPECT_TRUE(unchanged_after_turnover) << "the window changed while its reply was being sent";
  ASSERT_EQ(seen.size(), kChunk);
  EXPECT_EQ(std::memcmp(seen.data(), model.data() + kAt, kChunk), 0);
  // The write went in after the reply: the next read (delivered again) sees it.
  std::vector<std::byte> again;
  ASSERT_TRUE(r.vol->read_deliver(ByteOffset{kAt}, buf, [&](std::span<const std::byte> d) {
    again.assign(d.begin(), d.end());
  }));
  EXPECT_TRUE(again == fresh) << "stale data after the write";
}

// Without a window (no stream yet), read_deliver reads into the caller's buffer and delivers
// from there, once; past the end it delivers an empty span.
TEST(ReadAhead, ReadDeliverWithoutAWindowDeliversTheCallersBuffer) {
  constexpr std::uint64_t kBytes = 4ull << 20;
  RaVolume r = open_ra(4096, kBytes, {}, {});
  ASSERT_TRUE(r.vol);
  const std::vector<std::byte> model = image_plaintext(r.check, 0, kBytes);
  std::vector<std::byte> buf(64 << 10);
  int calls = 0;
  ASSERT_TRUE(r.vol->read_deliver(ByteOffset{12345}, buf, [&](std::span<const std::byte> d) {
    ++calls;
    EXPECT_EQ(d.data(), buf.data());
    EXPECT_EQ(d.size(), buf.size());
    EXPECT_EQ(std::memcmp(d.data(), model.data() + 12345, d.size()), 0);
  }));
  Result<std::size_t> end =
      r.vol->read_deliver(ByteOffset{kBytes - 100}, buf, [&](std::span<const std::byte> d) {
        ++calls;
        EXPECT_EQ(d.size(), 100u);
      });
  ASSERT_TRUE(end);
  EXPECT_EQ(*end, 100u);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace cryptmap::testing

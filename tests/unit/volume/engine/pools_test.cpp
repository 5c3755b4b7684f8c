// RangeLock: ordering, sharing, exhaustion waits (never fails). BufferPool: tests/unit/base.
// CryptoDriver::convert: every sector converted exactly once, small conversions and force_inline
// ones on the calling thread, large ones in per-core slices.
// CryptoDriver::convert_on_caller: nothing leaves the calling thread.
// CryptoDriver::encrypt_from: out of place equals convert() in place, through an engine that
// reads the source itself and through one that does not (the driver copies for it), in one part
// and in several parts spread over the workers as one conversion.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "crypto/crypto_engine.h"
#include "tests/unit/volume/engine/fake_crypto.h"
#include "volume/engine/crypto_driver.h"
#include "volume/engine/range_lock.h"

namespace cryptmap::volume {
namespace {

TEST(RangeLock, SharedRangesOverlapExclusiveOnesDoNot) {
  RangeLock l(8);
  auto a = l.acquire(0, 10, false);
  auto b = l.try_acquire(5, 15, false);
  EXPECT_TRUE(b) << "shared + shared overlap";
  EXPECT_FALSE(l.try_acquire(9, 12, true)) << "exclusive overlapping shared";
  EXPECT_TRUE(l.try_acquire(15, 17, true)) << "adjacent is not overlapping";
  a.release();
  b.release();
  auto c = l.try_acquire(0, 100, true);
  EXPECT_TRUE(c);
  EXPECT_FALSE(l.try_acquire(50, 51, false));
}

TEST(RangeLock, OverlappingExclusiveRequestsRunInArrivalOrder) {
  RangeLock l(16);
  std::vector<int> order;
  std::mutex mu;
  auto first = l.acquire(0, 8, true);
  std::vector<std::thread> ts;
  for (int i = 0; i < 5; ++i) {
    ts.emplace_back([&, i] {
      auto g = l.acquire(static_cast<std::uint64_t>(i), static_cast<std::uint64_t>(i) + 4, true);
      std::lock_guard lock(mu);
      order.push_back(i);
    });
    // Make arrival order deterministic: wait until thread i is queued (holds a ticket).
    while (l.tickets() < 2 + static_cast<std::size_t>(i)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  first.release();
  for (auto& t : ts) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(RangeLock, AdmissionWaitsWhenEverySlotIsTaken) {
  RangeLock l(2);
  auto a = l.acquire(0, 1, false);
  auto b = l.acquire(10, 11, false);
  EXPECT_FALSE(l.try_acquire(20, 21, false));
  std::atomic<bool> got{false};
  std::thread t([&] {
    auto c = l.acquire(20, 21, false);
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_FALSE(got.load());
  a.release();
  t.join();
  EXPECT_TRUE(got.load());
}

// An engine that completes every request on the thread that submits it and counts, per sector,
// how often it was converted and whether a thread other than `caller` did it.
class CountingEngine final : public crypto::CryptoEngine {
 public:
  explicit CountingEngine(std::size_t sectors) : runs_(sectors), elsewhere_(sectors) {}
  crypto::SubmitStatus submit(crypto::CryptoRequest* r) override {
    const bool away = std::this_thread::get_id() != caller;
    const std::size_t n = r->run.data.size() / kSs;
    for (std::size_t i = 0; i < n; ++i) {
      runs_[r->run.first.value + i].fetch_add(1);
      if (away) elsewhere_[r->run.first.value + i].fetch_add(1);
    }
    return crypto::SubmitStatus::kDone;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "counting"; }
  static constexpr std::size_t kSs = 512;
  std::thread::id caller = std::this_thread::get_id();
  int runs(std::size_t s) const { return runs_[s].load(); }
  int elsewhere(std::size_t s) const { return elsewhere_[s].load(); }

 private:
  std::vector<std::atomic<int>> runs_, elsewhere_;
};

TEST(CryptoDriver, ConvertsEverySectorOnceOnTheCallerWhenSmallOrInline) {
  constexpr std::size_t kSs = CountingEngine::kSs;
  for (bool force_inline : {false, true}) {
    // Below the threshold (inline by gocryptfs's rule), at it and far above (per-core slices).
    for (std::size_t sectors : {std::size_t{7}, std::size_t{256}, std::size_t{4096}}) {
      CountingEngine engine(sectors);
      CryptoDriverOptions o;
      o.sector_size = kSs;
      o.batch_bytes = 8 * kSs;
      o.parallel_threshold_bytes = 256 * kSs;
      o.threads = 4;
      o.force_inline = force_inline;
      auto d = CryptoDriver::create(engine, o);
      ASSERT_TRUE(d);
      std::vector<std::byte> data(sectors * kSs);
      ASSERT_TRUE((*d)->convert(crypto::CryptoDir::kEncrypt, data, SectorIndex{0}));
      int away = 0;
      for (std::size_t s = 0; s < sectors; ++s) {
        ASSERT_EQ(engine.runs(s), 1) << "sector " << s << " of " << sectors;
        away += engine.elsewhere(s);
      }
      if (force_inline || sectors * kSs < o.parallel_threshold_bytes) {
        EXPECT_EQ(away, 0) << sectors << " sectors, force_inline " << force_inline
                           << ": a batch left the calling thread";
      }
    }
  }
}

// convert_on_caller: a conversion far above the parallel threshold, with workers to spread it
// over, runs every batch on the calling thread and gives what convert() gives. Fails when it
// fans out (a read-ahead loader beside others would pay a worker's wake-up and the join's).
class CallerRecordingEngine final : public crypto::CryptoEngine {
 public:
  explicit CallerRecordingEngine(const crypto::SectorCipher& c) : c_(c) {}
  // The caller's first batch of each conversion waits (up to a second) for a batch on another
  // thread, so a conversion that fans out shows it whatever the scheduler does.
  crypto::SubmitStatus submit(crypto::CryptoRequest* r) override {
    if (std::this_thread::get_id() != caller) {
      elsewhere.fetch_add(1);
    } else if (!held.exchange(true)) {
      for (int i = 0; i < 1000 && elsewhere.load() == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    r->status = r->dir == crypto::CryptoDir::kEncrypt ? c_.encrypt(r->run) : c_.decrypt(r->run);
    return crypto::SubmitStatus::kDone;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "caller-recording"; }
  std::thread::id caller;
  std::atomic<int> elsewhere{0};
  std::atomic<bool> held{false};

 private:
  const crypto::SectorCipher& c_;
};

TEST(CryptoDriver, ConvertOnCallerKeepsEveryBatchOnTheCallingThread) {
  constexpr std::uint32_t kSs = 512;
  testing::FakeSectorCipher cipher(kSs);
  CallerRecordingEngine engine(cipher);
  engine.caller = std::this_thread::get_id();
  CryptoDriverOptions o;
  o.sector_size = kSs;
  o.batch_bytes = 4 * kSs;
  o.parallel_threshold_bytes = 8 * kSs;
  o.threads = 3;
  auto d = CryptoDriver::create(engine, o);
  ASSERT_TRUE(d);
  std::vector<std::byte> plain(256 * kSs);
  testing::fill_pattern(plain, 9);
  std::vector<std::byte> spread = plain, here = plain;
  ASSERT_TRUE((*d)->convert(crypto::CryptoDir::kEncrypt, spread, SectorIndex{77}));
  EXPECT_GT(engine.elsewhere.load(), 0) << "convert() should spread this size over the workers";
  engine.elsewhere = 0;
  engine.held = false;
  ASSERT_TRUE((*d)->convert_on_caller(crypto::CryptoDir::kEncrypt, here, SectorIndex{77}));
  EXPECT_EQ(engine.elsewhere.load(), 0) << "a batch left the calling thread";
  EXPECT_EQ(here, spread);
  ASSERT_TRUE((*d)->convert_on_caller(crypto::CryptoDir::kDecrypt, here, SectorIndex{77}));
  EXPECT_EQ(here, plain);
}

TEST(CryptoDriver, EncryptFromEqualsConvertInPlace) {
  constexpr std::uint32_t kSs = 512;
  testing::FakeSectorCipher cipher(kSs);
  auto sync = crypto::make_sync_engine(cipher);
  ASSERT_TRUE(sync->reads_source());
  testing::HostileEngine hostile(cipher, testing::HostileConfig{});
  ASSERT_FALSE(hostile.reads_source());
  for (crypto::CryptoEngine* engine : {sync.get(), static_cast<crypto::CryptoEngine*>(&hostile)}) {
    for (bool force_inline : {false, true}) {
      CryptoDriverOptions o;
      o.sector_size = kSs;
      o.batch_bytes = 4 * kSs;
      o.parallel_threshold_bytes = 8 * kSs;
      o.threads = 3;
      o.force_inline = force_inline;
      auto d = CryptoDriver::create(*engine, o);
      ASSERT_TRUE(d);
      // Three parts of 5, 37 and 1 sectors at unrelated sector indices: the slices of one
      // conversion cross the parts' boundaries.
      const std::size_t sizes[] = {5, 37, 1};
      const std::uint64_t firsts[] = {7, 1000, (std::uint64_t{1} << 32) + 3};
      std::vector<std::vector<std::byte>> plain, expected, out;
      std::vector<CryptoDriver::FromTo> parts;
      for (std::size_t i = 0; i < 3; ++i) {
        plain.emplace_back(sizes[i] * kSs);
        testing::fill_pattern(plain[i], 40 + i);
        expected.push_back(plain[i]);
        ASSERT_TRUE(
            (*d)->convert(crypto::CryptoDir::kEncrypt, expected[i], SectorIndex{firsts[i]}));
        out.emplace_back(sizes[i] * kSs, std::byte{0x77});
      }
      for (std::size_t i = 0; i < 3; ++i)
        parts.push_back({plain[i], out[i], SectorIndex{firsts[i]}});
      ASSERT_TRUE((*d)->encrypt_from(parts));
      for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_EQ(out[i], expected[i]) << engine->name() << ", part " << i;
        std::vector<std::byte> source(sizes[i] * kSs);
        testing::fill_pattern(source, 40 + i);
        EXPECT_EQ(plain[i], source) << engine->name() << ": the source changed";
      }
      std::vector<std::byte> one(plain[1].size());
      ASSERT_TRUE((*d)->encrypt_from(plain[1], one, SectorIndex{firsts[1]}));
      EXPECT_EQ(one, expected[1]) << engine->name() << ", one part";
    }
  }
  EXPECT_EQ(hostile.violations(), 0u);
}

}  // namespace
}  // namespace cryptmap::volume

// The engine against hostile CryptoEngines: the backlog protocol (checked by the fake itself),
// errors surfacing for exactly the affected requests, and a >= 100k-request stress per engine
// with every byte checked, ended by a watchdog rather than a timed assertion.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "tests/unit/volume/engine/volume_test_util.h"
#include "volume/engine/crypto_driver.h"

namespace cryptmap::testing {
namespace {

using volume::EngineOptions;
using volume::VolumeOptions;

// Aborts the whole test binary (with a message) if the guarded scope runs longer than `limit`:
// a hang is a failure, but speed is never asserted.
class Watchdog {
 public:
  Watchdog(const char* what, std::chrono::seconds limit)
      : thread_([this, what, limit] {
          std::unique_lock lock(mu_);
          if (!cv_.wait_for(lock, limit, [&] { return done_; })) {
            std::fprintf(stderr, "WATCHDOG: %s did not finish within %lld s (hang)\n", what,
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

TEST(CryptoDriver, WaitsOncePerBusyEpisodeAndNeverSpins) {
  FakeSectorCipher cipher(512);
  HostileConfig cfg;
  cfg.queue_depth = 1;
  cfg.backlog_depth = 1 << 20;
  cfg.random_busy = 1.0;  // every submission is a busy episode
  HostileEngine engine(cipher, cfg);
  volume::CryptoDriverOptions o;
  o.batch_bytes = 512;
  o.max_inflight = 8;
  auto d = volume::CryptoDriver::create(engine, o);
  ASSERT_TRUE(d);
  std::vector<std::byte> buf = pattern(64 * 512, 1), want = buf;
  for (std::size_t k = 0; k < 64; ++k) {
    FakeSectorCipher::encrypt_sector(cipher.key(), 1000 + k, std::span(want).subspan(k * 512, 512));
  }
  Watchdog w("busy-episode conversion", std::chrono::seconds(120));
  ASSERT_TRUE((*d)->convert(crypto::CryptoDir::kEncrypt, buf, SectorIndex{1000}));
  EXPECT_EQ(buf, want);
  EXPECT_EQ(engine.violations(), 0u);
  EXPECT_EQ(engine.spurious_waits(), 0u);
  EXPECT_EQ(engine.busy_episodes(), 64u);
  EXPECT_EQ(engine.completed(), 64u);
}

TEST(CryptoDriver, BusyWithoutBacklogFailsTheRequestWithEbusy) {
  FakeSectorCipher cipher(512);
  HostileConfig cfg;
  cfg.backlog_depth = 0;
  cfg.random_busy = 1.0;
  HostileEngine engine(cipher, cfg);
  volume::CryptoDriverOptions o;
  auto d = volume::CryptoDriver::create(engine, o);
  ASSERT_TRUE(d);
  std::vector<std::byte> buf(4096);
  Watchdog w("rejected conversion", std::chrono::seconds(60));
  auto r = (*d)->convert(crypto::CryptoDir::kDecrypt, buf, SectorIndex{0});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBusy);
  EXPECT_EQ(to_errno(r.error()), EBUSY);
  EXPECT_EQ(engine.rejected(), 1u) << "stop issuing after a rejection";
}

TEST(CryptoDriver, NeverMoreCryptoRequestsInFlightThanThePool) {
  FakeSectorCipher cipher(512);
  HostileConfig cfg;
  cfg.queue_depth = 1000;
  cfg.max_delay_us = 200;
  HostileEngine engine(cipher, cfg);
  volume::CryptoDriverOptions o;
  o.batch_bytes = 512;
  o.max_inflight = 5;
  o.threads = 2;
  o.parallel_threshold_bytes = 4096;
  auto d = volume::CryptoDriver::create(engine, o);
  ASSERT_TRUE(d);
  Watchdog w("bounded in-flight", std::chrono::seconds(120));
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&] {
      std::vector<std::byte> buf(64 * 512);
      for (int i = 0; i < 20; ++i) {
        EXPECT_TRUE((*d)->convert(crypto::CryptoDir::kEncrypt, buf, SectorIndex{0}));
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_LE(engine.max_live(), 5u);
  EXPECT_GE(engine.max_live(), 2u);
  EXPECT_EQ(engine.violations(), 0u);
}

HostileConfig slow_out_of_order_base();

// An asynchronous engine whose cipher fails one sector: exactly the requests touching it fail
// (EIO), every other request returns the right bytes, and nothing is cached from a failure.
TEST(HostileEngine, FailuresHitExactlyTheRequestsTouchingTheBadSector) {
  HostileConfig cfg = slow_out_of_order_base();
  HostileEngine* engine = nullptr;
  auto factory = [&](const crypto::SectorCipher& c) {
    auto e = std::make_unique<HostileEngine>(c, cfg);
    engine = e.get();
    return e;
  };
  EngineOptions eo;
  eo.batch_bytes = 1024;
  TestVolume t = make_test_volume(512, 0, 256 * 512, VolumeOptions{}, eo, factory);
  ASSERT_TRUE(t.vol);
  const std::vector<std::byte> model = image_plaintext(t, 0, 256 * 512);
  t.cipher->fail_decrypt(100, 101);
  Watchdog w("bad-sector reads", std::chrono::seconds(120));
  for (int round = 0; round < 2; ++round) {  // the second round would hit a polluted cache
    for (std::uint64_t off = 0; off < 256 * 512; off += 700) {
      const std::uint64_t len = std::min<std::uint64_t>(1500, 256 * 512 - off);
      std::vector<std::byte> buf(len);
      auto r = t.vol->read(ByteOffset{off}, buf);
      const bool touches = off < 101 * 512 && off + len > 100 * 512;
      if (touches) {
        ASSERT_FALSE(r) << off;
        EXPECT_EQ(to_errno(r.error()), EIO);
        EXPECT_EQ(r.error().object, 100u);
      } else {
        ASSERT_TRUE(r) << off << ": " << r.error().message();
        ASSERT_TRUE(std::equal(buf.begin(), buf.end(), model.begin() + off)) << off;
      }
    }
  }
  EXPECT_EQ(engine->violations(), 0u);
}

struct StressCase {
  const char* name;
  HostileConfig engine;
  std::uint64_t cache_bytes;
  std::uint32_t sector_size;
  bool expect_busy_episodes;
  bool expect_rejections;
  bool expect_failures;
};

void PrintTo(const StressCase& c, std::ostream* os) { *os << c.name; }

HostileConfig slow_out_of_order_base() {
  HostileConfig c;
  c.queue_depth = 4;
  c.backlog_depth = 8;
  c.max_delay_us = 10;
  return c;
}

HostileConfig slow_out_of_order() {
  HostileConfig c;
  c.queue_depth = 8;
  c.backlog_depth = 64;
  c.max_delay_us = 20;
  return c;
}
HostileConfig busy_with_backlog() {
  HostileConfig c;
  c.queue_depth = 3;
  c.backlog_depth = 1 << 20;
  c.random_busy = 0.2;
  c.sync_rate = 0.1;
  c.seed = 2;
  return c;
}
HostileConfig busy_without_backlog() {
  HostileConfig c;
  c.queue_depth = 8;
  c.backlog_depth = 0;
  c.random_busy = 0.01;
  c.seed = 3;
  return c;
}
HostileConfig failing() {
  HostileConfig c;
  c.fail_rate = 0.003;
  c.sync_rate = 0.2;
  c.seed = 4;
  return c;
}
HostileConfig everything() {
  HostileConfig c;
  c.queue_depth = 2;
  c.backlog_depth = 2;
  c.random_busy = 0.05;
  c.fail_rate = 0.002;
  c.sync_rate = 0.1;
  c.max_delay_us = 5;
  c.seed = 5;
  return c;
}

class EngineStress : public ::testing::TestWithParam<StressCase> {};

TEST_P(EngineStress, HundredThousandRequestsEveryByteChecked) {
  const StressCase& sc = GetParam();
  constexpr unsigned kThreads = 4;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kOpsPerThread = 2500;  // sanitizers: 10x slower, same coverage shape
#else
  constexpr std::uint64_t kOpsPerThread = 25000;  // >= 100k requests per engine
#endif
  constexpr std::uint64_t kStripe = 1000;  // not a sector multiple: threads share sectors
  const std::uint32_t ss = sc.sector_size;
  const std::uint64_t size = 1024 * 1024;
  VolumeOptions opts;
  opts.cache_bytes = sc.cache_bytes;
  opts.max_inflight_requests = 16;
  opts.flush_age_ms = 20;
  EngineOptions eo;
  eo.batch_bytes = 2 * ss;  // several crypto requests per I/O request
  eo.parallel_threshold_bytes = 8 * ss;
  eo.buffer_bytes = 16 * 1024;
  HostileEngine* engine = nullptr;
  auto factory = [&](const crypto::SectorCipher& c) {
    auto e = std::make_unique<HostileEngine>(c, sc.engine);
    engine = e.get();
    return e;
  };
  TestVolume t = make_test_volume(ss, 8192, 8192 + size, opts, eo, factory);
  ASSERT_TRUE(t.vol);
  ASSERT_NE(engine, nullptr);
  Watchdog watchdog(sc.name, std::chrono::seconds(600));

  std::vector<std::byte> model = image_plaintext(t, 0, size);
  const std::uint64_t stripes = size / kStripe;
  std::atomic<std::uint64_t> calls{0}, issued{0}, read_errors{0}, write_errors{0}, bad{0};
  std::atomic<bool> stop{false};

  auto retry_read = [&](std::uint64_t off, std::span<std::byte> out) -> bool {
    for (int attempt = 0; attempt < 10000; ++attempt) {
      issued.fetch_add(1);
      auto r = t.vol->read(ByteOffset{off}, out);
      calls.fetch_add(1);
      if (r) return *r == out.size();
    }
    return false;
  };

  std::vector<std::thread> threads;
  for (unsigned th = 0; th < kThreads; ++th) {
    threads.emplace_back([&, th] {
      std::mt19937_64 rng(th * 7919 + 1);
      std::vector<std::byte> buf(kStripe), data(kStripe);
      for (std::uint64_t i = 0; i < kOpsPerThread && !stop; ++i) {
        const std::uint64_t k = (rng() % (stripes / kThreads)) * kThreads + th;
        const std::uint64_t a = rng() % kStripe;
        const std::uint64_t len = 1 + rng() % (kStripe - a);
        const std::uint64_t off = k * kStripe + a;
        issued.fetch_add(1);
        if (rng() % 10 < 6) {
          fill_pattern(std::span(data).first(len), (std::uint64_t{th} << 40) | i);
          auto r = t.vol->write(ByteOffset{off}, std::span(data).first(len));
          calls.fetch_add(1);
          if (r) {
            if (*r != len) ++bad;
            std::memcpy(model.data() + off, data.data(), len);
            continue;
          }
          const Errc c = r.error().code;
          if (c != Errc::kBusy && c != Errc::kIo) {
            ++bad;
            continue;
          }
          ++write_errors;
          // A failed write leaves each sector it touched either old or new: find out which,
          // sector by sector, and adopt it.
          if (!retry_read(off, std::span(buf).first(len))) {
            ++bad;
            continue;
          }
          for (std::uint64_t p = off; p < off + len;) {
            const std::uint64_t e = std::min(off + len, (p / ss + 1) * ss);
            const bool old_ok = std::memcmp(buf.data() + (p - off), model.data() + p, e - p) == 0;
            const bool new_ok =
                std::memcmp(buf.data() + (p - off), data.data() + (p - off), e - p) == 0;
            if (!old_ok && !new_ok) ++bad;
            p = e;
          }
          std::memcpy(model.data() + off, buf.data(), len);
        } else {
          auto r = t.vol->read(ByteOffset{off}, std::span(buf).first(len));
          calls.fetch_add(1);
          if (!r) {
            const Errc c = r.error().code;
            if (c != Errc::kBusy && c != Errc::kIo) ++bad;
            ++read_errors;
            continue;
          }
          if (*r != len || std::memcmp(buf.data(), model.data() + off, len) != 0) {
            ++bad;
            stop = true;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(calls.load(), issued.load()) << "every request returned";
  EXPECT_GE(issued.load(), kThreads * kOpsPerThread);

  // Flush (retrying a busy engine), then every byte through the volume and in the image.
  bool flushed = false;
  for (int i = 0; i < 1000 && !flushed; ++i) flushed = static_cast<bool>(t.vol->flush());
  ASSERT_TRUE(flushed);
  // Read back in 4 KiB pieces: a whole-volume read is ~1000 crypto batches, and an engine that
  // rejects 1% of them at random would almost never let it through.
  std::vector<std::byte> all(size);
  for (std::uint64_t p = 0; p < size; p += 4096) {
    ASSERT_TRUE(retry_read(p, std::span(all).subspan(p, 4096))) << p;
  }
  EXPECT_TRUE(all == model) << "volume content differs from the model";
  EXPECT_TRUE(image_plaintext(t, 0, size) == model) << "image content differs from the model";

  EXPECT_EQ(engine->violations(), 0u) << "backlog protocol violated by the submitter";
  EXPECT_EQ(engine->spurious_waits(), 0u) << "wait_for_drain() without a busy episode";
  EXPECT_EQ(engine->submitted(), engine->completed() + engine->rejected());
  if (sc.expect_busy_episodes) {
    EXPECT_GT(engine->busy_episodes(), 0u);
  }
  if (sc.expect_rejections) {
    EXPECT_GT(engine->rejected(), 0u);
  }
  if (sc.expect_failures) {
    EXPECT_GT(engine->failed(), 0u);
  }
  if (sc.expect_rejections || sc.expect_failures) {
    EXPECT_GT(read_errors.load() + write_errors.load(), 0u);
  } else {
    EXPECT_EQ(read_errors.load() + write_errors.load(), 0u);
  }
  std::printf(
      "[ stats    ] %s: %llu requests, %llu crypto submissions, %llu busy episodes, "
      "%llu rejected, %llu failed, %llu/%llu read/write errors\n",
      sc.name, static_cast<unsigned long long>(issued.load()),
      static_cast<unsigned long long>(engine->submitted()),
      static_cast<unsigned long long>(engine->busy_episodes()),
      static_cast<unsigned long long>(engine->rejected()),
      static_cast<unsigned long long>(engine->failed()),
      static_cast<unsigned long long>(read_errors.load()),
      static_cast<unsigned long long>(write_errors.load()));
}

INSTANTIATE_TEST_SUITE_P(
    Hostile, EngineStress,
    ::testing::Values(
        StressCase{"slow_out_of_order", slow_out_of_order(), 0, 512, false, false, false},
        StressCase{"busy_with_backlog", busy_with_backlog(), 0, 512, true, false, false},
        StressCase{"busy_with_backlog_4k_cached", busy_with_backlog(), 128 << 10, 4096, true, false,
                   false},
        StressCase{"busy_without_backlog", busy_without_backlog(), 0, 512, false, true, false},
        StressCase{"failing", failing(), 0, 512, false, false, true},
        StressCase{"everything_cached", everything(), 64 << 10, 512, true, true, true}),
    [](const ::testing::TestParamInfo<StressCase>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace cryptmap::testing

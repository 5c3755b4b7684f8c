// Test doubles for the I/O engine: a FakeSectorCipher (a keyed, position-dependent byte-wise
// addition, so a sector decrypted under the wrong index or read from the wrong place is garbage)
// and hostile FakeCryptoEngines built to crypto/crypto_engine.h's contract (slow, out-of-order
// completion, busy with backlog, busy without backlog, failing), which also police the submitter's
// side of the backlog protocol.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "crypto/crypto_engine.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::testing {

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Deterministic test data: byte i of stream `seed`.
inline void fill_pattern(std::span<std::byte> out, std::uint64_t seed) {
  std::uint64_t w = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i % 8 == 0) w = splitmix64(seed * 0x100000001B3ull + i / 8);
    out[i] = static_cast<std::byte>(w >> (8 * (i % 8)));
  }
}

class FakeSectorCipher final : public crypto::SectorCipher {
 public:
  explicit FakeSectorCipher(std::uint32_t sector_size, std::uint64_t key = 0x5eed)
      : ss_(sector_size), key_(key) {}

  Result<void> encrypt(const crypto::SectorRun& run) const override { return apply(run, true); }
  Result<void> decrypt(const crypto::SectorRun& run) const override { return apply(run, false); }
  std::uint32_t sector_size() const noexcept override { return ss_; }
  const char* engine_name() const noexcept override { return "fake-xor"; }

  // The transformation, usable without an object (to check images independently). Byte-wise
  // addition of a keystream: asymmetric, so swapping encrypt and decrypt is caught too.
  static void transform_sector(std::uint64_t key, std::uint64_t sector, std::span<std::byte> data,
                               bool encrypt) {
    for (std::size_t j = 0; j < data.size(); j += 8) {
      const std::uint64_t k = splitmix64(key ^ splitmix64(sector) ^ (j * 0x2545F4914F6CDD1Dull));
      for (std::size_t b = 0; b < 8 && j + b < data.size(); ++b) {
        const auto kb = static_cast<std::uint8_t>(k >> (8 * b));
        const auto v = static_cast<std::uint8_t>(data[j + b]);
        data[j + b] = static_cast<std::byte>(encrypt ? v + kb : v - kb);
      }
    }
  }
  static void encrypt_sector(std::uint64_t key, std::uint64_t sector, std::span<std::byte> d) {
    transform_sector(key, sector, d, true);
  }
  static void decrypt_sector(std::uint64_t key, std::uint64_t sector, std::span<std::byte> d) {
    transform_sector(key, sector, d, false);
  }
  std::uint64_t key() const noexcept { return key_; }
  // Sectors in [lo, hi) fail decryption with kAuth (an integrity failure stand-in).
  void fail_decrypt(std::uint64_t lo, std::uint64_t hi) {
    fail_lo_ = lo;
    fail_hi_ = hi;
  }
  std::uint64_t calls() const noexcept { return calls_.load(); }

 private:
  Result<void> apply(const crypto::SectorRun& run, bool enc) const {
    calls_.fetch_add(1, std::memory_order_relaxed);
    if (run.data.size() % ss_ != 0)
      return make_error(Errc::kInvalid, "fake cipher: partial sector");
    const std::size_t n = run.data.size() / ss_;
    if (!enc) {
      for (std::size_t k = 0; k < n; ++k) {
        const std::uint64_t s = run.first.value + k;
        if (s >= fail_lo_.load() && s < fail_hi_.load()) {
          return make_error(Errc::kAuth, "fake cipher: injected decrypt failure", s);
        }
      }
    }
    for (std::size_t k = 0; k < n; ++k) {
      transform_sector(key_, run.first.value + k, run.data.subspan(k * ss_, ss_), enc);
    }
    return ok();
  }
  const std::uint32_t ss_;
  const std::uint64_t key_;
  std::atomic<std::uint64_t> fail_lo_{0}, fail_hi_{0};
  mutable std::atomic<std::uint64_t> calls_{0};
};

struct HostileConfig {
  unsigned workers = 2;
  std::size_t queue_depth = 8;     // kInProgress while fewer are queued
  std::size_t backlog_depth = 64;  // kBackloggedBusy while the queue is full (0: no backlog)
  double random_busy = 0.0;        // chance to report busy although there is room
  double fail_rate = 0.0;          // chance a request completes with kIo
  bool out_of_order = true;        // workers pick a random queued request
  unsigned max_delay_us = 0;       // random processing delay
  double sync_rate = 0.0;          // chance to complete synchronously (kDone)
  std::uint64_t seed = 1;
};

// A worker-pool engine that is as unhelpful as the contract allows, and checks that the
// submitter follows the protocol: no submit() after kBackloggedBusy before wait_for_drain(),
// no wait_for_drain() without a busy episode, every request completed exactly once.
class HostileEngine final : public crypto::CryptoEngine {
 public:
  HostileEngine(const crypto::SectorCipher& cipher, HostileConfig cfg)
      : cipher_(cipher), cfg_(cfg), rng_(cfg.seed) {
    for (unsigned i = 0; i < cfg_.workers; ++i) workers_.emplace_back([this, i] { run(i); });
  }
  ~HostileEngine() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  crypto::SubmitStatus submit(crypto::CryptoRequest* req) override {
    std::unique_lock lock(mu_);
    ThreadState& ts = threads_[std::this_thread::get_id()];
    if (ts.must_wait) violations_.fetch_add(1);
    submitted_.fetch_add(1);
    if (!live_.emplace(req, 0).second) violations_.fetch_add(1);  // resubmitted while live
    max_live_ = std::max<std::uint64_t>(max_live_, live_.size());
    const double roll = uni_(rng_);
    if (roll < cfg_.sync_rate) {
      live_.erase(req);
      lock.unlock();
      process(req);
      completed_.fetch_add(1);
      return crypto::SubmitStatus::kDone;
    }
    const bool random_busy = uni_(rng_) < cfg_.random_busy;
    if (queue_.size() < cfg_.queue_depth && !random_busy) {
      queue_.push_back(req);
      cv_.notify_one();
      return crypto::SubmitStatus::kInProgress;
    }
    if (cfg_.backlog_depth == 0 || backlog_.size() >= cfg_.backlog_depth) {
      live_.erase(req);
      rejected_.fetch_add(1);
      return crypto::SubmitStatus::kBusyRejected;
    }
    backlog_.push_back(req);
    ts.must_wait = true;
    busy_episodes_.fetch_add(1);
    cv_.notify_one();
    return crypto::SubmitStatus::kBackloggedBusy;
  }

  void wait_for_drain() override {
    std::unique_lock lock(mu_);
    ThreadState& ts = threads_[std::this_thread::get_id()];
    if (!ts.must_wait) spurious_waits_.fetch_add(1);
    ts.must_wait = false;
    const std::uint64_t target = drained_;
    // "Started draining": at least one backlogged request moved on, or the backlog is empty.
    drain_cv_.wait(lock, [&] { return backlog_.empty() || drained_ != target; });
  }

  const char* name() const noexcept override { return "hostile-fake"; }

  std::uint64_t violations() const { return violations_.load(); }
  std::uint64_t spurious_waits() const { return spurious_waits_.load(); }
  std::uint64_t busy_episodes() const { return busy_episodes_.load(); }
  std::uint64_t rejected() const { return rejected_.load(); }
  std::uint64_t submitted() const { return submitted_.load(); }
  std::uint64_t completed() const { return completed_.load(); }
  std::uint64_t failed() const { return failed_.load(); }
  std::uint64_t max_live() {
    std::lock_guard lock(mu_);
    return max_live_;
  }

 private:
  struct ThreadState {
    bool must_wait = false;
  };

  void process(crypto::CryptoRequest* r) {
    double roll;
    unsigned delay = 0;
    {
      std::lock_guard lock(rng_mu_);
      roll = std::uniform_real_distribution<double>(0.0, 1.0)(rng2_);
      if (cfg_.max_delay_us) delay = static_cast<unsigned>(rng2_() % (cfg_.max_delay_us + 1));
    }
    if (delay) std::this_thread::sleep_for(std::chrono::microseconds(delay));
    if (roll < cfg_.fail_rate) {
      // A failing request may leave garbage in its buffer, as a real device might.
      if (!r->run.data.empty()) r->run.data[0] ^= std::byte{0x5a};
      r->status = make_error(Errc::kIo, "hostile engine: injected failure", r->run.first.value);
      failed_.fetch_add(1);
      return;
    }
    r->status =
        r->dir == crypto::CryptoDir::kEncrypt ? cipher_.encrypt(r->run) : cipher_.decrypt(r->run);
  }

  void run(unsigned /*idx*/) {
    std::unique_lock lock(mu_);
    for (;;) {
      // Move backlog into the queue as room frees; that is the "draining" signal.
      bool drained = false;
      while (!backlog_.empty() && queue_.size() < cfg_.queue_depth) {
        queue_.push_back(backlog_.front());
        backlog_.pop_front();
        drained = true;
      }
      if (drained) {
        ++drained_;
        drain_cv_.notify_all();
      }
      if (queue_.empty()) {
        if (stop_) return;
        cv_.wait(lock);
        continue;
      }
      std::size_t pick = 0;
      if (cfg_.out_of_order) pick = rng_() % queue_.size();
      crypto::CryptoRequest* r = queue_[pick];
      queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(pick));
      if (live_.erase(r) != 1) violations_.fetch_add(1);
      lock.unlock();
      process(r);
      completed_.fetch_add(1);
      r->on_done(r);  // after this the request belongs to the submitter again
      lock.lock();
    }
  }

  const crypto::SectorCipher& cipher_;
  const HostileConfig cfg_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable drain_cv_;
  std::deque<crypto::CryptoRequest*> queue_;
  std::deque<crypto::CryptoRequest*> backlog_;
  std::unordered_map<crypto::CryptoRequest*, int> live_;
  std::unordered_map<std::thread::id, ThreadState> threads_;
  std::uint64_t drained_ = 0;
  std::uint64_t max_live_ = 0;
  bool stop_ = false;
  std::mt19937_64 rng_;
  std::mutex rng_mu_;
  std::mt19937_64 rng2_{12345};
  std::uniform_real_distribution<double> uni_{0.0, 1.0};
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> violations_{0}, spurious_waits_{0}, busy_episodes_{0}, rejected_{0},
      submitted_{0}, completed_{0}, failed_{0};
};

}  // namespace cryptmap::testing

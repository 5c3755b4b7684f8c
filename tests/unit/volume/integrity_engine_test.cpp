// The integrity volume's crypto through the asynchronous engine protocol (docs/integrity.md §5,
// volume/engine/README.md "Backlog protocol"): every block's encryption and verification is a
// CryptoRequest carrying the block with its own tag tuple, driven with the backlog rule. Over the
// engine tests' hostile fake (busy with backlog, out of order, slow, some synchronous, some
// failing) every block reads back with its own tag, also after a reopen with the synchronous
// engine; an engine that swaps tag tuples between two requests' completions is caught by the
// same check (the test can fail).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "crypto/auth_cipher.h"
#include "tests/unit/volume/engine/fake_crypto.h"
#include "tests/unit/volume/integrity_test_util.h"
#include "volume/integrity/integrity_volume.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint32_t kBlock = 4096;
constexpr std::uint64_t kImageBytes = 24ull << 20;

VolumeLayout layout_of(const char* enc, const char* integ, bool journal) {
  return test::integrity_layout(enc, integ, kBlock, 1 << 20, journal);
}

std::vector<std::byte> key_for(const VolumeLayout& l) {
  auto c = crypto::auth_composition(l.auth_encryption, l.integrity);
  std::vector<std::byte> k(c->cipher_key_size + c->mac_key_size);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::byte(0x2d * i + 7);
  return k;
}

// Block k's contents in generation g: distinct for every block and generation.
void block_pattern(std::span<std::byte> out, std::uint64_t k, unsigned g) {
  testing::fill_pattern(out, k * 16 + g + 1);
}

// Options: write-through without a cache (every write's and read's crypto is a request of its
// own) or the default sector cache with write-back and read-ahead (write-back passes and
// read-ahead loaders submit too).
VolumeOptions options_for(bool cached) {
  VolumeOptions o;
  o.max_inflight_requests = 16;
  if (!cached) {
    o.cache_bytes = 0;
    o.no_write_workqueue = true;
  }
  return o;
}

// Writes every block of `vol` from 4 threads in requests of 1..64 blocks (64 blocks = 256 KiB:
// per-core slices), two generations with the second over a shifted pattern of runs; then
// flushes. Returns the final generation of each block.
std::vector<unsigned> write_storm(Volume& vol, std::uint64_t blocks) {
  std::vector<unsigned> gen(blocks, 0);
  constexpr unsigned kThreads = 4;
  std::vector<std::thread> th;
  std::atomic<int> errors{0};
  for (unsigned t = 0; t < kThreads; ++t) {
    th.emplace_back([&, t] {
      std::vector<std::byte> buf(64 * kBlock);
      std::uint64_t x = t + 1;
      for (unsigned g = 1; g <= 2; ++g) {
        // Thread t owns the blocks k with (k / 64) % kThreads == t: no two threads write a block.
        for (std::uint64_t base = t * 64; base < blocks; base += kThreads * 64) {
          std::uint64_t k = base;
          const std::uint64_t end = std::min(blocks, base + 64);
          while (k < end) {
            x = testing::splitmix64(x);
            const std::uint64_t n = std::min<std::uint64_t>(end - k, 1 + x % (g == 1 ? 64 : 7));
            for (std::uint64_t i = 0; i < n; ++i)
              block_pattern(std::span(buf).subspan(i * kBlock, kBlock), k + i, g);
            auto w = vol.write(ByteOffset{k * kBlock}, std::span(buf).first(n * kBlock));
            if (!w) errors.fetch_add(1);
            for (std::uint64_t i = 0; i < n; ++i) gen[k + i] = g;
            k += n;
          }
        }
      }
    });
  }
  for (auto& t : th) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_TRUE(vol.flush());
  return gen;
}

// Reads every block back from 4 threads in requests of varying size; returns how many blocks
// failed (a read error counts each block of the request) or differ from their generation.
// `read` (optional) counts the blocks read.
std::uint64_t bad_blocks(Volume& vol, const std::vector<unsigned>& gen,
                         std::uint64_t* read = nullptr) {
  const std::uint64_t blocks = gen.size();
  std::atomic<std::uint64_t> bad{0}, reads{0};
  std::vector<std::thread> th;
  for (unsigned t = 0; t < 4; ++t) {
    th.emplace_back([&, t] {
      std::vector<std::byte> buf(48 * kBlock), want(kBlock);
      std::uint64_t x = 100 + t;
      for (std::uint64_t base = t * 48; base < blocks; base += 4 * 48) {
        x = testing::splitmix64(x);
        const std::uint64_t n = std::min<std::uint64_t>(blocks - base, x % 2 ? 48 : 1 + x % 5);
        auto r = vol.read(ByteOffset{base * kBlock}, std::span(buf).first(n * kBlock));
        reads.fetch_add(n);
        if (!r || *r != n * kBlock) {
          bad.fetch_add(n);
          continue;
        }
        for (std::uint64_t i = 0; i < n; ++i) {
          block_pattern(want, base + i, gen[base + i]);
          if (std::memcmp(buf.data() + i * kBlock, want.data(), kBlock) != 0) bad.fetch_add(1);
        }
      }
      // The blocks this thread's strided requests skipped.
      for (std::uint64_t base = t * 48; base < blocks; base += 4 * 48) {
        const std::uint64_t n = std::min<std::uint64_t>(blocks - base, 48);
        for (std::uint64_t i = 0; i < n; ++i) {
          auto r = vol.read(ByteOffset{(base + i) * kBlock}, std::span(buf).first(kBlock));
          reads.fetch_add(1);
          block_pattern(want, base + i, gen[base + i]);
          if (!r || std::memcmp(buf.data(), want.data(), kBlock) != 0) bad.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : th) t.join();
  if (read) *read = reads.load();
  return bad.load();
}

// What the hostile engine saw, taken when the volume closes (its driver is gone, every request
// completed; read-ahead loaders may submit until then).
struct EngineStats {
  std::uint64_t violations = 0, spurious_waits = 0, busy_episodes = 0, rejected = 0, submitted = 0,
                completed = 0, max_live = 0;
};

class RecordingEngine final : public crypto::CryptoEngine {
 public:
  RecordingEngine(const crypto::SectorCipher& cipher, testing::HostileConfig hc, EngineStats& s)
      : e_(std::make_unique<testing::HostileEngine>(cipher, hc)), s_(s) {}
  ~RecordingEngine() override {
    s_.violations = e_->violations();
    s_.spurious_waits = e_->spurious_waits();
    s_.busy_episodes = e_->busy_episodes();
    s_.rejected = e_->rejected();
    s_.submitted = e_->submitted();
    s_.completed = e_->completed();
    s_.max_live = e_->max_live();
  }
  crypto::SubmitStatus submit(crypto::CryptoRequest* req) override { return e_->submit(req); }
  void wait_for_drain() override { e_->wait_for_drain(); }
  const char* name() const noexcept override { return e_->name(); }

 private:
  std::unique_ptr<testing::HostileEngine> e_;
  EngineStats& s_;
};

struct Case {
  const char* enc;
  const char* integ;
  bool journal;
  bool cached;
};

class IntegrityEngine : public ::testing::TestWithParam<Case> {};

// The property: over a hostile engine (out-of-order completion, busy with backlog, random busy
// returns, slow requests, some completed synchronously) with many requests in flight from 4
// writers and 4 readers, every block reads back with its own contents, both through the hostile
// engine and after a reopen with the synchronous engine (the tags in the image are each block's
// own); the engine saw no protocol violation and at least one busy episode.
TEST_P(IntegrityEngine, EveryBlockReadsBackWithItsOwnTagOverAHostileEngine) {
  const Case c = GetParam();
  const VolumeLayout l = layout_of(c.enc, c.integ, c.journal);
  auto comp = crypto::auth_composition(l.auth_encryption, l.integrity);
  ASSERT_TRUE(comp);
  auto mem = std::make_unique<MemBackingStore>(kImageBytes, "mem:integrity-engine");
  ASSERT_TRUE(format_integrity_area(*mem, l, static_cast<std::uint32_t>(comp->tag_size)));
  MemBackingStore* image = mem.get();
  testing::HostileConfig hc;
  hc.workers = 3;
  hc.queue_depth = 4;
  hc.backlog_depth = 64;
  hc.random_busy = 0.2;
  hc.max_delay_us = 30;
  hc.sync_rate = 0.1;
  EngineStats st;
  bool made = false;
  auto factory = [&](const crypto::SectorCipher& cipher) {
    made = true;
    return std::unique_ptr<crypto::CryptoEngine>(std::make_unique<RecordingEngine>(cipher, hc, st));
  };
  auto v = open_integrity_volume_with_engine(l, key_for(l), factory, std::move(mem),
                                             options_for(c.cached), nullptr);
  ASSERT_TRUE(v) << v.error().message();
  ASSERT_TRUE(made);
  const std::uint64_t blocks = (*v)->size_bytes() / kBlock;
  ASSERT_GE(blocks, 1024u);
  const auto gen = write_storm(**v, blocks);
  std::uint64_t read = 0;
  EXPECT_EQ(bad_blocks(**v, gen, &read), 0u);
  const auto counters = integrity_counters(**v);
  ASSERT_TRUE(counters);
  EXPECT_EQ(counters->tags_failed, 0u);
  if (!c.cached) {
    EXPECT_GE(counters->tags_verified, read);  // no cache: every block read was verified
  }
  ASSERT_TRUE((*v)->flush());
  std::vector<std::byte> copy(image->size_bytes());
  image->peek(0, copy);
  v->reset();
  EXPECT_EQ(st.violations, 0u);
  EXPECT_EQ(st.spurious_waits, 0u);
  EXPECT_GT(st.busy_episodes, 0u);
  EXPECT_EQ(st.rejected, 0u);
  EXPECT_EQ(st.submitted, st.completed);
  EXPECT_GT(st.max_live, 1u);  // requests were in flight together

  // Reopen the image with the synchronous engine: the tags in it are each block's own.
  auto mem2 = std::make_unique<MemBackingStore>(copy.size(), "mem:integrity-engine");
  mem2->poke(0, copy);
  auto v2 = open_integrity_volume(l, key_for(l), std::move(mem2), options_for(false), nullptr);
  ASSERT_TRUE(v2) << v2.error().message();
  EXPECT_EQ(bad_blocks(**v2, gen), 0u);
  EXPECT_EQ(integrity_counters(**v2)->tags_failed, 0u);
}

INSTANTIATE_TEST_SUITE_P(Compositions, IntegrityEngine,
                         ::testing::Values(Case{"aes-xts-random", "hmac(sha256)", false, false},
                                           Case{"aes-xts-random", "hmac(sha256)", true, false},
                                           Case{"aes-gcm-random", "aead", false, true},
                                           Case{"aes-xts-plain64", "hmac(sha256)", true, true}),
                         [](const ::testing::TestParamInfo<Case>& p) {
                           std::string n = std::string(p.param.enc) +
                                           (p.param.journal ? "_J" : "_D") +
                                           (p.param.cached ? "_cached" : "_through");
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// An engine that completes requests asynchronously, in pairs when it can: when two encrypt
// requests of the same size are queued together it swaps their first tag tuples before
// completing both (a broken engine, or a driver that pairs a completion with the wrong request's
// tags). Otherwise it behaves; a request waits at most 2 ms for a partner.
class TagSwappingEngine final : public crypto::CryptoEngine {
 public:
  explicit TagSwappingEngine(const crypto::SectorCipher& cipher)
      : cipher_(cipher), worker_([this] { run(); }) {}
  ~TagSwappingEngine() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  crypto::SubmitStatus submit(crypto::CryptoRequest* req) override {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(req);
    }
    cv_.notify_all();
    return crypto::SubmitStatus::kInProgress;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "tag-swapping-fake"; }
  std::uint64_t swaps() const { return swaps_.load(); }

 private:
  void run() {
    std::unique_lock lock(mu_);
    for (;;) {
      if (queue_.empty()) {
        if (stop_) return;
        cv_.wait(lock);
        continue;
      }
      if (queue_.size() < 2)
        cv_.wait_for(lock, std::chrono::milliseconds(2),
                     [&] { return queue_.size() >= 2 || stop_; });
      std::vector<crypto::CryptoRequest*> batch(queue_.begin(), queue_.end());
      queue_.clear();
      lock.unlock();
      for (auto* r : batch)
        r->status = r->dir == crypto::CryptoDir::kEncrypt ? cipher_.encrypt(r->run)
                                                          : cipher_.decrypt(r->run);
      for (std::size_t i = 0; i + 1 < batch.size(); i += 2) {
        auto* a = batch[i];
        auto* b = batch[i + 1];
        const std::size_t t = cipher_.meta_bytes_per_sector();
        if (a->dir == crypto::CryptoDir::kEncrypt && b->dir == a->dir && a->status && b->status &&
            a->run.meta.size() >= t && b->run.meta.size() >= t) {
          std::swap_ranges(a->run.meta.begin(),
                           a->run.meta.begin() + static_cast<std::ptrdiff_t>(t),
                           b->run.meta.begin());
          swaps_.fetch_add(1);
        }
      }
      for (auto* r : batch) r->on_done(r);
      lock.lock();
    }
  }
  const crypto::SectorCipher& cipher_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<crypto::CryptoRequest*> queue_;
  bool stop_ = false;
  std::atomic<std::uint64_t> swaps_{0};
  std::thread worker_;
};

// The check above fails when tags are reordered against their data: the same storm over an
// engine that swaps two requests' tag tuples leaves blocks that fail their tag on the reopen.
TEST(IntegrityEngineNegative, SwappedTagsBetweenCompletionsAreCaught) {
  const VolumeLayout l = layout_of("aes-xts-random", "hmac(sha256)", false);
  auto comp = crypto::auth_composition(l.auth_encryption, l.integrity);
  ASSERT_TRUE(comp);
  auto mem = std::make_unique<MemBackingStore>(kImageBytes, "mem:integrity-engine");
  ASSERT_TRUE(format_integrity_area(*mem, l, static_cast<std::uint32_t>(comp->tag_size)));
  MemBackingStore* image = mem.get();
  TagSwappingEngine* engine = nullptr;
  auto factory = [&](const crypto::SectorCipher& cipher) {
    auto e = std::make_unique<TagSwappingEngine>(cipher);
    engine = e.get();
    return std::unique_ptr<crypto::CryptoEngine>(std::move(e));
  };
  auto v = open_integrity_volume_with_engine(l, key_for(l), factory, std::move(mem),
                                             options_for(false), nullptr);
  ASSERT_TRUE(v) << v.error().message();
  const std::uint64_t blocks = (*v)->size_bytes() / kBlock;
  const auto gen = write_storm(**v, blocks);
  ASSERT_GT(engine->swaps(), 0u);
  std::vector<std::byte> copy(image->size_bytes());
  image->peek(0, copy);
  v->reset();
  auto mem2 = std::make_unique<MemBackingStore>(copy.size(), "mem:integrity-engine");
  mem2->poke(0, copy);
  auto v2 = open_integrity_volume(l, key_for(l), std::move(mem2), options_for(false), nullptr);
  ASSERT_TRUE(v2) << v2.error().message();
  EXPECT_GT(bad_blocks(**v2, gen), 0u);
  EXPECT_GT(integrity_counters(**v2)->tags_failed, 0u);
}

// A failing engine (injected kIo) and an engine without backlog (busy rejected) fail requests
// with the engine's error (kIo, kBusy; never-written blocks kAuth), never hang, never complete
// a request twice (the engine polices the protocol).
TEST(IntegrityEngineNegative, FailingAndRejectingEnginesFailRequestsCleanly) {
  const VolumeLayout l = layout_of("aes-gcm-random", "aead", false);
  auto comp = crypto::auth_composition(l.auth_encryption, l.integrity);
  ASSERT_TRUE(comp);
  auto mem = std::make_unique<MemBackingStore>(kImageBytes, "mem:integrity-engine");
  ASSERT_TRUE(format_integrity_area(*mem, l, static_cast<std::uint32_t>(comp->tag_size)));
  testing::HostileConfig hc;
  hc.workers = 2;
  hc.queue_depth = 2;
  hc.backlog_depth = 0;  // busy = rejected
  hc.random_busy = 0.05;
  hc.fail_rate = 0.05;
  EngineStats st;
  auto factory = [&](const crypto::SectorCipher& cipher) {
    return std::unique_ptr<crypto::CryptoEngine>(std::make_unique<RecordingEngine>(cipher, hc, st));
  };
  auto v = open_integrity_volume_with_engine(l, key_for(l), factory, std::move(mem),
                                             options_for(false), nullptr);
  ASSERT_TRUE(v) << v.error().message();
  std::vector<std::byte> buf(16 * kBlock);
  std::uint64_t failed_writes = 0, failed_reads = 0;
  for (std::uint64_t k = 0; k < 512; k += 16) {
    for (std::uint64_t i = 0; i < 16; ++i)
      block_pattern(std::span(buf).subspan(i * kBlock, kBlock), k + i, 1);
    auto w = (*v)->write(ByteOffset{k * kBlock}, buf);
    if (!w) {
      ++failed_writes;
      EXPECT_TRUE(w.error().code == Errc::kIo || w.error().code == Errc::kBusy)
          << w.error().message();
    }
    auto r = (*v)->read(ByteOffset{k * kBlock}, buf);
    if (!r) {
      ++failed_reads;
      EXPECT_TRUE(r.error().code == Errc::kIo || r.error().code == Errc::kBusy ||
                  r.error().code == Errc::kAuth)
          << r.error().message();
    }
  }
  EXPECT_GT(failed_writes + failed_reads, 0u);
  v->reset();
  EXPECT_EQ(st.violations, 0u);
  EXPECT_GT(st.rejected, 0u);
  EXPECT_EQ(st.submitted, st.completed + st.rejected);
}

}  // namespace
}  // namespace cryptmap::volume

// Volume over MemBackingStore + FakeSectorCipher: offset math at every head/tail edge, clamping,
// read-only, past-end, sectors above 2^32, error isolation, concurrent read-modify-write; a
// 1 MiB request's crypto on more than one thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "tests/unit/volume/engine/volume_test_util.h"

namespace cryptmap::testing {
namespace {

using volume::EngineOptions;
using volume::VolumeOptions;

class VolumeEdges : public ::testing::TestWithParam<std::tuple<std::uint32_t, std::uint64_t>> {};

TEST_P(VolumeEdges, EveryHeadTailCombinationMatchesModelAndImage) {
  const auto [ss, cache_bytes] = GetParam();
  const std::uint64_t data_off = 3 * 4096;
  const std::uint64_t sectors = 16;
  VolumeOptions opts;
  opts.cache_bytes = cache_bytes;
  TestVolume t = make_test_volume(ss, data_off, data_off + sectors * ss + 100, opts);
  ASSERT_TRUE(t.vol);
  const std::uint64_t size = sectors * ss;
  ASSERT_EQ(t.vol->size_bytes(), size);
  // Pre-existing content, encrypted independently of the engine.
  std::vector<std::byte> model = pattern(size, 1);
  image_write_plaintext(t, 0, model);

  const std::uint64_t offs[] = {0,          1,      ss / 2,     ss - 1,    ss,      ss + 1,
                                2 * ss - 1, 2 * ss, 3 * ss + 7, size - ss, size - 1};
  const std::uint64_t lens[] = {1,          ss / 2, ss - 1,     ss,        ss + 1,
                                2 * ss - 1, 2 * ss, 2 * ss + 1, 3 * ss + 5};
  std::uint64_t seed = 100;
  for (std::uint64_t off : offs) {
    for (std::uint64_t len : lens) {
      if (off + len > size) continue;
      SCOPED_TRACE(::testing::Message() << "off=" << off << " len=" << len);
      const std::vector<std::byte> data = pattern(len, ++seed);
      const std::vector<std::byte> copy = data;
      auto w = t.vol->write(ByteOffset{off}, data);
      ASSERT_TRUE(w) << w.error().message();
      EXPECT_EQ(*w, len);
      EXPECT_EQ(data, copy) << "the caller's buffer was modified";
      std::memcpy(model.data() + off, data.data(), len);
      // Read the exact range back, then the whole volume.
      std::vector<std::byte> back(len);
      auto r = t.vol->read(ByteOffset{off}, back);
      ASSERT_TRUE(r) << r.error().message();
      ASSERT_EQ(*r, len);
      ASSERT_TRUE(std::equal(back.begin(), back.end(), model.begin() + off));
      std::vector<std::byte> all(size);
      ASSERT_EQ(*t.vol->read(ByteOffset{0}, all), size);
      ASSERT_EQ(all, model);
    }
  }
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 0, size), model) << "image differs from the model after flush";
  // Bytes before the data offset and after the volume were never touched.
  std::vector<std::byte> head(data_off), zeros(data_off);
  t.store->peek(0, head);
  EXPECT_EQ(head, zeros);
  std::vector<std::byte> tail(100), zt(100);
  t.store->peek(data_off + size, tail);
  EXPECT_EQ(tail, zt);
}

INSTANTIATE_TEST_SUITE_P(SectorSizesAndCache, VolumeEdges,
                         ::testing::Combine(::testing::Values(512u, 4096u),
                                            ::testing::Values(0ull, 64ull << 10)));

TEST(Volume, ReadsAreClampedAtTheEnd) {
  TestVolume t = make_test_volume(512, 0, 8 * 512);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = pattern(8 * 512, 7);
  image_write_plaintext(t, 0, model);
  std::vector<std::byte> buf(200);
  auto r = t.vol->read(ByteOffset{8 * 512 - 10}, buf);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 10u);
  EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + 10, model.end() - 10));
  EXPECT_EQ(*t.vol->read(ByteOffset{8 * 512}, buf), 0u);
  EXPECT_EQ(*t.vol->read(ByteOffset{1ull << 40}, buf), 0u);
  EXPECT_EQ(*t.vol->read(ByteOffset{0}, std::span<std::byte>()), 0u);
}

TEST(Volume, WritesPastTheEndFailWithNoSpaceAndChangeNothing) {
  TestVolume t = make_test_volume(512, 4096, 4096 + 8 * 512);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = pattern(8 * 512, 9);
  image_write_plaintext(t, 0, model);
  const std::vector<std::byte> data = pattern(20, 10);
  auto w = t.vol->write(ByteOffset{8 * 512 - 10}, data);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kNoSpace);
  EXPECT_EQ(to_errno(w.error()), ENOSPC);
  EXPECT_FALSE(t.vol->write(ByteOffset{8 * 512 + 1}, std::span<const std::byte>()));
  auto z = t.vol->write(ByteOffset{8 * 512}, std::span<const std::byte>());
  ASSERT_TRUE(z);
  EXPECT_EQ(*z, 0u);
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 0, 8 * 512), model);
}

TEST(Volume, ReadOnlyOptionAndReadOnlyStoreRefuseWrites) {
  VolumeOptions ro;
  ro.read_only = true;
  TestVolume t = make_test_volume(512, 0, 4096, ro);
  ASSERT_TRUE(t.vol);
  EXPECT_TRUE(t.vol->read_only());
  const std::vector<std::byte> data = pattern(512, 1);
  auto w = t.vol->write(ByteOffset{0}, data);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kReadOnly);
  std::vector<std::byte> buf(512);
  EXPECT_TRUE(t.vol->read(ByteOffset{0}, buf));

  auto store = std::make_unique<volume::MemBackingStore>(4096, "mem:ro", /*read_only=*/true);
  auto v = volume::open_volume(test_layout(512, 0), std::make_unique<FakeSectorCipher>(512),
                               std::move(store), VolumeOptions{}, nullptr);
  ASSERT_TRUE(v);
  EXPECT_TRUE((*v)->read_only());
  auto w2 = (*v)->write(ByteOffset{0}, data);
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.error().code, Errc::kReadOnly);
}

TEST(Volume, OpenRejectsInconsistentLayouts) {
  auto open = [](volume::VolumeLayout l, std::uint32_t cipher_ss, std::uint64_t image) {
    return volume::open_volume(std::move(l), std::make_unique<FakeSectorCipher>(cipher_ss),
                               std::make_unique<volume::MemBackingStore>(image), VolumeOptions{},
                               nullptr);
  };
  EXPECT_EQ(open(test_layout(4096, 0), 512, 1 << 20).error().code, Errc::kInvalid);
  EXPECT_EQ(open(test_layout(1000, 0), 1000, 1 << 20).error().code, Errc::kInvalid);
  EXPECT_EQ(open(test_layout(512, 2 << 20), 512, 1 << 20).error().code, Errc::kInvalid);
  EXPECT_EQ(open(test_layout(512, 4096, 1 << 20), 512, 1 << 20).error().code, Errc::kInvalid);
  EXPECT_EQ(open(test_layout(512, 0, 1000), 512, 1 << 20).error().code, Errc::kInvalid);
  auto dyn = open(test_layout(4096, 4096), 4096, 4096 + 3 * 4096 + 100);
  ASSERT_TRUE(dyn);
  EXPECT_EQ((*dyn)->size_bytes(), 3u * 4096);
  auto fixed = open(test_layout(512, 4096, 2048), 512, 1 << 20);
  ASSERT_TRUE(fixed);
  EXPECT_EQ((*fixed)->size_bytes(), 2048u);
}

TEST(Volume, SectorIndicesAboveTwoToTheThirtyTwo) {
  const std::uint64_t ss = 512;
  const std::uint64_t data_off = 1 << 20;
  const std::uint64_t sectors = (1ull << 32) + 64;
  TestVolume t = make_test_volume(512, data_off, data_off + sectors * ss);
  ASSERT_TRUE(t.vol);
  ASSERT_EQ(t.vol->size_bytes(), sectors * ss);
  const std::uint64_t sector = (1ull << 32) + 5;
  const std::uint64_t off = sector * ss + 100;
  const std::vector<std::byte> data = pattern(2000, 42);
  ASSERT_TRUE(t.vol->write(ByteOffset{off}, data));
  ASSERT_TRUE(t.vol->flush());
  std::vector<std::byte> back(2000);
  ASSERT_EQ(*t.vol->read(ByteOffset{off}, back), 2000u);
  EXPECT_EQ(back, data);
  // Independently: the ciphertext sits at data_off + index * 512 and uses the 64-bit index.
  EXPECT_EQ(image_plaintext(t, off, 2000), data);
  // Nothing landed where a truncated 32-bit index would have put it.
  std::vector<std::byte> low(4096), zeros(4096);
  t.store->peek(data_off + 5 * ss, low);
  EXPECT_EQ(low, zeros);
  // The last sector of the volume works, one past it does not.
  ASSERT_TRUE(t.vol->write(ByteOffset{sectors * ss - 3}, std::span(data).first(3)));
  EXPECT_FALSE(t.vol->write(ByteOffset{sectors * ss - 3}, std::span(data).first(4)));
}

TEST(Volume, LargeUnalignedRequestsSpanManyPiecesAndThreads) {
  EngineOptions eo;
  eo.buffer_bytes = 64 * 1024;
  eo.parallel_threshold_bytes = 8 * 1024;
  eo.batch_bytes = 4096;
  TestVolume t = make_test_volume(512, 8192, 8192 + (8 << 20), VolumeOptions{}, eo);
  ASSERT_TRUE(t.vol);
  // A fresh image holds zero *ciphertext*; its plaintext is whatever that decrypts to.
  std::vector<std::byte> model = image_plaintext(t, 0, 8 << 20);
  const std::uint64_t off = 777;
  const std::vector<std::byte> data = pattern((3 << 20) + 123, 5);
  ASSERT_TRUE(t.vol->write(ByteOffset{off}, data));
  std::memcpy(model.data() + off, data.data(), data.size());
  std::vector<std::byte> all(8 << 20);
  ASSERT_EQ(*t.vol->read(ByteOffset{0}, all), all.size());
  EXPECT_EQ(all, model);
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 0, model.size()), model);
}

TEST(Volume, FlushSyncsTheStoreAndReportsItsFailure) {
  TestVolume t = make_test_volume(512, 0, 64 * 512);
  ASSERT_TRUE(t.vol);
  const auto before = t.store->sync_calls();
  ASSERT_TRUE(t.vol->flush());
  EXPECT_GT(t.store->sync_calls(), before);
  t.store->fail_sync(true);
  auto f = t.vol->flush();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, Errc::kIo);
  t.store->fail_sync(false);
  EXPECT_TRUE(t.vol->flush());
}

TEST(Volume, StoreReadErrorsFailOnlyRequestsTouchingTheBadRange) {
  VolumeOptions opts;
  opts.cache_bytes = 0;
  TestVolume t = make_test_volume(512, 4096, 4096 + 32 * 512, opts);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = pattern(32 * 512, 3);
  image_write_plaintext(t, 0, model);
  t.store->fail_reads(4096 + 5 * 512, 512);  // sector 5
  std::vector<std::byte> buf(512);
  auto bad = t.vol->read(ByteOffset{5 * 512 + 10}, std::span(buf).first(10));
  ASSERT_FALSE(bad);
  EXPECT_EQ(to_errno(bad.error()), EIO);
  ASSERT_TRUE(t.vol->read(ByteOffset{4 * 512}, buf));
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), model.begin() + 4 * 512));
  ASSERT_TRUE(t.vol->read(ByteOffset{6 * 512}, buf));
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), model.begin() + 6 * 512));
  // A partial write into sector 5 needs its old content: it fails and changes nothing.
  const std::vector<std::byte> small = pattern(10, 4);
  EXPECT_FALSE(t.vol->write(ByteOffset{5 * 512 + 3}, small));
  t.store->fail_reads(0, 0);
  ASSERT_TRUE(t.vol->flush());
  EXPECT_EQ(image_plaintext(t, 0, model.size()), model);
}

TEST(Volume, DecryptFailuresSurfaceAsEioForTheAffectedSectorsOnly) {
  VolumeOptions opts;
  opts.cache_bytes = 0;
  TestVolume t = make_test_volume(4096, 0, 16 * 4096, opts);
  ASSERT_TRUE(t.vol);
  std::vector<std::byte> model = pattern(16 * 4096, 8);
  image_write_plaintext(t, 0, model);
  t.cipher->fail_decrypt(7, 8);
  std::vector<std::byte> buf(3 * 4096);
  auto bad = t.vol->read(ByteOffset{6 * 4096}, buf);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kAuth);
  EXPECT_EQ(bad.error().object, 7u);
  EXPECT_EQ(to_errno(bad.error()), EIO);
  ASSERT_TRUE(t.vol->read(ByteOffset{8 * 4096}, buf));
  EXPECT_TRUE(std::equal(buf.begin(), buf.end(), model.begin() + 8 * 4096));
  std::vector<std::byte> before(7 * 4096);  // sectors 0..6, right up to the bad one
  ASSERT_TRUE(t.vol->read(ByteOffset{0}, before));
  EXPECT_TRUE(std::equal(before.begin(), before.end(), model.begin()));
}

// Threads own interleaved 700-byte stripes, so neighbouring threads share sectors and every
// write is a read-modify-write racing another one on the same sector.
TEST(Volume, ConcurrentUnalignedWritersSharingSectorsLoseNothing) {
  for (std::uint64_t cache : {0ull, 256ull << 10}) {
    SCOPED_TRACE(cache);
    VolumeOptions opts;
    opts.cache_bytes = cache;
    constexpr std::uint64_t kSize = 64 * 512;
    constexpr std::uint64_t kStripe = 700;
    constexpr unsigned kThreads = 4;
    TestVolume t = make_test_volume(512, 0, kSize, opts);
    ASSERT_TRUE(t.vol);
    const std::uint64_t stripes = kSize / kStripe;
    const std::vector<std::byte> initial = image_plaintext(t, 0, kSize);
    std::vector<std::uint64_t> last_seed(stripes, 0);
    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (unsigned th = 0; th < kThreads; ++th) {
      threads.emplace_back([&, th] {
        std::mt19937_64 rng(th);
        for (int i = 0; i < 1500; ++i) {
          const std::uint64_t k = (rng() % (stripes / kThreads)) * kThreads + th;
          if (k >= stripes) continue;
          const std::uint64_t seed = (std::uint64_t{th} << 32) | static_cast<std::uint64_t>(i + 1);
          const auto data = pattern(kStripe, seed);
          if (!t.vol->write(ByteOffset{k * kStripe}, data)) failed = true;
          last_seed[k] = seed;
          if (i % 7 == 0) {
            std::vector<std::byte> back(kStripe);
            if (!t.vol->read(ByteOffset{k * kStripe}, back) || back != data) failed = true;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    ASSERT_FALSE(failed.load());
    ASSERT_TRUE(t.vol->flush());
    std::vector<std::byte> all(kSize);
    ASSERT_EQ(*t.vol->read(ByteOffset{0}, all), kSize);
    const auto img = image_plaintext(t, 0, kSize);
    for (std::uint64_t k = 0; k < stripes; ++k) {
      const auto want = last_seed[k] ? pattern(kStripe, last_seed[k])
                                     : std::vector<std::byte>(initial.begin() + k * kStripe,
                                                              initial.begin() + (k + 1) * kStripe);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), all.begin() + k * kStripe)) << k;
      ASSERT_TRUE(std::equal(want.begin(), want.end(), img.begin() + k * kStripe)) << k;
    }
  }
}

// A crypto engine whose conversions of an armed direction wait until a conversion of that
// direction has entered on another thread (for at most 10 s, once: a liveness bound, not a
// timing assertion). Two threads meet only when one request's slices run on two threads at once.
class MeetingEngine final : public crypto::CryptoEngine {
 public:
  explicit MeetingEngine(const crypto::SectorCipher& c) : c_(c) {}
  crypto::SubmitStatus submit(crypto::CryptoRequest* r) override {
    const int d = r->dir == crypto::CryptoDir::kEncrypt ? 0 : 1;
    {
      std::unique_lock l(m_);
      if (armed_[d]) {
        threads_[d].insert(std::this_thread::get_id());
        cv_.notify_all();
        if (!cv_.wait_for(l, std::chrono::seconds(10), [&] { return threads_[d].size() >= 2; }))
          armed_[d] = false;  // nobody came: the request ran on one thread
      }
    }
    r->status = d == 0 ? c_.encrypt(r->run) : c_.decrypt(r->run);
    return crypto::SubmitStatus::kDone;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "meeting"; }
  void arm(int d) {
    std::lock_guard l(m_);
    armed_[d] = true;
    threads_[d].clear();
  }
  std::size_t threads_seen(int d) {
    std::lock_guard l(m_);
    armed_[d] = false;
    return threads_[d].size();
  }

 private:
  const crypto::SectorCipher& c_;
  std::mutex m_;
  std::condition_variable cv_;
  bool armed_[2] = {false, false};
  std::set<std::thread::id> threads_[2];
};

// Issue #13: the crypto of a large request (1 MiB, the largest FUSE request) is spread over the
// crypto workers, for a write (written behind) and for a read (streamed past the cache).
TEST(VolumeCrypto, AOneMibRequestIsConvertedOnMoreThanOneThread) {
  constexpr std::uint64_t kMiB = 1 << 20;
  MeetingEngine* engine = nullptr;
  EngineOptions eo;
  eo.threads = 4;
  eo.read_ahead_depth = 0;  // the read's own decryption, not a prefetch thread's
  TestVolume t =
      make_test_volume(4096, 0, 16 * kMiB, VolumeOptions{}, eo, [&](const crypto::SectorCipher& c) {
        auto e = std::make_unique<MeetingEngine>(c);
        engine = e.get();
        return e;
      });
  ASSERT_TRUE(t.vol);
  ASSERT_NE(engine, nullptr);
  const std::vector<std::byte> data = pattern(kMiB, 13);
  engine->arm(0);
  ASSERT_EQ(*t.vol->write(ByteOffset{4 * kMiB}, data), kMiB);
  ASSERT_TRUE(t.vol->flush());
  EXPECT_GE(engine->threads_seen(0), 2U) << "a 1 MiB write was encrypted on one thread";
  ASSERT_EQ(image_plaintext(t, 4 * kMiB, kMiB), data);
  std::vector<std::byte> back(kMiB);
  engine->arm(1);
  ASSERT_EQ(*t.vol->read(ByteOffset{8 * kMiB}, back), kMiB);  // never cached: from the store
  EXPECT_GE(engine->threads_seen(1), 2U) << "a 1 MiB read was decrypted on one thread";
}

}  // namespace
}  // namespace cryptmap::testing

// The engine's two-stage pipeline: a streaming request's store I/O of one piece overlaps the
// crypto of its neighbour. Shown with gates that only open when the overlap happens (reads: the
// decryption of piece 0 waits until the store is asked for piece 1, and a store that holds
// piece 1's read in flight until piece 0 is being decrypted; writes: the store write of piece 0
// waits until piece 1's encryption has begun); without the pipeline a gate times out.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "tests/unit/volume/engine/volume_test_util.h"

namespace cryptmap::testing {
namespace {

using volume::EngineOptions;
using volume::VolumeOptions;

// A one-shot gate with a bounded wait (a missing overlap is a failure, not a hang).
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard lock(mu);
    open = true;
    cv.notify_all();
  }
  bool wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(5), [&] { return open; });
  }
};

// On the conversion of the run starting at `gated_sector` (direction `dir`): holds it until the
// gate opens (kWait; records whether it opened in time) or opens the gate (kOpen); then
// converts synchronously.
enum class GateMode { kWait, kOpen };
class GatedEngine final : public crypto::CryptoEngine {
 public:
  GatedEngine(const crypto::SectorCipher& c, crypto::CryptoDir dir, std::uint64_t gated_sector,
              Gate& gate, GateMode mode)
      : c_(c), dir_(dir), sector_(gated_sector), gate_(gate), mode_(mode) {}
  crypto::SubmitStatus submit(crypto::CryptoRequest* r) override {
    if (r->dir == dir_ && r->run.first.value == sector_) {
      if (mode_ == GateMode::kWait) {
        opened_in_time = gate_.wait();
      } else {
        gate_.release();
      }
    }
    r->status = r->dir == crypto::CryptoDir::kEncrypt ? c_.encrypt(r->run) : c_.decrypt(r->run);
    return crypto::SubmitStatus::kDone;
  }
  void wait_for_drain() override {}
  const char* name() const noexcept override { return "gated"; }
  bool opened_in_time = false;

 private:
  const crypto::SectorCipher& c_;
  const crypto::CryptoDir dir_;
  const std::uint64_t sector_;
  Gate& gate_;
  const GateMode mode_;
};

std::unique_ptr<BorrowedStore> watched_store(volume::MemBackingStore& mem,
                                             std::function<void(std::uint64_t, bool)> hook) {
  auto store = std::make_unique<BorrowedStore>(mem);
  store->on_io = std::move(hook);
  return store;
}

constexpr std::uint32_t kSs = 4096;
constexpr std::uint64_t kPiece = 16 * 1024;  // buffer_bytes: 4 sectors per piece

std::unique_ptr<volume::Volume> open_gated(volume::MemBackingStore& mem, crypto::CryptoDir dir,
                                           std::uint64_t gated_sector, Gate& gate, GateMode mode,
                                           GatedEngine** engine,
                                           std::function<void(std::uint64_t, bool)> hook) {
  VolumeOptions opts;
  opts.cache_bytes = 0;  // every request streams
  EngineOptions eo;
  eo.buffer_bytes = kPiece;
  eo.batch_bytes = kPiece / 2;  // two batches per piece: the piece is converted in slices
  eo.parallel_threshold_bytes = kSs;
  eo.threads = 2;
  auto factory = [&](const crypto::SectorCipher& c) {
    auto e = std::make_unique<GatedEngine>(c, dir, gated_sector, gate, mode);
    *engine = e.get();
    return e;
  };
  auto v = volume::open_volume_with_engine(
      test_layout(kSs, 0), std::make_unique<FakeSectorCipher>(kSs, 0xC0FFEE ^ kSs), factory,
      watched_store(mem, std::move(hook)), opts, eo, nullptr);
  if (!v) {
    ADD_FAILURE() << v.error().message();
    return nullptr;
  }
  return std::move(*v);
}

TEST(Pipeline, AStreamingReadFetchesTheNextPieceWhileThePreviousIsDecrypted) {
  volume::MemBackingStore mem(8 * kPiece, "mem:pipeline");
  Gate gate;
  GatedEngine* engine = nullptr;
  // Decryption of piece 0 waits until the store is asked for piece 1.
  auto vol = open_gated(mem, crypto::CryptoDir::kDecrypt, 0, gate, GateMode::kWait, &engine,
                        [&](std::uint64_t off, bool write) {
                          if (!write && off == kPiece) gate.release();
                        });
  ASSERT_TRUE(vol);
  std::vector<std::byte> model(4 * kPiece);
  TestVolume check;
  check.store = &mem;
  check.ss = kSs;
  check.key = 0xC0FFEE ^ kSs;
  model = image_plaintext(check, 0, model.size());
  std::vector<std::byte> got(model.size());
  ASSERT_EQ(*vol->read(ByteOffset{0}, got), got.size());
  EXPECT_TRUE(engine->opened_in_time) << "piece 1 was not read while piece 0 was decrypted";
  EXPECT_TRUE(got == model);
}

// A store whose read batches are really in flight: every piece is read on its own thread, and
// the caller's work on a piece (read_batch_each) runs on the calling thread as the piece
// completes, in completion order, like the io_uring store. Hostile: every piece after the first
// is held in flight until `release` opens (bounded: it completes anyway after the gate's
// timeout, and `held_in_time` says whether it opened). An engine that waits for the whole batch
// before it decrypts anything never opens it.
class InFlightStore final : public volume::BackingStore {
 public:
  InFlightStore(volume::MemBackingStore& s, Gate& release) : s_(s), release_(release) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return s_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return s_.write_at(off, in);
  }
  Result<void> read_batch(std::span<volume::ReadPiece> pieces) const override {
    return read_batch_each(pieces, [](std::size_t) -> Result<void> { return ok(); });
  }
  Result<void> read_batch_each(std::span<volume::ReadPiece> pieces,
                               PieceWork on_read) const override {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::size_t> done;
    std::vector<std::thread> flight;
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      flight.emplace_back([&, i] {
        if (i > 0 && !release_.wait()) held_too_long = true;
        pieces[i].result = s_.read_at(pieces[i].off, pieces[i].out);
        std::lock_guard lock(mu);
        done.push_back(i);
        cv.notify_all();
      });
    }
    Result<void> first = ok();
    for (std::size_t n = 0; n < pieces.size(); ++n) {
      std::size_t i = 0;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return !done.empty(); });
        i = done.front();
        done.pop_front();
      }
      if (pieces[i].result) pieces[i].result = on_read(i);
    }
    for (std::thread& t : flight) t.join();
    for (const auto& p : pieces) {
      if (!p.result && first) first = p.result;
    }
    return first;
  }
  Result<void> sync() override { return ok(); }
  Result<void> discard(ByteOffset off, std::uint64_t len) override { return s_.discard(off, len); }
  std::uint64_t size_bytes() const noexcept override { return s_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return s_.name(); }
  mutable std::atomic<bool> held_too_long{false};

 private:
  volume::MemBackingStore& s_;
  Gate& release_;
};

TEST(Pipeline, AStreamingReadDecryptsAPieceWhileTheNextIsStillInFlight) {
  volume::MemBackingStore mem(8 * kPiece, "mem:pipeline");
  Gate gate;
  VolumeOptions opts;
  opts.cache_bytes = 0;  // every request streams
  EngineOptions eo;
  eo.buffer_bytes = kPiece;
  eo.batch_bytes = kPiece / 2;
  eo.parallel_threshold_bytes = kSs;
  eo.threads = 2;
  auto factory = [&](const crypto::SectorCipher& c) {
    // Opens the gate (releases pieces 1.. from the store) when piece 0's decryption begins.
    return std::make_unique<GatedEngine>(c, crypto::CryptoDir::kDecrypt, 0, gate, GateMode::kOpen);
  };
  auto store = std::make_unique<InFlightStore>(mem, gate);
  InFlightStore* watched = store.get();
  auto v = volume::open_volume_with_engine(test_layout(kSs, 0),
                                           std::make_unique<FakeSectorCipher>(kSs, 0xC0FFEE ^ kSs),
                                           factory, std::move(store), opts, eo, nullptr);
  ASSERT_TRUE(v) << v.error().message();
  TestVolume check;
  check.store = &mem;
  check.ss = kSs;
  check.key = 0xC0FFEE ^ kSs;
  const std::vector<std::byte> model = image_plaintext(check, 0, 4 * kPiece);
  std::vector<std::byte> got(model.size());
  ASSERT_EQ(*(*v)->read(ByteOffset{0}, got), got.size());
  EXPECT_FALSE(watched->held_too_long)
      << "piece 0 was decrypted only after the reads of pieces 1-3 had completed";
  EXPECT_TRUE(got == model);
}

TEST(Pipeline, AStreamingWriteEncryptsTheNextPieceWhileThePreviousIsWritten) {
  volume::MemBackingStore mem(8 * kPiece, "mem:pipeline");
  Gate gate;
  GatedEngine* engine = nullptr;
  // The store write of piece 0 waits until the encryption of piece 1 (sector 4) has begun.
  bool began_in_time = false;
  auto vol = open_gated(mem, crypto::CryptoDir::kEncrypt, kPiece / kSs, gate, GateMode::kOpen,
                        &engine, [&](std::uint64_t off, bool write) {
                          if (write && off == 0) began_in_time = gate.wait();
                        });
  ASSERT_TRUE(vol);
  const auto d = pattern(4 * kPiece - 100, 9);
  ASSERT_TRUE(vol->write(ByteOffset{50}, d));
  EXPECT_TRUE(began_in_time) << "piece 1 was not being encrypted while piece 0 was written";
  TestVolume check;
  check.store = &mem;
  check.ss = kSs;
  check.key = 0xC0FFEE ^ kSs;
  EXPECT_TRUE(image_plaintext(check, 50, d.size()) == d);
}

}  // namespace
}  // namespace cryptmap::testing

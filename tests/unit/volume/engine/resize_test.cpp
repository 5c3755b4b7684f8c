// Volume::resize on the engine (cryptmap resize, docs/resize.md): growing to an image that grew,
// shrinking with dirty data past the new end (dropped, never written back), the refusals, and
// that a shrink followed by a grow does not serve blocks cached before the shrink.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "tests/unit/volume/engine/volume_test_util.h"

namespace cryptmap::testing {
namespace {

using volume::VolumeOptions;

// A MemBackingStore the test owns, seen by the volume as `size` bytes (an image file that the
// test "grows with truncate" by raising it). Records the highest byte any write reached.
class ResizableStore final : public volume::BackingStore {
 public:
  ResizableStore(volume::MemBackingStore& s, std::uint64_t size) : s_(s), size_(size) {}
  void set_size(std::uint64_t n) { size_.store(n); }
  std::uint64_t highest_write_end() const { return highest_->load(); }
  // The counter itself, which outlives the store (the volume owns and destroys the store).
  std::shared_ptr<const std::atomic<std::uint64_t>> highest_counter() const { return highest_; }

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    if (off.value + out.size() > size_.load())
      return make_error(Errc::kIo, "test store: read past its size", off.value);
    return s_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    const std::uint64_t end = off.value + in.size();
    std::uint64_t seen = highest_->load();
    while (end > seen && !highest_->compare_exchange_weak(seen, end)) {
    }
    return s_.write_at(off, in);
  }
  Result<void> sync() override { return s_.sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t len) override { return s_.discard(off, len); }
  std::uint64_t size_bytes() const noexcept override { return size_.load(); }
  Result<std::uint64_t> refresh_size() override { return size_.load(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return s_.name(); }

 private:
  volume::MemBackingStore& s_;
  std::atomic<std::uint64_t> size_;
  std::shared_ptr<std::atomic<std::uint64_t>> highest_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

constexpr std::uint32_t kSs = 512;
constexpr std::uint64_t kOff = 4096;  // data offset

struct Fixture {
  explicit Fixture(std::uint64_t sectors, VolumeOptions opts = {}, std::uint32_t ss = kSs)
      : mem(kOff + 1024 * 4096, "mem:resize"), ss_(ss) {
    auto store = std::make_unique<ResizableStore>(mem, kOff + sectors * ss);
    rs = store.get();
    t.store = &mem;
    t.ss = ss;
    t.data_off = kOff;
    t.key = 0xC0FFEE ^ ss;
    auto cipher = std::make_unique<FakeSectorCipher>(ss, t.key);
    auto v = volume::open_volume_with_engine(test_layout(ss, kOff), std::move(cipher), {},
                                             std::move(store), opts, {}, nullptr);
    if (!v) {
      ADD_FAILURE() << v.error().message();
      return;
    }
    t.vol = std::move(*v);
  }
  volume::MemBackingStore mem;
  std::uint32_t ss_;
  ResizableStore* rs = nullptr;  // owned by the volume
  TestVolume t;
};

TEST(VolumeResize, GrowsToWhatTheImageNowHoldsAndServesTheNewSectors) {
  Fixture f(64);
  ASSERT_TRUE(f.t.vol);
  ASSERT_EQ(f.t.vol->size_bytes(), 64u * kSs);
  // Data already in the image past the old end (written by someone else, e.g. before a shrink).
  const auto beyond = pattern(64 * kSs, 9);
  image_write_plaintext(f.t, 64, beyond);
  std::vector<std::byte> buf(kSs);
  EXPECT_EQ(*f.t.vol->read(ByteOffset{64 * kSs}, buf), 0u) << "EOF before the resize";
  f.rs->set_size(kOff + 128 * kSs + 100);  // not a whole sector more: rounded down
  auto r = f.t.vol->resize(0);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 128u * kSs);
  EXPECT_EQ(f.t.vol->size_bytes(), 128u * kSs);
  std::vector<std::byte> got(64 * kSs);
  ASSERT_EQ(*f.t.vol->read(ByteOffset{64 * kSs}, got), got.size());
  EXPECT_EQ(got, beyond);
  EXPECT_EQ(*f.t.vol->read(ByteOffset{128 * kSs}, buf), 0u) << "EOF at the new end";
  const auto tail = pattern(kSs, 3);
  ASSERT_TRUE(f.t.vol->write(ByteOffset{127 * kSs}, tail));
  ASSERT_TRUE(f.t.vol->flush());
  EXPECT_EQ(image_plaintext(f.t, 127 * kSs, kSs), tail);
  EXPECT_FALSE(f.t.vol->write(ByteOffset{128 * kSs}, tail)) << "a write at the new end";
}

TEST(VolumeResize, ShrinkDropsDirtySectorsPastTheEndAndNeverWritesThem) {
  VolumeOptions o;
  o.flush_age_ms = 3600 * 1000;  // nothing is written back unless asked
  Fixture f(128, o);
  ASSERT_TRUE(f.t.vol);
  const auto before = image_plaintext(f.t, 0, 128 * kSs);
  const auto d = pattern(128 * kSs, 4);
  for (std::uint64_t s = 0; s < 128; s += 8)  // small writes: they stay in the cache, dirty
    ASSERT_TRUE(f.t.vol->write(ByteOffset{s * kSs},
                               std::span<const std::byte>(d).subspan(s * kSs, 8 * kSs)));
  ASSERT_EQ(f.rs->highest_write_end(), 0u) << "the writes must still be dirty in the cache";
  auto r = f.t.vol->resize(96 * kSs);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 96u * kSs);
  std::vector<std::byte> buf(kSs);
  EXPECT_EQ(*f.t.vol->read(ByteOffset{96 * kSs}, buf), 0u) << "EOF at the new end";
  auto crossing = std::vector<std::byte>(2 * kSs);
  EXPECT_EQ(*f.t.vol->read(ByteOffset{95 * kSs}, crossing), kSs) << "short read at the end";
  EXPECT_FALSE(f.t.vol->write(ByteOffset{96 * kSs}, buf));
  ASSERT_TRUE(f.t.vol->flush());
  EXPECT_LE(f.rs->highest_write_end(), kOff + 96 * kSs) << "a dropped sector was written back";
  EXPECT_EQ(image_plaintext(f.t, 0, 96 * kSs),
            std::vector<std::byte>(d.begin(), d.begin() + 96 * kSs));
  EXPECT_EQ(image_plaintext(f.t, 96 * kSs, 32 * kSs),
            std::vector<std::byte>(before.begin() + 96 * kSs, before.end()))
      << "the image past the new end must be as it was before the writes";
  const auto highest = f.rs->highest_counter();  // f.rs dies with the volume
  f.t.vol.reset();                               // close: write-back of whatever is dirty
  EXPECT_LE(highest->load(), kOff + 96 * kSs);
}

TEST(VolumeResize, GrowAfterShrinkReadsTheImageNotBlocksCachedBeforeTheShrink) {
  Fixture f(64);
  ASSERT_TRUE(f.t.vol);
  const auto old = pattern(16 * kSs, 1);
  ASSERT_TRUE(f.t.vol->write(ByteOffset{48 * kSs}, old));
  ASSERT_TRUE(f.t.vol->flush());
  std::vector<std::byte> got(16 * kSs);
  ASSERT_EQ(*f.t.vol->read(ByteOffset{48 * kSs}, got), got.size());  // cached, clean
  ASSERT_TRUE(f.t.vol->resize(32 * kSs));
  const auto fresh = pattern(16 * kSs, 2);  // the image changes while they are out of the volume
  image_write_plaintext(f.t, 48, fresh);
  ASSERT_TRUE(f.t.vol->resize(0));
  EXPECT_EQ(f.t.vol->size_bytes(), 64u * kSs);
  ASSERT_EQ(*f.t.vol->read(ByteOffset{48 * kSs}, got), got.size());
  EXPECT_EQ(got, fresh);
}

TEST(VolumeResize, RefusesWhatDoesNotFitAndKeepsTheSize) {
  Fixture f(64, {}, 4096);
  ASSERT_TRUE(f.t.vol);
  const std::uint64_t size = f.t.vol->size_bytes();
  auto too_big = f.t.vol->resize(size + 4096);
  ASSERT_FALSE(too_big);
  EXPECT_EQ(too_big.error().code, Errc::kNoSpace);
  EXPECT_NE(too_big.error().message().find("too small"), std::string::npos)
      << too_big.error().message();
  auto misaligned = f.t.vol->resize(size - 512);
  ASSERT_FALSE(misaligned);
  EXPECT_EQ(misaligned.error().code, Errc::kInvalid);
  f.rs->set_size(kOff);  // nothing after the data offset
  auto empty = f.t.vol->resize(0);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, Errc::kInvalid);
  EXPECT_EQ(f.t.vol->size_bytes(), size);
}

TEST(VolumeResize, ReadOnlyVolumeIsRefused) {
  VolumeOptions o;
  o.read_only = true;
  Fixture f(64, o);
  ASSERT_TRUE(f.t.vol);
  auto r = f.t.vol->resize(32 * kSs);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kReadOnly);
  EXPECT_EQ(f.t.vol->size_bytes(), 64u * kSs);
}

}  // namespace
}  // namespace cryptmap::testing

// EmulatedZonedStore: every rule of a host-managed drive, persistence, crash consistency and
// hostile sidecars. Real files in a scratch directory; a forked child plays the crashing process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "tests/unit/volume/store/backing_store_contract.h"
#include "volume/zone/internal/zone_io.h"
#include "volume/zone/internal/zone_rules.h"
#include "volume/zone/zoned_store.h"
#include "zone_test_util.h"

namespace cryptmap::volume {
namespace {

using testing::all_zero;
using testing::describe;
using testing::pattern;
using testing::ScratchDir;
namespace zi = zone_internal;

constexpr std::uint64_t kZone = 64 * 1024;  // 16 blocks of 4 KiB
constexpr std::uint32_t kBlock = 4096;
constexpr std::uint64_t kZones = 8;
constexpr std::uint64_t kConv = 2;  // zones 0, 1 conventional; 2..7 sequential

ByteOffset zone_start(std::uint64_t i) { return ByteOffset{i * kZone}; }

class EmulatedZonedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = dir_.file("disk.img");
    store_ = create();
    ASSERT_NE(store_, nullptr);
  }

  std::unique_ptr<ZonedStore> create(std::uint64_t capacity = 0) {
    ZonedStoreOptions o;
    o.create = true;
    o.zone_size_bytes = kZone;
    o.zone_count = kZones;
    o.conventional_zones = kConv;
    o.zone_capacity_bytes = capacity;
    o.logical_block_bytes = kBlock;
    auto s = open_zoned_store(image_, o);
    EXPECT_TRUE(s) << describe(s);
    return s ? std::move(*s) : nullptr;
  }

  Result<std::unique_ptr<ZonedStore>> reopen(bool read_only = false) {
    ZonedStoreOptions o;
    o.read_only = read_only;
    return open_zoned_store(image_, o);
  }

  Result<void> write(std::uint64_t off, std::size_t len, std::uint32_t seed = 1) {
    const auto data = pattern(off, len, seed);
    return store_->write_at(ByteOffset{off}, data);
  }

  std::vector<std::byte> read(std::uint64_t off, std::size_t len) {
    std::vector<std::byte> out(len, std::byte{0xEE});
    auto r = store_->read_at(ByteOffset{off}, out);
    EXPECT_TRUE(r) << describe(r);
    return out;
  }

  // Writes raw bytes into the image behind the store's back (the file past wp may hold anything).
  void scribble(std::uint64_t off, std::size_t len) {
    UniqueFd fd(::open(image_.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    const std::vector<std::byte> junk(len, std::byte{0xA5});
    ASSERT_EQ(::pwrite(fd.get(), junk.data(), len, static_cast<off_t>(off)),
              static_cast<ssize_t>(len));
  }

  ZoneInfo zone(std::uint64_t i) { return store_->zone_map().zone(i); }

  ScratchDir dir_;
  std::string image_;
  std::unique_ptr<ZonedStore> store_;
};

TEST_F(EmulatedZonedStoreTest, CreatesTheRequestedLayout) {
  const ZoneMap& m = store_->zone_map();
  EXPECT_EQ(m.zone_count(), kZones);
  EXPECT_EQ(m.zone_size_bytes(), kZone);
  EXPECT_EQ(store_->size_bytes(), kZones * kZone);
  EXPECT_EQ(store_->logical_block_bytes(), kBlock);
  EXPECT_EQ(store_->zones(), &m);
  for (std::uint64_t i = 0; i < kZones; ++i) {
    const ZoneInfo z = m.zone(i);
    if (i < kConv) {
      EXPECT_EQ(z.type, ZoneType::kConventional);
      EXPECT_EQ(z.cond, ZoneCond::kNotWp);
    } else {
      EXPECT_EQ(z.type, ZoneType::kSeqWriteRequired);
      EXPECT_EQ(z.cond, ZoneCond::kEmpty);
      EXPECT_EQ(z.wp, z.start);
    }
  }
  auto rep = store_->report_zones(6, 100);
  ASSERT_TRUE(rep);
  ASSERT_EQ(rep->size(), 2u);
  EXPECT_EQ((*rep)[1].index, 7u);
  EXPECT_EQ(store_->report_zones(8, 1).error().code, Errc::kInvalid);
}

TEST_F(EmulatedZonedStoreTest, WriteAtWritePointerAdvancesIt) {
  const std::uint64_t s = zone_start(2).value;
  ASSERT_TRUE(write(s, kBlock));
  EXPECT_EQ(zone(2).wp, ByteOffset{s + kBlock});
  EXPECT_EQ(zone(2).cond, ZoneCond::kImplicitOpen);
  ASSERT_TRUE(write(s + kBlock, 3 * kBlock));
  EXPECT_EQ(zone(2).wp, ByteOffset{s + 4 * kBlock});
  EXPECT_EQ(read(s, 4 * kBlock), pattern(s, 4 * kBlock, 1));
}

TEST_F(EmulatedZonedStoreTest, WriteBeforeOrAfterWritePointerFailsNamingZoneAndWp) {
  const std::uint64_t s = zone_start(3).value;
  ASSERT_TRUE(write(s, 2 * kBlock));
  for (std::uint64_t off : {s, s + kBlock, s + 3 * kBlock, s + 8 * kBlock}) {
    auto r = write(off, kBlock, 9);
    ASSERT_FALSE(r) << off;
    EXPECT_EQ(r.error().code, Errc::kZoneOrder);
    EXPECT_EQ(r.error().object, 3u);
    const std::string msg = r.error().message();
    EXPECT_NE(msg.find("write pointer at " + std::to_string(s + 2 * kBlock)), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("write at " + std::to_string(off)), std::string::npos) << msg;
  }
  // Nothing changed: wp and data as before.
  EXPECT_EQ(zone(3).wp, ByteOffset{s + 2 * kBlock});
  EXPECT_EQ(read(s, 2 * kBlock), pattern(s, 2 * kBlock, 1));
  EXPECT_TRUE(all_zero(read(s + 2 * kBlock, 14 * kBlock)));
}

TEST_F(EmulatedZonedStoreTest, WriteOnAnEmptyZoneMustStartAtItsStart) {
  auto r = write(zone_start(4).value + kBlock, kBlock);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kZoneOrder);
  EXPECT_EQ(zone(4).cond, ZoneCond::kEmpty);
}

TEST_F(EmulatedZonedStoreTest, UnalignedWritesToSequentialZonesFail) {
  const std::uint64_t s = zone_start(2).value;
  EXPECT_EQ(write(s, 512).error().code, Errc::kZoneOrder);
  EXPECT_EQ(write(s, kBlock + 1).error().code, Errc::kZoneOrder);
  EXPECT_EQ(zone(2).wp, ByteOffset{s});
}

TEST_F(EmulatedZonedStoreTest, WritesCrossingAZoneBoundaryFail) {
  // Fill zone 2 up to its last block, then try to write two blocks (ends in zone 3).
  const std::uint64_t s = zone_start(2).value;
  ASSERT_TRUE(write(s, kZone - kBlock));
  auto r = write(s + kZone - kBlock, 2 * kBlock);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kZoneOrder);
  EXPECT_EQ(zone(2).wp, ByteOffset{s + kZone - kBlock});
  EXPECT_EQ(zone(3).cond, ZoneCond::kEmpty);
  // Conventional -> sequential crossing fails too.
  auto r2 = write(zone_start(2).value - kBlock, 2 * kBlock);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, Errc::kZoneOrder);
  // Conventional -> conventional is a plain write (ZBC allows it).
  ASSERT_TRUE(write(zone_start(1).value - 100, 300, 5));
  EXPECT_EQ(read(zone_start(1).value - 100, 300), pattern(zone_start(1).value - 100, 300, 5));
  // Past the end of the image.
  auto r3 = write(kZones * kZone - kBlock, 2 * kBlock);
  ASSERT_FALSE(r3);
  EXPECT_EQ(r3.error().code, Errc::kNoSpace);
}

TEST_F(EmulatedZonedStoreTest, FullZoneRejectsWritesAndReadsWhole) {
  const std::uint64_t s = zone_start(5).value;
  ASSERT_TRUE(write(s, kZone / 2));
  ASSERT_TRUE(write(s + kZone / 2, kZone / 2));
  EXPECT_EQ(zone(5).cond, ZoneCond::kFull);
  EXPECT_EQ(zone(5).wp, zone(5).end());
  auto r = write(s + kZone - kBlock, kBlock);  // anywhere: the zone is full
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kZoneOrder);
  EXPECT_NE(r.error().message().find("full"), std::string::npos);
  EXPECT_EQ(read(s, kZone), pattern(s, kZone, 1));
}

TEST_F(EmulatedZonedStoreTest, ZoneCapacityBelowZoneSizeIsEnforced) {
  store_.reset();
  std::remove(zone_sidecar_path(image_).c_str());
  store_ = create(kZone / 2);
  ASSERT_NE(store_, nullptr);
  const std::uint64_t s = zone_start(2).value;
  ASSERT_TRUE(write(s, kZone / 2 - kBlock));
  auto r = write(s + kZone / 2 - kBlock, 2 * kBlock);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kZoneOrder);
  EXPECT_NE(r.error().message().find("capacity"), std::string::npos);
  ASSERT_TRUE(write(s + kZone / 2 - kBlock, kBlock));
  EXPECT_EQ(zone(2).cond, ZoneCond::kFull);
  // Past the capacity a full zone reads zeros even if the file holds junk there.
  scribble(s + kZone / 2, kBlock);
  EXPECT_TRUE(all_zero(read(s + kZone / 2, kZone / 2)));
}

TEST_F(EmulatedZonedStoreTest, ReadsPastTheWritePointerAreZerosWhateverTheFileHolds) {
  const std::uint64_t s = zone_start(2).value;
  ASSERT_TRUE(write(s, 2 * kBlock));
  scribble(s + 2 * kBlock, 4 * kBlock);   // junk past wp (e.g. a write a crash dropped)
  scribble(zone_start(4).value, kBlock);  // junk in an empty zone
  const auto got = read(s, kZone);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + 2 * kBlock, pattern(s, 2 * kBlock, 1).begin()));
  EXPECT_TRUE(all_zero({got.begin() + 2 * kBlock, got.end()}));
  EXPECT_TRUE(all_zero(read(zone_start(4).value, kZone)));
  // A read spanning zones (conventional | sequential | sequential) stitches both rules.
  ASSERT_TRUE(write(zone_start(1).value + kZone - 1000, 1000, 3));
  const auto span = read(zone_start(1).value + kZone - 1000, 1000 + kZone + 10);
  EXPECT_TRUE(std::equal(span.begin(), span.begin() + 1000,
                         pattern(zone_start(1).value + kZone - 1000, 1000, 3).begin()));
  EXPECT_TRUE(std::equal(span.begin() + 1000, span.begin() + 1000 + 2 * kBlock,
                         pattern(s, 2 * kBlock, 1).begin()));
  // Past the end of the image: kIo (BackingStore contract).
  std::vector<std::byte> out(kBlock);
  EXPECT_EQ(store_->read_at(ByteOffset{kZones * kZone - 10}, out).error().code, Errc::kIo);
}

TEST_F(EmulatedZonedStoreTest, ResetRewindsZerosAndAllowsRewriting) {
  const std::uint64_t s = zone_start(6).value;
  ASSERT_TRUE(write(s, 5 * kBlock));
  ASSERT_TRUE(store_->reset_zone(6));
  EXPECT_EQ(zone(6).cond, ZoneCond::kEmpty);
  EXPECT_EQ(zone(6).wp, ByteOffset{s});
  EXPECT_TRUE(all_zero(read(s, kZone)));
  // The reset is durable at once: the sidecar on disk already says empty.
  auto bytes = zi::read_small_file(zone_sidecar_path(image_), 1 << 20);
  ASSERT_TRUE(bytes);
  auto sc = zi::decode_sidecar(*bytes, "x");
  ASSERT_TRUE(sc) << describe(sc);
  EXPECT_EQ(sc->zones[6].cond, ZoneCond::kEmpty);
  EXPECT_EQ(sc->zones[6].wp_rel, 0u);
  // Old offsets are not writable except at the new wp.
  EXPECT_EQ(write(s + 5 * kBlock, kBlock).error().code, Errc::kZoneOrder);
  ASSERT_TRUE(write(s, kBlock, 2));
  EXPECT_EQ(read(s, kBlock), pattern(s, kBlock, 2));
  // A full zone resets too; reset of an empty zone is a no-op.
  ASSERT_TRUE(store_->reset_zone(7));
  EXPECT_EQ(store_->reset_zone(0).error().code, Errc::kInvalid);  // conventional
  EXPECT_EQ(store_->reset_zone(kZones).error().code, Errc::kInvalid);
}

TEST_F(EmulatedZonedStoreTest, FinishMakesTheZoneFullAndZeroesTheRest) {
  const std::uint64_t s = zone_start(3).value;
  ASSERT_TRUE(write(s, 3 * kBlock));
  scribble(s + 3 * kBlock, 4 * kBlock);  // what a crash could leave past wp
  ASSERT_TRUE(store_->finish_zone(3));
  EXPECT_EQ(zone(3).cond, ZoneCond::kFull);
  EXPECT_EQ(zone(3).wp, zone(3).end());
  EXPECT_EQ(write(s + 3 * kBlock, kBlock).error().code, Errc::kZoneOrder);
  const auto got = read(s, kZone);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + 3 * kBlock, pattern(s, 3 * kBlock, 1).begin()));
  EXPECT_TRUE(all_zero({got.begin() + 3 * kBlock, got.end()}));
  ASSERT_TRUE(store_->finish_zone(3));  // already full: no-op
  ASSERT_TRUE(store_->finish_zone(4));  // empty -> full, all zeros
  EXPECT_TRUE(all_zero(read(zone_start(4).value, kZone)));
  EXPECT_EQ(store_->finish_zone(1).error().code, Errc::kInvalid);
  ASSERT_TRUE(store_->reset_zone(3));
  ASSERT_TRUE(write(s, kBlock));
}

TEST_F(EmulatedZonedStoreTest, ExplicitOpenAndClose) {
  ASSERT_TRUE(store_->open_zone(2));
  EXPECT_EQ(zone(2).cond, ZoneCond::kExplicitOpen);
  ASSERT_TRUE(write(zone_start(2).value, kBlock));
  EXPECT_EQ(zone(2).cond, ZoneCond::kExplicitOpen);  // stays explicit
  ASSERT_TRUE(store_->close_zone(2));
  EXPECT_EQ(zone(2).cond, ZoneCond::kClosed);
  ASSERT_TRUE(write(zone_start(2).value + kBlock, kBlock));  // a closed zone is writable at wp
  EXPECT_EQ(zone(2).cond, ZoneCond::kImplicitOpen);
  ASSERT_TRUE(store_->open_zone(3));
  ASSERT_TRUE(store_->close_zone(3));
  EXPECT_EQ(zone(3).cond, ZoneCond::kEmpty);  // closing an unwritten zone empties it
}

TEST_F(EmulatedZonedStoreTest, ConventionalZonesBehaveLikeAFile) {
  std::mt19937 rng(42);
  std::vector<std::byte> shadow(kConv * kZone, std::byte{0});
  for (int i = 0; i < 200; ++i) {
    const std::uint64_t off = rng() % (kConv * kZone - 1);
    const std::size_t len = 1 + rng() % std::min<std::uint64_t>(5000, kConv * kZone - off);
    const auto data = pattern(off, len, static_cast<std::uint32_t>(i));
    ASSERT_TRUE(store_->write_at(ByteOffset{off}, data));
    std::copy(data.begin(), data.end(), shadow.begin() + static_cast<long>(off));
  }
  EXPECT_EQ(read(0, kConv * kZone), shadow);
  ASSERT_TRUE(store_->discard(ByteOffset{0}, kBlock));
  EXPECT_TRUE(all_zero(read(0, kBlock)));
  EXPECT_EQ(store_->discard(zone_start(2), kBlock).error().code, Errc::kUnsupported);
}

TEST_F(EmulatedZonedStoreTest, StateSurvivesCloseAndReopen) {
  ASSERT_TRUE(write(zone_start(2).value, 3 * kBlock));
  ASSERT_TRUE(write(zone_start(3).value, kZone));  // full
  ASSERT_TRUE(store_->open_zone(4));               // explicit open, nothing written
  ASSERT_TRUE(write(100, 1000, 8));                // conventional data
  store_.reset();                                  // destructor persists (like unmount)
  auto r = reopen();
  ASSERT_TRUE(r) << describe(r);
  store_ = std::move(*r);
  EXPECT_EQ(zone(2).wp, ByteOffset{zone_start(2).value + 3 * kBlock});
  EXPECT_EQ(zone(2).cond, ZoneCond::kClosed);  // power cycle closes open zones (ZBC)
  EXPECT_EQ(zone(3).cond, ZoneCond::kFull);
  EXPECT_EQ(zone(4).cond, ZoneCond::kEmpty);
  EXPECT_EQ(read(zone_start(2).value, 3 * kBlock), pattern(zone_start(2).value, 3 * kBlock, 1));
  EXPECT_EQ(read(100, 1000), pattern(100, 1000, 8));
  ASSERT_TRUE(write(zone_start(2).value + 3 * kBlock, kBlock));  // continues at the persisted wp
  EXPECT_EQ(write(zone_start(2).value, kBlock).error().code, Errc::kZoneOrder);
}

TEST_F(EmulatedZonedStoreTest, OneProcessPerImageAndNoSilentReformat) {
  auto second = reopen();
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::kBusy);
  store_.reset();
  ZonedStoreOptions o;
  o.create = true;
  o.zone_size_bytes = kZone;
  o.zone_count = 2;
  auto again = open_zoned_store(image_, o);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kBusy);
  EXPECT_NE(again.error().message().find(".zones"), std::string::npos);
}

TEST_F(EmulatedZonedStoreTest, ReadOnlyOpenRefusesEveryMutation) {
  ASSERT_TRUE(write(zone_start(2).value, kBlock));
  store_.reset();
  auto r = reopen(/*read_only=*/true);
  ASSERT_TRUE(r) << describe(r);
  store_ = std::move(*r);
  EXPECT_EQ(write(zone_start(2).value + kBlock, kBlock).error().code, Errc::kReadOnly);
  EXPECT_EQ(store_->reset_zone(2).error().code, Errc::kReadOnly);
  EXPECT_EQ(store_->finish_zone(2).error().code, Errc::kReadOnly);
  EXPECT_EQ(read(zone_start(2).value, kBlock), pattern(zone_start(2).value, kBlock, 1));
}

// The durability rule: a crash loses only writes no sync() covered, and the persisted wp is never
// ahead of durable data. The child process writes, syncs, writes more and dies without cleanup.
TEST_F(EmulatedZonedStoreTest, CrashKeepsTheLastSyncedWritePointer) {
  store_.reset();
  const std::uint64_t s = zone_start(2).value;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ZonedStoreOptions o;
    auto st = open_zoned_store(image_, o);
    if (!st) ::_exit(10);
    const auto a = pattern(s, 2 * kBlock, 1);
    const auto b = pattern(s + 2 * kBlock, 3 * kBlock, 2);
    if (!(*st)->write_at(ByteOffset{s}, a)) ::_exit(11);
    if (!(*st)->sync()) ::_exit(12);
    if (!(*st)->write_at(ByteOffset{s + 2 * kBlock}, b)) ::_exit(13);
    if (!(*st)->reset_zone(3)) ::_exit(14);  // reset of an empty zone: no-op, no persist
    ::_exit(0);                              // crash: no destructor, no final sync
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto r = reopen();
  ASSERT_TRUE(r) << describe(r);
  store_ = std::move(*r);
  EXPECT_EQ(zone(2).wp, ByteOffset{s + 2 * kBlock});
  EXPECT_EQ(read(s, 2 * kBlock), pattern(s, 2 * kBlock, 1));
  // The unsynced write's bytes may be in the file, but they are past wp: zeros, and rewritable.
  EXPECT_TRUE(all_zero(read(s + 2 * kBlock, 3 * kBlock)));
  ASSERT_TRUE(write(s + 2 * kBlock, kBlock, 3));
  EXPECT_EQ(read(s + 2 * kBlock, kBlock), pattern(s + 2 * kBlock, kBlock, 3));
}

// A reset is durable when it returns: a crash right after it (with new, unsynced writes in the
// zone) comes back empty, never with the old wp over punched data.
TEST_F(EmulatedZonedStoreTest, CrashAfterResetComesBackEmpty) {
  store_.reset();
  const std::uint64_t s = zone_start(5).value;
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto st = open_zoned_store(image_, ZonedStoreOptions{});
    if (!st) ::_exit(10);
    if (!(*st)->write_at(ByteOffset{s}, pattern(s, 4 * kBlock, 1))) ::_exit(11);
    if (!(*st)->sync()) ::_exit(12);
    if (!(*st)->reset_zone(5)) ::_exit(13);
    if (!(*st)->write_at(ByteOffset{s}, pattern(s, kBlock, 2))) ::_exit(14);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  auto r = reopen();
  ASSERT_TRUE(r) << describe(r);
  store_ = std::move(*r);
  EXPECT_EQ(zone(5).cond, ZoneCond::kEmpty);
  EXPECT_EQ(zone(5).wp, ByteOffset{s});
  EXPECT_TRUE(all_zero(read(s, kZone)));
}

TEST_F(EmulatedZonedStoreTest, CorruptTruncatedOrMissingSidecarIsAClearError) {
  ASSERT_TRUE(write(zone_start(2).value, kBlock));
  store_.reset();
  const std::string sidecar = zone_sidecar_path(image_);
  auto good = zi::read_small_file(sidecar, 1 << 20);
  ASSERT_TRUE(good);
  auto put = [&](const std::vector<std::byte>& b) {
    std::ofstream out(sidecar, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  };
  auto expect = [&](Errc code, const char* why) {
    auto r = reopen();
    ASSERT_FALSE(r) << why;
    EXPECT_EQ(r.error().code, code) << why;
    EXPECT_NE(r.error().message().find("disk.img.zones"), std::string::npos)
        << why << ": " << r.error().message();
  };
  auto flipped = *good;
  flipped[64 + 2 * 16 + 7] ^= std::byte{0x01};  // zone 2 wp, checksum now wrong
  put(flipped);
  expect(Errc::kCorrupt, "bit flip");
  put({good->begin(), good->begin() + 100});
  expect(Errc::kCorrupt, "truncated");
  put({});
  expect(Errc::kCorrupt, "empty");
  // A consistent checksum over an impossible state (empty zone with wp advanced).
  auto sc = zi::decode_sidecar(*good, sidecar);
  ASSERT_TRUE(sc);
  sc->zones[2].cond = ZoneCond::kEmpty;
  put(zi::encode_sidecar(*sc));
  expect(Errc::kCorrupt, "inconsistent state");
  std::remove(sidecar.c_str());
  expect(Errc::kNotFound, "missing");
  put(*good);
  ASSERT_EQ(::truncate(image_.c_str(), static_cast<off_t>(kZone)), 0);
  {
    auto r = reopen();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Errc::kCorrupt);
    EXPECT_NE(r.error().message().find("disk.img"), std::string::npos);
  }
}

TEST_F(EmulatedZonedStoreTest, OfflineAndReadOnlyZonesFromTheSidecar) {
  store_.reset();
  const std::string sidecar = zone_sidecar_path(image_);
  auto bytes = zi::read_small_file(sidecar, 1 << 20);
  ASSERT_TRUE(bytes);
  auto sc = zi::decode_sidecar(*bytes, sidecar);
  ASSERT_TRUE(sc);
  sc->zones[4].cond = ZoneCond::kOffline;
  sc->zones[5].cond = ZoneCond::kReadOnly;
  ASSERT_TRUE(zi::write_file_atomic(sidecar, zi::encode_sidecar(*sc)));
  auto r = reopen();
  ASSERT_TRUE(r) << describe(r);
  store_ = std::move(*r);
  std::vector<std::byte> buf(kBlock);
  EXPECT_EQ(store_->read_at(zone_start(4), buf).error().code, Errc::kIo);
  EXPECT_EQ(write(zone_start(4).value, kBlock).error().code, Errc::kIo);
  EXPECT_EQ(store_->reset_zone(4).error().code, Errc::kIo);
  EXPECT_TRUE(store_->read_at(zone_start(5), buf));
  EXPECT_EQ(write(zone_start(5).value, kBlock).error().code, Errc::kReadOnly);
  EXPECT_EQ(store_->reset_zone(5).error().code, Errc::kReadOnly);
}

TEST(EmulatedZonedStoreCreateTest, RejectsBadGeometry) {
  ScratchDir dir;
  auto attempt = [&](auto tweak) {
    ZonedStoreOptions o;
    o.create = true;
    o.zone_size_bytes = kZone;
    o.zone_count = 4;
    tweak(o);
    return open_zoned_store(dir.file("g.img"), o);
  };
  EXPECT_EQ(attempt([](ZonedStoreOptions& o) { o.zone_size_bytes = 3 * 4096; }).error().code,
            Errc::kInvalid);
  EXPECT_EQ(attempt([](ZonedStoreOptions& o) { o.zone_size_bytes = 2048; }).error().code,
            Errc::kInvalid);  // smaller than the 4 KiB block
  EXPECT_EQ(attempt([](ZonedStoreOptions& o) { o.zone_count = 0; }).error().code, Errc::kInvalid);
  EXPECT_EQ(attempt([](ZonedStoreOptions& o) { o.conventional_zones = 5; }).error().code,
            Errc::kInvalid);
  EXPECT_EQ(
      attempt([](ZonedStoreOptions& o) { o.zone_capacity_bytes = kZone + 4096; }).error().code,
      Errc::kInvalid);
  EXPECT_EQ(attempt([](ZonedStoreOptions& o) { o.logical_block_bytes = 1000; }).error().code,
            Errc::kInvalid);
  EXPECT_EQ(attempt([](ZonedStoreOptions& o) { o.sequential_type = ZoneType::kConventional; })
                .error()
                .code,
            Errc::kInvalid);
  // Nothing was left behind by the failed attempts.
  EXPECT_FALSE(std::filesystem::exists(dir.file("g.img.zones")));
}

TEST(EmulatedZonedStoreCreateTest, SequentialWritePreferredZonesAcceptRandomWrites) {
  ScratchDir dir;
  ZonedStoreOptions o;
  o.create = true;
  o.zone_size_bytes = kZone;
  o.zone_count = 2;
  o.sequential_type = ZoneType::kSeqWritePreferred;
  auto s = open_zoned_store(dir.file("ha.img"), o);
  ASSERT_TRUE(s) << describe(s);
  auto& st = **s;
  const auto d = pattern(4 * kBlock, kBlock, 1);
  ASSERT_TRUE(st.write_at(ByteOffset{4 * kBlock}, d));  // host-aware: not at wp, accepted
  EXPECT_EQ(st.zone_map().zone(0).wp, ByteOffset{5 * kBlock});
  const auto e = pattern(kBlock, kBlock, 2);
  ASSERT_TRUE(st.write_at(ByteOffset{kBlock}, e));  // below wp: wp stays
  EXPECT_EQ(st.zone_map().zone(0).wp, ByteOffset{5 * kBlock});
  std::vector<std::byte> out(5 * kBlock);
  ASSERT_TRUE(st.read_at(ByteOffset{0}, out));
  EXPECT_TRUE(std::equal(d.begin(), d.end(), out.begin() + 4 * kBlock));
  EXPECT_TRUE(std::equal(e.begin(), e.end(), out.begin() + kBlock));
  EXPECT_TRUE(all_zero({out.begin(), out.begin() + kBlock}));
}

// The drive's contract under concurrency: writers race for one zone in random order; each attempt
// succeeds iff it is at the wp at the moment it is applied, so every block is written exactly once,
// in order, and every other attempt fails with kZoneOrder naming the zone.
TEST_F(EmulatedZonedStoreTest, ConcurrentWritersToOneZoneSeeExactlyTheDriveBehaviour) {
  constexpr int kThreads = 8;
  constexpr std::uint64_t kZoneIdx = 4;
  const std::uint64_t s = zone_start(kZoneIdx).value;
  constexpr std::uint64_t kBlocks = kZone / kBlock;
  std::atomic<int> successes{0};
  std::atomic<int> rejections{0};
  std::atomic<int> stale_accepted{0};
  std::atomic<int> bad_errors{0};
  std::vector<std::atomic<int>> wins(kBlocks);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1);
      while (!go.load()) std::this_thread::yield();
      // Every thread tries every block in its own random order until the zone is full; a block
      // already written must be refused.
      std::vector<std::uint64_t> order(kBlocks);
      for (std::uint64_t i = 0; i < kBlocks; ++i) order[i] = i;
      while (store_->zone_map().zone(kZoneIdx).cond != ZoneCond::kFull) {
        std::shuffle(order.begin(), order.end(), rng);
        for (std::uint64_t b : order) {
          const std::uint64_t off = s + b * kBlock;
          const bool was_written = wins[b].load() > 0;
          const auto data = pattern(off, kBlock, 1);
          auto r = store_->write_at(ByteOffset{off}, data);
          if (r) {
            successes.fetch_add(1);
            if (was_written) stale_accepted.fetch_add(1);
            wins[b].fetch_add(1);
          } else {
            rejections.fetch_add(1);
            if (r.error().code != Errc::kZoneOrder || r.error().object != kZoneIdx) {
              bad_errors.fetch_add(1);
            }
          }
        }
      }
    });
  }
  go.store(true);
  for (auto& th : threads) th.join();
  EXPECT_EQ(successes.load(), static_cast<int>(kBlocks));
  EXPECT_EQ(stale_accepted.load(), 0);
  EXPECT_EQ(bad_errors.load(), 0);
  EXPECT_GT(rejections.load(), 0);
  for (std::uint64_t b = 0; b < kBlocks; ++b) EXPECT_EQ(wins[b].load(), 1) << "block " << b;
  EXPECT_EQ(zone(kZoneIdx).cond, ZoneCond::kFull);
  EXPECT_EQ(read(s, kZone), pattern(s, kZone, 1));
}

// The BackingStore contract over the emulated drive (a decorator over the image's
// PosixBackingStore): the suite's region lies in conventional zones, two sequential zones follow
// (the suite never writes there; their rules are the tests above).
struct EmulatedZonedTraits {
  static constexpr bool kGrowsPastEnd = false;  // past the last zone: kNoSpace
  static constexpr std::uint64_t kIoUnit = 1;
  ScratchDir dir;
  std::unique_ptr<BackingStore> make(std::uint64_t region, bool read_only) {
    const std::string image = dir.file("contract.img");
    ZonedStoreOptions o;
    o.create = true;
    o.zone_size_bytes = kZone;
    o.conventional_zones = (region + kZone - 1) / kZone;
    o.zone_count = o.conventional_zones + 2;
    o.logical_block_bytes = kBlock;
    auto s = open_zoned_store(image, o);
    if (!s) {
      ADD_FAILURE() << describe(s);
      return nullptr;
    }
    if (!read_only) return std::move(*s);
    s->reset();  // the image lock: one open store per image
    ZonedStoreOptions ro;
    ro.read_only = true;
    auto r = open_zoned_store(image, ro);
    if (!r) {
      ADD_FAILURE() << describe(r);
      return nullptr;
    }
    return std::move(*r);
  }
};

using namespace contract;  // the suite and its gtest registration state
INSTANTIATE_TYPED_TEST_SUITE_P(EmulatedZoned, BackingStoreContract,
                               ::testing::Types<EmulatedZonedTraits>);

}  // namespace
}  // namespace cryptmap::volume

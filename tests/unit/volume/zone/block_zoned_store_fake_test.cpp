// BlockZonedStore's logic against FakeZonedDevice: a zoned block device as the kernel presents it
// (BLKREPORTZONE filling descriptors after the report header in 512 B sectors, zone management on
// zone-aligned sector ranges, EIO for writes a host-managed drive refuses), made hostile: junk past
// the wp, garbage wp for full zones, short report batches, another host moving a wp behind the
// store's back, failing commands, impossible descriptors. Real zoned hardware does not exist here.
// The fake is two objects over one state, as the store sees a device: FakeDeviceStore, the
// BackingStore the store decorates (data I/O), and FakeZonedDevice, its zone ioctls.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "tests/unit/volume/store/backing_store_contract.h"
#include "volume/store/backing_store.h"
#include "volume/zone/internal/zoned_device_io.h"
#include "zone_test_util.h"

namespace cryptmap::volume {
namespace {

using testing::all_zero;
using testing::describe;
using testing::pattern;
namespace zi = zone_internal;

constexpr std::uint64_t kZoneSectors = 2048;  // 1 MiB zones
constexpr std::uint64_t kZoneBytes = kZoneSectors * 512;
constexpr std::uint32_t kBlock = 4096;

struct FakeZone {
  std::uint64_t start = 0, len = kZoneSectors, cap = kZoneSectors, wp = 0;  // sectors
  std::uint8_t type = BLK_ZONE_TYPE_SEQWRITE_REQ;
  std::uint8_t cond = BLK_ZONE_COND_EMPTY;
};

// Shared between the test and the device object the store owns.
struct FakeState {
  std::mutex mu;
  std::vector<FakeZone> zones;
  std::vector<std::byte> data;
  std::uint32_t max_zones_per_report = 3;   // hostile: forces the store to batch
  bool report_unknown_cond = false;         // hostile: reserved condition value
  bool report_extra_zone = false;           // hostile: more descriptors than asked
  std::uint64_t report_stop_after = ~0ull;  // hostile: pretend the device ends early
  int device_writes = 0;
  int device_rejects = 0;
  std::vector<std::pair<unsigned long, blk_zone_range>> mgmt;
  int discards = 0;
};

FakeZone& zone_at(FakeState& st, std::uint64_t sector) { return st.zones[sector / kZoneSectors]; }

// The device's data path, as the kernel's block layer presents it: errno failures for what a
// host-managed drive refuses.
class FakeDeviceStore final : public BackingStore {
 public:
  explicit FakeDeviceStore(std::shared_ptr<FakeState> st) : st_(std::move(st)) {}

  Result<void> read_at(ByteOffset at, std::span<std::byte> out) const override {
    std::lock_guard lock(st_->mu);
    const std::uint64_t off = at.value;
    if (off + out.size() > st_->data.size()) return make_sys_error(EIO, "fake read", off);
    const FakeZone& z = zone_at(*st_, off / 512);
    if (z.cond == BLK_ZONE_COND_OFFLINE) return make_sys_error(EIO, "fake read", off);
    std::memcpy(out.data(), st_->data.data() + off, out.size());  // junk past wp comes back
    return ok();
  }

  Result<void> write_at(ByteOffset at, std::span<const std::byte> in) override {
    std::lock_guard lock(st_->mu);
    ++st_->device_writes;
    const std::uint64_t off = at.value;
    const std::size_t len = in.size();
    if (off % kBlock != 0 || len % kBlock != 0) return reject(EINVAL);
    if (off + len > st_->data.size()) return reject(ENOSPC);
    const std::uint64_t sector = off / 512;
    const std::uint64_t sectors = len / 512;
    FakeZone& z = zone_at(*st_, sector);
    if (sector + sectors > z.start + z.len) return reject(EIO);  // boundary violation
    if (z.type != BLK_ZONE_TYPE_CONVENTIONAL) {
      if (z.cond == BLK_ZONE_COND_FULL || z.cond == BLK_ZONE_COND_READONLY ||
          z.cond == BLK_ZONE_COND_OFFLINE) {
        return reject(EIO);
      }
      if (sector != z.wp || sector + sectors > z.start + z.cap) return reject(EIO);
      z.wp += sectors;
      z.cond = z.wp == z.start + z.cap
                   ? BLK_ZONE_COND_FULL
                   : (z.cond == BLK_ZONE_COND_EXP_OPEN ? BLK_ZONE_COND_EXP_OPEN
                                                       : BLK_ZONE_COND_IMP_OPEN);
    }
    std::memcpy(st_->data.data() + off, in.data(), len);
    return ok();
  }

  Result<void> sync() override { return ok(); }

  Result<void> discard(ByteOffset off, std::uint64_t len) override {
    std::lock_guard lock(st_->mu);
    ++st_->discards;
    std::fill(st_->data.begin() + static_cast<long>(off.value),
              st_->data.begin() + static_cast<long>(off.value + len), std::byte{0});
    return ok();
  }

  std::uint64_t size_bytes() const noexcept override { return st_->data.size(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return name_; }

 private:
  Result<void> reject(int err) {
    ++st_->device_rejects;
    return make_sys_error(err, "fake write");
  }
  std::shared_ptr<FakeState> st_;
  const std::string name_ = "/dev/fakezbd0";
};

// The device's zone ioctls.
class FakeZonedDevice final : public zi::ZonedDeviceIo {
 public:
  explicit FakeZonedDevice(std::shared_ptr<FakeState> st) : st_(std::move(st)) {}

  int report_zones(struct blk_zone_report* rep) override {
    std::lock_guard lock(st_->mu);
    const std::uint64_t first = rep->sector / kZoneSectors;  // the zone holding the sector
    auto* out = reinterpret_cast<struct blk_zone*>(rep + 1);
    std::uint32_t n = 0;
    const std::uint32_t limit = std::min(rep->nr_zones, st_->max_zones_per_report);
    for (std::uint64_t i = first; i < st_->zones.size() && i < st_->report_stop_after && n < limit;
         ++i, ++n) {
      const FakeZone& z = st_->zones[i];
      struct blk_zone d;
      std::memset(&d, 0, sizeof d);
      d.start = z.start;
      d.len = z.len;
      d.capacity = z.cap;
      d.type = z.type;
      d.cond = z.cond;
      // Devices report no meaningful wp for full zones: hand back garbage.
      d.wp = z.cond == BLK_ZONE_COND_FULL ? 0xdeadbeef : z.wp;
      if (st_->report_unknown_cond && i == 2) d.cond = 0x7;
      out[n] = d;
    }
    if (st_->report_extra_zone && n == limit && n > 0) {
      out[n] = out[n - 1];
      ++n;
    }
    rep->nr_zones = n;
    rep->flags = BLK_ZONE_REP_CAPACITY;
    return 0;
  }

  int zone_mgmt(unsigned long request, const struct blk_zone_range& range) override {
    std::lock_guard lock(st_->mu);
    st_->mgmt.emplace_back(request, range);
    if (range.sector % kZoneSectors != 0 || range.nr_sectors == 0 ||
        range.nr_sectors % kZoneSectors != 0) {
      return -EINVAL;  // the kernel requires zone-aligned ranges
    }
    for (std::uint64_t s = range.sector; s < range.sector + range.nr_sectors; s += kZoneSectors) {
      FakeZone& z = zone_of(s);
      if (z.type == BLK_ZONE_TYPE_CONVENTIONAL) return -EINVAL;
      if (z.cond == BLK_ZONE_COND_OFFLINE || z.cond == BLK_ZONE_COND_READONLY) return -EIO;
      if (request == BLKRESETZONE) {
        z.wp = z.start;
        z.cond = BLK_ZONE_COND_EMPTY;
        std::fill(st_->data.begin() + static_cast<long>(z.start * 512),
                  st_->data.begin() + static_cast<long>((z.start + z.len) * 512), std::byte{0});
      } else if (request == BLKFINISHZONE) {
        z.wp = z.start + z.len;
        z.cond = BLK_ZONE_COND_FULL;
      } else if (request == BLKOPENZONE) {
        if (z.cond != BLK_ZONE_COND_FULL) z.cond = BLK_ZONE_COND_EXP_OPEN;
      } else if (request == BLKCLOSEZONE) {
        if (z.cond == BLK_ZONE_COND_IMP_OPEN || z.cond == BLK_ZONE_COND_EXP_OPEN) {
          z.cond = z.wp == z.start ? BLK_ZONE_COND_EMPTY : BLK_ZONE_COND_CLOSED;
        }
      } else {
        return -ENOTTY;
      }
    }
    return 0;
  }

 private:
  FakeZone& zone_of(std::uint64_t sector) { return zone_at(*st_, sector); }
  std::shared_ptr<FakeState> st_;
};

// 8 zones: 0-1 conventional, 2 empty, 3 implicitly open at 16 sectors, 4 full, 5 capacity 1024,
// 6 offline, 7 empty. The bytes past every wp are junk (0xA5), as an unreset region may be.
std::shared_ptr<FakeState> make_state() {
  auto st = std::make_shared<FakeState>();
  st->data.assign(8 * kZoneBytes, std::byte{0xA5});
  for (std::uint64_t i = 0; i < 8; ++i) {
    FakeZone z;
    z.start = z.wp = i * kZoneSectors;
    if (i < 2) {
      z.type = BLK_ZONE_TYPE_CONVENTIONAL;
      z.cond = BLK_ZONE_COND_NOT_WP;
      z.wp = z.start + z.len;
    }
    st->zones.push_back(z);
  }
  st->zones[3].wp += 16;
  st->zones[3].cond = BLK_ZONE_COND_IMP_OPEN;
  st->zones[4].wp = st->zones[4].start + kZoneSectors;
  st->zones[4].cond = BLK_ZONE_COND_FULL;
  st->zones[5].cap = 1024;
  st->zones[6].cond = BLK_ZONE_COND_OFFLINE;
  return st;
}

Result<std::unique_ptr<ZonedStore>> open_fake(const std::shared_ptr<FakeState>& st,
                                              std::uint64_t nr_zones = 8) {
  return zi::make_block_zoned_store(std::make_unique<FakeDeviceStore>(st),
                                    std::make_unique<FakeZonedDevice>(st), "/dev/fakezbd0", false,
                                    kZoneBytes, nr_zones, kBlock);
}

ByteOffset at(std::uint64_t zone, std::uint64_t block) {
  return ByteOffset{zone * kZoneBytes + block * kBlock};
}

TEST(BlockZonedStoreFakeTest, MirrorsTheDeviceReportInBatches) {
  auto st = make_state();
  auto s = open_fake(st);
  ASSERT_TRUE(s) << describe(s);
  const ZoneMap& m = (*s)->zone_map();
  EXPECT_EQ(m.zone_count(), 8u);
  EXPECT_EQ(m.conventional_count(), 2u);
  EXPECT_EQ(m.zone(3).wp, ByteOffset{3 * kZoneBytes + 16 * 512});
  EXPECT_EQ(m.zone(3).cond, ZoneCond::kImplicitOpen);
  EXPECT_EQ(m.zone(4).cond, ZoneCond::kFull);
  EXPECT_EQ(m.zone(4).wp, m.zone(4).end());  // the device's garbage wp was normalised
  EXPECT_EQ(m.zone(5).capacity_bytes, 1024u * 512);
  EXPECT_EQ(m.zone(6).cond, ZoneCond::kOffline);
  EXPECT_EQ((*s)->logical_block_bytes(), kBlock);
  EXPECT_EQ((*s)->size_bytes(), 8 * kZoneBytes);
}

TEST(BlockZonedStoreFakeTest, MisorderedWritesNeverReachTheDevice) {
  auto st = make_state();
  auto s = open_fake(st);
  ASSERT_TRUE(s);
  ZonedStore& store = **s;
  const auto d = pattern(at(3, 0).value, kBlock, 1);
  for (ByteOffset off : {at(3, 0), at(3, 3), at(2, 1), at(4, 0)}) {
    auto r = store.write_at(off, d);
    ASSERT_FALSE(r) << off.value;
    EXPECT_EQ(r.error().code, Errc::kZoneOrder) << r.error().message();
  }
  EXPECT_EQ(st->device_writes, 0);
  const ByteOffset wp = store.zone_map().zone(3).wp;  // 16 sectors = 2 blocks in
  const auto data = pattern(wp.value, 2 * kBlock, 2);
  ASSERT_TRUE(store.write_at(wp, data));
  EXPECT_EQ(st->device_writes, 1);
  EXPECT_EQ(st->zones[3].wp, 3 * kZoneSectors + 16 + 16);
  EXPECT_EQ(store.zone_map().zone(3).wp, wp + 2 * kBlock);
  std::vector<std::byte> back(2 * kBlock);
  ASSERT_TRUE(store.read_at(wp, back));
  EXPECT_EQ(back, data);
}

TEST(BlockZonedStoreFakeTest, ADeviceRejectionResyncsTheCachedWritePointer) {
  auto st = make_state();
  auto s = open_fake(st);
  ASSERT_TRUE(s);
  ZonedStore& store = **s;
  {  // Another host writes 4 blocks into zone 2 behind the store's back.
    std::lock_guard lock(st->mu);
    st->zones[2].wp += 4 * kBlock / 512;
    st->zones[2].cond = BLK_ZONE_COND_IMP_OPEN;
  }
  auto r = store.write_at(at(2, 0), pattern(at(2, 0).value, kBlock, 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_EQ(r.error().sys_errno, EIO);
  EXPECT_EQ(st->device_rejects, 1);
  EXPECT_EQ(store.zone_map().zone(2).wp, at(2, 4));  // followed the device
  EXPECT_EQ(store.zone_map().zone(2).cond, ZoneCond::kImplicitOpen);
  ASSERT_TRUE(store.write_at(at(2, 4), pattern(at(2, 4).value, kBlock, 1)));
}

TEST(BlockZonedStoreFakeTest, ReadsPastTheWritePointerAreZerosWhateverTheDeviceReturns) {
  auto st = make_state();
  auto s = open_fake(st);
  ASSERT_TRUE(s);
  std::vector<std::byte> z(kZoneBytes);
  ASSERT_TRUE((*s)->read_at(at(3, 0), z));
  EXPECT_TRUE(std::all_of(z.begin(), z.begin() + 16 * 512,
                          [](std::byte b) { return b == std::byte{0xA5}; }));
  EXPECT_TRUE(all_zero({z.begin() + 16 * 512, z.end()}));
  ASSERT_TRUE((*s)->read_at(at(5, 0), z));  // empty zone: all zeros
  EXPECT_TRUE(all_zero(z));
  EXPECT_EQ((*s)->read_at(at(6, 0), z).error().code, Errc::kIo);  // offline
}

TEST(BlockZonedStoreFakeTest, ManagementSendsZoneAlignedRangesAndFollowsTheDevice) {
  auto st = make_state();
  auto s = open_fake(st);
  ASSERT_TRUE(s);
  ZonedStore& store = **s;
  ASSERT_TRUE(store.reset_zone(3));
  ASSERT_EQ(st->mgmt.size(), 1u);
  EXPECT_EQ(st->mgmt[0].first, static_cast<unsigned long>(BLKRESETZONE));
  EXPECT_EQ(st->mgmt[0].second.sector, 3 * kZoneSectors);
  EXPECT_EQ(st->mgmt[0].second.nr_sectors, kZoneSectors);
  EXPECT_EQ(store.zone_map().zone(3).cond, ZoneCond::kEmpty);
  EXPECT_EQ(store.zone_map().zone(3).wp, at(3, 0));
  ASSERT_TRUE(store.open_zone(7));
  EXPECT_EQ(store.zone_map().zone(7).cond, ZoneCond::kExplicitOpen);
  ASSERT_TRUE(store.close_zone(7));
  EXPECT_EQ(store.zone_map().zone(7).cond, ZoneCond::kEmpty);
  ASSERT_TRUE(store.finish_zone(2));
  EXPECT_EQ(store.zone_map().zone(2).cond, ZoneCond::kFull);
  EXPECT_EQ(store.write_at(at(2, 0), pattern(0, kBlock, 1)).error().code, Errc::kZoneOrder);
  const std::size_t calls = st->mgmt.size();
  EXPECT_EQ(store.reset_zone(0).error().code, Errc::kInvalid);  // conventional: not sent
  EXPECT_EQ(store.reset_zone(6).error().code, Errc::kIo);       // offline: not sent
  EXPECT_EQ(st->mgmt.size(), calls);
  auto rep = store.report_zones(2, 100);
  ASSERT_TRUE(rep) << describe(rep);
  EXPECT_EQ(rep->size(), 6u);
  EXPECT_EQ(store.discard(at(3, 0), kBlock).error().code, Errc::kUnsupported);
  EXPECT_EQ(st->discards, 0);
  ASSERT_TRUE(store.discard(at(0, 1), kBlock));
  EXPECT_EQ(st->discards, 1);
}

TEST(BlockZonedStoreFakeTest, ADeviceThatChangesStateUnderACommandIsFollowed) {
  auto st = make_state();
  auto s = open_fake(st);
  ASSERT_TRUE(s);
  {  // The zone goes offline on the device after the store cached it as empty.
    std::lock_guard lock(st->mu);
    st->zones[7].cond = BLK_ZONE_COND_OFFLINE;
  }
  auto r = (*s)->finish_zone(7);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().sys_errno, EIO);
  EXPECT_EQ((*s)->zone_map().zone(7).cond, ZoneCond::kOffline);
}

TEST(BlockZonedStoreFakeTest, HostileReportsAreRefusedAtOpen) {
  {
    auto st = make_state();
    st->report_unknown_cond = true;
    auto s = open_fake(st);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kCorrupt);
    EXPECT_EQ(s.error().object, 2u);
  }
  {
    auto st = make_state();
    st->report_extra_zone = true;
    auto s = open_fake(st);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kCorrupt);
  }
  {
    auto st = make_state();
    st->report_stop_after = 5;  // BLKGETNRZONES said 8
    auto s = open_fake(st);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kCorrupt);
    EXPECT_NE(s.error().message().find("/dev/fakezbd0"), std::string::npos) << s.error().message();
  }
  {
    auto st = make_state();
    auto s = zi::make_block_zoned_store(std::make_unique<FakeDeviceStore>(st),
                                        std::make_unique<FakeZonedDevice>(st), "/dev/fakezbd0",
                                        false, kZoneBytes, 0, kBlock);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kUnsupported);
  }
}

// The BackingStore contract over BlockZonedStore decorating the fake device: the suite's region is
// the two conventional zones (zeroed first: the fake's junk is for the tests above).
struct FakeBlockZonedTraits {
  static constexpr bool kGrowsPastEnd = false;      // a device does not grow: kNoSpace
  static constexpr std::uint64_t kIoUnit = kBlock;  // the fake takes whole blocks, like O_DIRECT
  std::unique_ptr<BackingStore> make(std::uint64_t region, bool read_only) {
    if (region > 2 * kZoneBytes) {
      ADD_FAILURE() << "the fake has 2 MiB of conventional zones";
      return nullptr;
    }
    auto st = make_state();
    std::fill(st->data.begin(), st->data.begin() + static_cast<long>(2 * kZoneBytes), std::byte{0});
    auto s = zi::make_block_zoned_store(std::make_unique<FakeDeviceStore>(st),
                                        std::make_unique<FakeZonedDevice>(st), "/dev/fakezbd0",
                                        read_only, kZoneBytes, 8, kBlock);
    if (!s) {
      ADD_FAILURE() << describe(s);
      return nullptr;
    }
    return std::move(*s);
  }
};

using namespace contract;  // the suite and its gtest registration state
INSTANTIATE_TYPED_TEST_SUITE_P(FakeBlockZoned, BackingStoreContract,
                               ::testing::Types<FakeBlockZonedTraits>);

}  // namespace
}  // namespace cryptmap::volume

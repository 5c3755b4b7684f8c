// ZoneMap geometry and state rules, the sidecar codec, and the BLKREPORTZONE translation on
// hand-built kernel descriptors.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "volume/zone/internal/zone_rules.h"
#include "volume/zone/zone_map.h"
#include "zone_test_util.h"

namespace cryptmap::volume {
namespace {

using testing::describe;
namespace zi = zone_internal;

constexpr std::uint64_t kZone = 1 << 20;  // 1 MiB

ZoneInfo conv(std::uint64_t i, std::uint64_t size = kZone) {
  ZoneInfo z;
  z.index = i;
  z.start = ByteOffset{i * size};
  z.len_bytes = size;
  z.capacity_bytes = size;
  z.wp = z.end();
  z.type = ZoneType::kConventional;
  z.cond = ZoneCond::kNotWp;
  return z;
}

ZoneInfo seq(std::uint64_t i, std::uint64_t wp_rel, ZoneCond cond, std::uint64_t cap = kZone) {
  ZoneInfo z = conv(i);
  z.type = ZoneType::kSeqWriteRequired;
  z.capacity_bytes = cap;
  z.wp = z.start + wp_rel;
  z.cond = cond;
  return z;
}

TEST(ZoneMapTest, GeometryQueries) {
  std::vector<ZoneInfo> zs = {conv(0), seq(1, 0, ZoneCond::kEmpty),
                              seq(2, 8192, ZoneCond::kImplicitOpen),
                              seq(3, kZone, ZoneCond::kFull, kZone / 2)};
  auto m = ZoneMap::create(kZone, zs);
  ASSERT_TRUE(m) << describe(m);
  const ZoneMap& map = **m;
  EXPECT_EQ(map.zone_count(), 4u);
  EXPECT_EQ(map.zone_shift(), 20u);
  EXPECT_EQ(map.size_bytes(), 4 * kZone);
  EXPECT_EQ(map.conventional_count(), 1u);
  EXPECT_EQ(*map.zone_index(ByteOffset{0}), 0u);
  EXPECT_EQ(*map.zone_index(ByteOffset{kZone - 1}), 0u);
  EXPECT_EQ(*map.zone_index(ByteOffset{kZone}), 1u);
  EXPECT_EQ(map.zone_index(ByteOffset{4 * kZone}).error().code, Errc::kInvalid);
  EXPECT_FALSE(map.crosses_boundary(ByteOffset{0}, kZone));
  EXPECT_TRUE(map.crosses_boundary(ByteOffset{0}, kZone + 1));
  EXPECT_TRUE(map.crosses_boundary(ByteOffset{kZone - 512}, 1024));
  EXPECT_FALSE(map.crosses_boundary(ByteOffset{kZone}, 512));
  EXPECT_TRUE(map.crosses_boundary(ByteOffset{4 * kZone - 512}, 1024));  // past the end
  EXPECT_FALSE(map.crosses_boundary(ByteOffset{kZone - 1}, 0));
  EXPECT_FALSE(map.touches_sequential(ByteOffset{0}, kZone));
  EXPECT_TRUE(map.touches_sequential(ByteOffset{kZone - 512}, 1024));
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_EQ(map.zone(i), zs[i]);
  EXPECT_EQ(map.zone(2).readable_end(), ByteOffset{2 * kZone + 8192});
  EXPECT_EQ(map.zone(2).remaining_bytes(), kZone - 8192);
  EXPECT_EQ(map.zone(3).readable_end(), ByteOffset{3 * kZone + kZone / 2});  // capacity, not len
  EXPECT_EQ(map.zone(3).remaining_bytes(), 0u);
  EXPECT_EQ(map.zone(0).readable_end(), map.zone(0).end());
  auto z2 = map.zone_at(ByteOffset{2 * kZone + 5});
  ASSERT_TRUE(z2);
  EXPECT_EQ(z2->index, 2u);
  std::vector<ZoneInfo> rep(10);
  auto n = map.report(2, rep);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(rep[1], zs[3]);
  EXPECT_EQ(map.report(4, rep).error().code, Errc::kInvalid);
}

TEST(ZoneMapTest, SetStatePublishesConsistentSnapshot) {
  std::vector<ZoneInfo> zs = {seq(0, 0, ZoneCond::kEmpty)};
  auto m = ZoneMap::create(kZone, zs);
  ASSERT_TRUE(m);
  (*m)->set_state(0, ByteOffset{4096}, ZoneCond::kImplicitOpen);
  EXPECT_EQ((*m)->zone(0).wp, ByteOffset{4096});
  EXPECT_EQ((*m)->zone(0).cond, ZoneCond::kImplicitOpen);
  (*m)->set_state(0, ByteOffset{kZone}, ZoneCond::kFull);
  EXPECT_EQ((*m)->zone(0).cond, ZoneCond::kFull);
  EXPECT_EQ((*m)->zone(0).wp, ByteOffset{kZone});
}

// Readers racing the (single) writer always see a (wp, cond) pair that was published together.
TEST(ZoneMapTest, SnapshotsNeverTearUnderConcurrentUpdates) {
  std::vector<ZoneInfo> zs = {seq(0, 0, ZoneCond::kEmpty)};
  auto m = ZoneMap::create(kZone, zs);
  ASSERT_TRUE(m);
  ZoneMap& map = **m;
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!done.load()) {
        const ZoneInfo z = map.zone(0);
        if (!validate_zone_state(z, "snapshot")) torn.fetch_add(1);
      }
    });
  }
  for (int round = 0; round < 200; ++round) {
    for (std::uint64_t wp = 512; wp < kZone; wp += 512 * 64) {
      map.set_state(0, ByteOffset{wp}, ZoneCond::kImplicitOpen);
    }
    map.set_state(0, ByteOffset{kZone}, ZoneCond::kFull);
    map.set_state(0, ByteOffset{0}, ZoneCond::kEmpty);
  }
  done.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0);
}

TEST(ZoneMapTest, RuntLastZoneAllowedOnlyLast) {
  ZoneInfo last = seq(1, 0, ZoneCond::kEmpty, kZone / 4);
  last.len_bytes = kZone / 4;
  std::vector<ZoneInfo> ok_zones = {conv(0), last};
  auto m = ZoneMap::create(kZone, ok_zones);
  ASSERT_TRUE(m) << describe(m);
  EXPECT_EQ((*m)->size_bytes(), kZone + kZone / 4);
  ZoneInfo first = conv(0);
  first.len_bytes = kZone / 2;
  first.capacity_bytes = kZone / 2;
  first.wp = first.end();
  std::vector<ZoneInfo> bad = {first, seq(1, 0, ZoneCond::kEmpty)};
  EXPECT_EQ(ZoneMap::create(kZone, bad).error().code, Errc::kCorrupt);
}

TEST(ZoneMapTest, RejectsBadGeometry) {
  std::vector<ZoneInfo> one = {conv(0)};
  EXPECT_EQ(ZoneMap::create(3 * 512, one).error().code, Errc::kInvalid);  // not a power of two
  EXPECT_EQ(ZoneMap::create(256, one).error().code, Errc::kInvalid);      // < 512
  EXPECT_EQ(ZoneMap::create(kZone, {}).error().code, Errc::kInvalid);
  std::vector<ZoneInfo> gap = {conv(0), conv(2)};
  gap[1].index = 1;  // index right, start wrong
  EXPECT_EQ(ZoneMap::create(kZone, gap).error().code, Errc::kCorrupt);
  std::vector<ZoneInfo> cap = {seq(0, 0, ZoneCond::kEmpty, kZone + 512)};
  EXPECT_EQ(ZoneMap::create(kZone, cap).error().code, Errc::kCorrupt);
}

struct BadState {
  const char* name;
  ZoneInfo zone;
};

TEST(ZoneMapTest, RejectsInconsistentStates) {
  ZoneInfo conv_with_cond = conv(0);
  conv_with_cond.cond = ZoneCond::kEmpty;
  ZoneInfo conv_wp = conv(0);
  conv_wp.wp = conv_wp.start;
  const std::vector<BadState> cases = {
      {"empty with wp past start", seq(0, 4096, ZoneCond::kEmpty)},
      {"open at start", seq(0, 0, ZoneCond::kImplicitOpen)},
      {"closed at start", seq(0, 0, ZoneCond::kClosed)},
      {"open at capacity", seq(0, kZone, ZoneCond::kImplicitOpen)},
      {"open past capacity", seq(0, kZone / 2 + 4096, ZoneCond::kExplicitOpen, kZone / 2)},
      {"full not normalised", seq(0, 4096, ZoneCond::kFull)},
      {"wp not 512 aligned", seq(0, 100, ZoneCond::kImplicitOpen)},
      {"wp past zone", seq(0, kZone + 512, ZoneCond::kReadOnly)},
      {"sequential not-wp", seq(0, 0, ZoneCond::kNotWp)},
      {"conventional with a condition", conv_with_cond},
      {"conventional wp not at end", conv_wp},
  };
  for (const BadState& c : cases) {
    std::vector<ZoneInfo> zs = {c.zone};
    auto m = ZoneMap::create(kZone, zs);
    ASSERT_FALSE(m) << c.name;
    EXPECT_EQ(m.error().code, Errc::kCorrupt) << c.name;
    EXPECT_EQ(m.error().object, 0u) << c.name;
  }
  // And the legal corners.
  for (const ZoneInfo& z : {seq(0, 0, ZoneCond::kExplicitOpen), seq(0, 4096, ZoneCond::kClosed),
                            seq(0, 4096, ZoneCond::kReadOnly), seq(0, 0, ZoneCond::kOffline)}) {
    std::vector<ZoneInfo> zs = {z};
    EXPECT_TRUE(ZoneMap::create(kZone, zs)) << zone_cond_name(z.cond);
  }
}

// ---- CRC-32C and the sidecar codec ------------------------------------------------------------

TEST(ZoneSidecarTest, Crc32cKnownAnswer) {
  // The CRC-32C check value (RFC 3720 appendix / iSCSI): "123456789" -> 0xE3069283.
  EXPECT_EQ(zi::crc32c(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(zi::crc32c({}), 0u);
}

zi::Sidecar sample_sidecar() {
  zi::Sidecar s;
  s.zone_size_bytes = 65536;
  s.zone_capacity_bytes = 65536;
  s.logical_block_bytes = 4096;
  s.generation = 7;
  s.zones = {{65536, ZoneType::kConventional, ZoneCond::kNotWp},
             {0, ZoneType::kSeqWriteRequired, ZoneCond::kEmpty},
             {8192, ZoneType::kSeqWriteRequired, ZoneCond::kClosed},
             {65536, ZoneType::kSeqWriteRequired, ZoneCond::kFull}};
  return s;
}

TEST(ZoneSidecarTest, RoundTripAndLayout) {
  const zi::Sidecar s = sample_sidecar();
  const auto bytes = zi::encode_sidecar(s);
  ASSERT_EQ(bytes.size(), 64u + 4 * 16 + 4);
  EXPECT_EQ(std::memcmp(bytes.data(), "CMAPZONE", 8), 0);
  EXPECT_EQ(load_be32(bytes.data() + 8), 1u);
  EXPECT_EQ(load_be64(bytes.data() + 16), 65536u);
  EXPECT_EQ(load_be64(bytes.data() + 24), 4u);
  EXPECT_EQ(load_be64(bytes.data() + 48), 7u);
  EXPECT_EQ(load_be64(bytes.data() + 64 + 2 * 16), 8192u);       // zone 2 wp
  EXPECT_EQ(std::to_integer<int>(bytes[64 + 2 * 16 + 9]), 0x4);  // zone 2 cond closed
  auto d = zi::decode_sidecar(bytes, "/x/img.zones");
  ASSERT_TRUE(d) << describe(d);
  EXPECT_EQ(d->zones, s.zones);
  EXPECT_EQ(d->generation, 7u);
  auto map = ZoneMap::create(d->zone_size_bytes, zi::sidecar_zone_infos(*d));
  ASSERT_TRUE(map) << describe(map);
  EXPECT_EQ((*map)->zone(2).wp, ByteOffset{2 * 65536 + 8192});
}

TEST(ZoneSidecarTest, EveryCorruptionIsKCorruptNamingTheFile) {
  const auto good = zi::encode_sidecar(sample_sidecar());
  const std::string path = "/some/dir/disk.img.zones";
  auto expect_corrupt = [&](std::vector<std::byte> b, const char* why) {
    auto d = zi::decode_sidecar(b, path);
    ASSERT_FALSE(d) << why;
    EXPECT_EQ(d.error().code, Errc::kCorrupt) << why;
    EXPECT_NE(d.error().message().find(path), std::string::npos)
        << why << ": " << d.error().message();
  };
  // Any single flipped bit anywhere is caught (checksum or a field check).
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto b = good;
    b[i] ^= std::byte{0x10};
    expect_corrupt(b, "bit flip");
  }
  for (std::size_t len :
       {std::size_t{0}, std::size_t{10}, std::size_t{67}, good.size() - 1, good.size() - 16}) {
    expect_corrupt(std::vector<std::byte>(good.begin(), good.begin() + static_cast<long>(len)),
                   "truncated");
  }
  auto longer = good;
  longer.push_back(std::byte{0});
  expect_corrupt(longer, "trailing byte");
  // Valid checksum over invalid content: a wp past the zone, an unknown condition.
  zi::Sidecar s = sample_sidecar();
  s.zones[1].wp_rel = 65536 + 4096;
  expect_corrupt(zi::encode_sidecar(s), "wp past zone");
  s = sample_sidecar();
  s.zones[1].cond = static_cast<ZoneCond>(7);
  expect_corrupt(zi::encode_sidecar(s), "unknown cond");
  s = sample_sidecar();
  s.zone_size_bytes = 65536 + 4096;
  expect_corrupt(zi::encode_sidecar(s), "zone size not a power of two");
  s = sample_sidecar();
  s.zones[2].wp_rel = 1024;  // not block aligned
  expect_corrupt(zi::encode_sidecar(s), "wp unaligned");
}

// ---- BLKREPORTZONE translation ----------------------------------------------------------------

constexpr std::uint64_t kZoneSectors = 2048;  // 1 MiB zones, as many SMR test setups use

struct blk_zone bz(std::uint64_t index, std::uint8_t type, std::uint8_t cond, std::uint64_t wp_rel,
                   std::uint64_t cap = kZoneSectors) {
  struct blk_zone z;
  std::memset(&z, 0, sizeof z);
  z.start = index * kZoneSectors;
  z.len = kZoneSectors;
  z.wp = z.start + wp_rel;
  z.type = type;
  z.cond = cond;
  z.capacity = cap;
  return z;
}

TEST(BlkZoneTranslateTest, MapsAHandBuiltReport) {
  const std::vector<struct blk_zone> rep = {
      // The kernel reports conventional zones with an arbitrary wp (null_blk: start + len).
      bz(0, BLK_ZONE_TYPE_CONVENTIONAL, BLK_ZONE_COND_NOT_WP, 12345),
      bz(1, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_EMPTY, 0, 1024),
      bz(2, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_IMP_OPEN, 16, 1024),
      bz(3, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_EXP_OPEN, 0, 1024),
      bz(4, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_CLOSED, 8, 1024),
      // FULL: sd_zbc/zns normalise to start + len; a device may report anything.
      bz(5, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_FULL, 1024, 1024),
      bz(6, BLK_ZONE_TYPE_SEQWRITE_PREF, BLK_ZONE_COND_READONLY, 0, 1024),
      bz(7, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_OFFLINE, 0, 1024),
  };
  auto infos = zi::zone_infos_from_blk_zones(rep, BLK_ZONE_REP_CAPACITY, 0, kZoneSectors * 512);
  ASSERT_TRUE(infos) << describe(infos);
  ASSERT_EQ(infos->size(), rep.size());
  const auto& v = *infos;
  EXPECT_EQ(v[0].type, ZoneType::kConventional);
  EXPECT_EQ(v[0].wp, v[0].end());
  EXPECT_EQ(v[0].capacity_bytes, kZoneSectors * 512);  // capacity flag set, cap = len here
  EXPECT_EQ(v[1].cond, ZoneCond::kEmpty);
  EXPECT_EQ(v[1].capacity_bytes, 1024u * 512);  // ZNS-like: capacity < len
  EXPECT_EQ(v[1].start, ByteOffset{kZoneSectors * 512});
  EXPECT_EQ(v[2].cond, ZoneCond::kImplicitOpen);
  EXPECT_EQ(v[2].wp, ByteOffset{(2 * kZoneSectors + 16) * 512});
  EXPECT_EQ(v[3].cond, ZoneCond::kExplicitOpen);
  EXPECT_EQ(v[4].cond, ZoneCond::kClosed);
  EXPECT_EQ(v[5].cond, ZoneCond::kFull);
  EXPECT_EQ(v[5].wp, v[5].end());
  EXPECT_EQ(v[6].type, ZoneType::kSeqWritePreferred);
  EXPECT_EQ(v[6].cond, ZoneCond::kReadOnly);
  EXPECT_EQ(v[7].cond, ZoneCond::kOffline);
  auto map = ZoneMap::create(kZoneSectors * 512, v);
  ASSERT_TRUE(map) << describe(map);
  EXPECT_EQ((*map)->zone(2), v[2]);
}

TEST(BlkZoneTranslateTest, CapacityIgnoredWithoutFlag) {
  const std::vector<struct blk_zone> rep = {
      bz(3, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_EMPTY, 0, 7)};
  auto infos = zi::zone_infos_from_blk_zones(rep, 0, 3, kZoneSectors * 512);
  ASSERT_TRUE(infos) << describe(infos);
  EXPECT_EQ((*infos)[0].capacity_bytes, kZoneSectors * 512);
  EXPECT_EQ((*infos)[0].index, 3u);
}

TEST(BlkZoneTranslateTest, RejectsHostileDescriptors) {
  struct Case {
    const char* name;
    struct blk_zone z;
    std::uint64_t index;
  };
  std::vector<Case> cases = {
      {"unknown type", bz(0, 4, BLK_ZONE_COND_EMPTY, 0), 0},
      {"type zero", bz(0, 0, BLK_ZONE_COND_EMPTY, 0), 0},
      {"reserved cond", bz(0, BLK_ZONE_TYPE_SEQWRITE_REQ, 0x5, 0), 0},
      {"start not index*size", bz(1, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_EMPTY, 0), 2},
      {"conventional with wp cond", bz(0, BLK_ZONE_TYPE_CONVENTIONAL, BLK_ZONE_COND_EMPTY, 0), 0},
      {"empty with wp advanced", bz(0, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_EMPTY, 8), 0},
      {"wp past zone", bz(0, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_CLOSED, kZoneSectors + 8),
       0},
      {"open wp past capacity",
       bz(0, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_IMP_OPEN, 1500, 1024), 0},
      {"sector overflow", bz(0, BLK_ZONE_TYPE_SEQWRITE_REQ, BLK_ZONE_COND_EMPTY, 0), 0},
  };
  cases.back().z.wp = ~std::uint64_t{0};
  for (const Case& c : cases) {
    auto r = zi::zone_info_from_blk_zone(c.z, BLK_ZONE_REP_CAPACITY, c.index, kZoneSectors * 512);
    ASSERT_FALSE(r) << c.name;
    EXPECT_EQ(r.error().code, Errc::kCorrupt) << c.name;
    EXPECT_EQ(r.error().object, c.index) << c.name;
  }
}

}  // namespace
}  // namespace cryptmap::volume

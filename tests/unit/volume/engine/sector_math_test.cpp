// sector_math.h: the engine's offset arithmetic at its edges (the start and the very end of the
// volume, partial heads and tails, exact whole sectors, 512- and 4096-byte sectors, image
// offsets above 2 TiB, ranges near UINT64_MAX), and, end to end, that the engine's placement
// and SectorIndex agree with crypto's IV numbering (iv_offset, iv_large_sectors).
#include "volume/engine/sector_math.h"

#include <gtest/gtest.h>

#include <limits>
#include <memory>
#include <vector>

#include "crypto/sector_cipher.h"
#include "volume/store/mem_backing_store.h"
#include "volume/volume.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();

class SectorMath : public ::testing::TestWithParam<std::uint32_t> {
 protected:
  std::uint32_t ss() const { return GetParam(); }
  // 1000 sectors after a 1 MiB header.
  SectorGeometry geo() const { return SectorGeometry{ss(), 1 << 20, 1000ull * ss()}; }
};

TEST_P(SectorMath, ARangeAtZeroCoversTheSectorsFromZero) {
  const SectorGeometry g = geo();
  EXPECT_EQ(g.covering(0, 1), (SectorSpan{0, 1}));
  EXPECT_EQ(g.covering(0, ss()), (SectorSpan{0, 1}));
  EXPECT_EQ(g.covering(0, ss() + 1), (SectorSpan{0, 2}));
  EXPECT_EQ(g.covering(0, 0), (SectorSpan{0, 0}));
  EXPECT_TRUE(g.covering(0, 0).empty());
  EXPECT_EQ(g.image_offset(0), 1u << 20);
  EXPECT_EQ(g.image_byte(0), 1u << 20);
  EXPECT_FALSE(g.head_partial(0, 0));
}

TEST_P(SectorMath, ARangeEndingAtTheVeryEndCoversTheLastSector) {
  const SectorGeometry g = geo();
  EXPECT_EQ(g.sectors(), 1000u);
  EXPECT_EQ(g.covering(g.size - 1, 1), (SectorSpan{999, 1000}));
  EXPECT_EQ(g.covering(g.size - ss(), ss()), (SectorSpan{999, 1000}));
  EXPECT_EQ(g.image_offset(g.sectors()), (1u << 20) + g.size);
  EXPECT_TRUE(g.fits(g.size - 1, 1));
  EXPECT_TRUE(g.fits(g.size, 0));
  EXPECT_TRUE(g.fits(0, g.size));
  EXPECT_FALSE(g.fits(g.size - 1, 2));
  EXPECT_FALSE(g.fits(g.size + 1, 0));
}

TEST_P(SectorMath, ClampingMakesReadsShortAtTheEndAndEmptyPastIt) {
  const SectorGeometry g = geo();
  EXPECT_EQ(g.clamp(g.size - 100, 4096), 100u);
  EXPECT_EQ(g.clamp(g.size - 100, 50), 50u);
  EXPECT_EQ(g.clamp(g.size, 1), 0u);
  EXPECT_EQ(g.clamp(g.size + 12345, 1), 0u);
  EXPECT_EQ(g.clamp(0, kMax), g.size);
}

TEST_P(SectorMath, APartialHeadAndTailInsideOneSectorIsOneSectorWithNothingWhole) {
  const SectorGeometry g = geo();
  const std::uint64_t off = 7 * ss() + 100;  // [100, 300) of sector 7
  const std::uint64_t len = 200;
  EXPECT_EQ(g.covering(off, len), (SectorSpan{7, 8}));
  EXPECT_TRUE(g.inner(off, len).empty());
  EXPECT_TRUE(g.head_partial(off, 7));
  EXPECT_TRUE(g.tail_partial(off, len, 7, 1));
  EXPECT_EQ(g.in_sector(off, len, 7), (ByteSpan{off, off + len}));
  EXPECT_EQ(g.in_sector(off, len, 7).lo - g.byte_of(7), 100u);  // skip into the sector
  EXPECT_EQ(g.in_sector(off, len, 8).size(), 0u);
  EXPECT_EQ(g.in_sector(off, len, 6).size(), 0u);
}

TEST_P(SectorMath, APartialHeadAndTailAcrossSectorsSplitAtTheirEdges) {
  const SectorGeometry g = geo();
  const std::uint64_t off = 3 * ss() + 1;  // one byte into sector 3
  const std::uint64_t len = 3 * ss() - 2;  // ends one byte before sector 6 ends
  EXPECT_EQ(g.covering(off, len), (SectorSpan{3, 6}));
  EXPECT_EQ(g.inner(off, len), (SectorSpan{4, 5}));
  EXPECT_EQ(g.in_sector(off, len, 3).size(), ss() - 1u);
  EXPECT_EQ(g.in_sector(off, len, 4).size(), ss());
  EXPECT_EQ(g.in_sector(off, len, 5).size(), ss() - 1u);
  EXPECT_EQ(g.in_sector(off, len, 5).lo, g.byte_of(5));
  EXPECT_TRUE(g.head_partial(off, 3));
  EXPECT_FALSE(g.head_partial(off, 4));  // a later piece starts on its sector edge
  EXPECT_TRUE(g.tail_partial(off, len, 3, 3));
  EXPECT_FALSE(g.tail_partial(off, len, 3, 2));  // a piece ending inside the request
}

TEST_P(SectorMath, ARangeOfExactlyWholeSectorsHasNoPartialEnds) {
  const SectorGeometry g = geo();
  const std::uint64_t off = 2 * ss();
  const std::uint64_t len = 5 * ss();
  EXPECT_EQ(g.covering(off, len), (SectorSpan{2, 7}));
  EXPECT_EQ(g.inner(off, len), (SectorSpan{2, 7}));
  EXPECT_EQ(g.covering(off, len).count(), 5u);
  EXPECT_FALSE(g.head_partial(off, 2));
  EXPECT_FALSE(g.tail_partial(off, len, 2, 5));
  for (std::uint64_t s = 2; s < 7; ++s) EXPECT_EQ(g.in_sector(off, len, s).size(), ss());
  EXPECT_EQ(g.bytes(g.covering(off, len).count()), len);
}

TEST_P(SectorMath, RoundingDownToSectorsDropsOnlyTheTrailingPart) {
  const SectorGeometry g = geo();
  EXPECT_EQ(round_down_to_sector(3 * ss() + 1, ss()), 3u * ss());
  EXPECT_EQ(round_down_to_sector(3 * ss() - 1, ss()), 2u * ss());
  EXPECT_EQ(round_down_to_sector(3 * ss(), ss()), 3u * ss());
  EXPECT_EQ(round_down_to_sector(ss() - 1, ss()), 0u);
  EXPECT_EQ(round_down_to_sector(kMax, ss()), kMax - (ss() - 1));
  EXPECT_EQ(g.sectors_in(3 * ss() + 1), 3u);
  EXPECT_EQ(g.sectors_in(ss() - 1), 0u);
}

TEST_P(SectorMath, DiscardKeepsOnlyTheWholeSectorsInside) {
  const SectorGeometry g = geo();
  EXPECT_TRUE(g.inner(1, 2 * ss() - 2).empty());  // two partial sectors, nothing whole
  EXPECT_EQ(g.inner(1, 2 * ss() - 1), (SectorSpan{1, 2}));
  EXPECT_EQ(g.inner(ss(), ss() - 1).count(), 0u);
  EXPECT_EQ(g.inner(0, g.size), (SectorSpan{0, 1000}));
}

TEST_P(SectorMath, SectorNumbersAboveTwoToTheThirtyTwoMapPastTwoTebibytes) {
  const std::uint64_t data_off = 1 << 20;
  const std::uint64_t sectors = (1ull << 32) + 64;
  const SectorGeometry g{ss(), data_off, sectors * ss()};
  const std::uint64_t s = (1ull << 32) + 5;
  // No 32-bit truncation anywhere: 2^32 sectors of 512 bytes are 2 TiB.
  EXPECT_EQ(g.image_offset(s), data_off + ((1ull << 32) + 5) * ss());
  EXPECT_GT(g.image_offset(s), 2ull << 40);
  const std::uint64_t off = g.byte_of(s) + 100;
  EXPECT_EQ(g.sector_of(off), s);
  EXPECT_EQ(g.covering(off, 2 * ss()), (SectorSpan{s, s + 3}));
  EXPECT_EQ(g.image_byte(off), g.image_offset(s) + 100);
  EXPECT_EQ(g.clamp(g.byte_of(sectors) - 3, 4), 3u);
  EXPECT_FALSE(g.fits(g.byte_of(sectors) - 3, 4));
}

TEST_P(SectorMath, RangesNearUint64MaxSaturateInsteadOfWrapping) {
  const SectorGeometry g{ss(), 0, kMax / ss() * ss()};
  // off + len wraps to a small number: a naive `off + len <= size` would accept it.
  EXPECT_FALSE(g.fits(10, kMax));
  EXPECT_FALSE(g.fits(g.size - 10, 20));
  EXPECT_TRUE(g.fits(g.size - 10, 10));
  EXPECT_EQ(g.clamp(10, kMax), g.size - 10);
  EXPECT_EQ(saturating_end(kMax - 5, 10), kMax);
  EXPECT_EQ(saturating_end(kMax - 5, 5), kMax);
  EXPECT_EQ(saturating_end(5, 10), 15u);
  EXPECT_EQ(g.covering(kMax - 100, 1000), (SectorSpan{(kMax - 100) / ss(), kMax / ss() + 1}));
  EXPECT_EQ(g.covering(kMax, 1), (SectorSpan{kMax / ss(), kMax / ss() + 1}));
  EXPECT_EQ(g.inner(kMax - 3 * std::uint64_t{ss()}, kMax).end, kMax / ss());
  EXPECT_EQ(overlap(kMax - 10, 100, kMax - 50, 100), (ByteSpan{kMax - 10, kMax}));
  EXPECT_EQ(overlap(0, 10, 20, 10).size(), 0u);
  EXPECT_FALSE(g.tail_partial(kMax - 1000, kMax, 0, 1));
}

INSTANTIATE_TEST_SUITE_P(SectorSizes, SectorMath, ::testing::Values(512u, 4096u),
                         [](const auto& p) { return "ss" + std::to_string(p.param); });

// End to end with a real cipher: the engine writes sector s at the image offset sector_math
// gives, encrypted with the IV crypto derives from the SectorIndex it hands over. The expected
// IV is computed here from dm-crypt's rule (iv_offset in 512-byte units; with
// iv_large_sectors the IV counts in sector_size units) and checked with a reference cipher
// that has no offset and counts in sector units, so the engine, sector_math and
// crypto/internal/sector_numbering.h must all agree.
struct IvCase {
  std::uint32_t ss;
  bool iv_large_sectors;
  std::uint64_t iv_offset;
};

class EngineIvNumbering : public ::testing::TestWithParam<IvCase> {};

TEST_P(EngineIvNumbering, SectorsPastTwoTebibytesUseTheIvCryptoDerives) {
  const IvCase c = GetParam();
  auto spec = crypto::CipherSpec::parse("aes-xts-plain64");
  ASSERT_TRUE(spec);
  std::vector<std::byte> key(64);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::byte>(i * 7 + 1);
  auto cipher = crypto::make_sector_cipher({*spec, c.ss, c.iv_large_sectors, c.iv_offset}, key);
  ASSERT_TRUE(cipher);
  auto reference = crypto::make_sector_cipher({*spec, c.ss, /*iv_large_sectors=*/true, 0}, key);
  ASSERT_TRUE(reference);

  const std::uint64_t data_off = 2 << 20;
  // Past 2 TiB of image (sector 2^32 + 5 at 512 bytes) on a sparse store.
  const std::uint64_t sectors = (1ull << 41) / c.ss + 16;
  const SectorGeometry g{c.ss, data_off, sectors * c.ss};
  auto mem = std::make_unique<MemBackingStore>(data_off + g.size, "mem:iv");
  MemBackingStore* store = mem.get();
  VolumeLayout layout;
  layout.type = VolumeType::kPlain;
  layout.sector_size = c.ss;
  layout.data_offset_bytes = data_off;
  VolumeOptions opts;
  opts.cache_bytes = 0;  // write-through: the ciphertext is in the store when write() returns
  auto vol = open_volume(layout, std::move(*cipher), std::move(mem), opts, nullptr);
  ASSERT_TRUE(vol) << vol.error().message();

  const std::uint64_t s = (1ull << 41) / c.ss + 5;
  std::vector<std::byte> plain(c.ss);
  for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<std::byte>(i ^ 0x5a);
  ASSERT_TRUE((*vol)->write(ByteOffset{g.byte_of(s)}, plain));

  std::vector<std::byte> raw(c.ss);
  store->peek(g.image_offset(s), raw);
  EXPECT_NE(raw, plain);
  const std::uint64_t per = c.ss / 512;
  const std::uint64_t iv = c.iv_large_sectors ? c.iv_offset / per + s : c.iv_offset + s * per;
  // The reference counts IVs in sector units from 0 (iv_large_sectors, no offset): its
  // SectorIndex is the IV itself.
  ASSERT_TRUE((*reference)->decrypt({raw, {}, SectorIndex{iv}}));
  EXPECT_EQ(raw, plain);
}

INSTANTIATE_TEST_SUITE_P(Cases, EngineIvNumbering,
                         ::testing::Values(IvCase{512, false, 0}, IvCase{512, false, 12345},
                                           IvCase{4096, false, 8 * 777}, IvCase{4096, true, 0},
                                           IvCase{4096, true, 8 * 777},
                                           IvCase{1024, true, 2 * 999}),
                         [](const auto& p) {
                           return "ss" + std::to_string(p.param.ss) +
                                  (p.param.iv_large_sectors ? "_large" : "_small") + "_offset" +
                                  std::to_string(p.param.iv_offset);
                         });

}  // namespace
}  // namespace cryptmap::volume

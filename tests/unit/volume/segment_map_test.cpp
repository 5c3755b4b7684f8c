// volume/segment/segment_map.h: a multi-segment layout served by the ordinary engine. Each
// segment kind is checked against the raw image: crypt ranges hold the ciphertext a one-line
// dm-crypt table with that segment's image offset and IV offset would write, zero ranges read
// zeros and never reach the image, linear ranges hold the plaintext.
#include "volume/segment/segment_map.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "crypto/sector_cipher.h"
#include "tests/support/data.h"
#include "volume/store/mem_backing_store.h"
#include "volume/volume.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint64_t kImage = 1u << 20;

std::vector<std::byte> pattern(std::size_t n, int salt) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<std::uint8_t>(i * 7 + salt));
  return v;
}
std::vector<std::byte> key() { return pattern(32, 3); }

// Volume [0, 8K) = crypt from image 512K (IV 1024); [8K, 72K) zero (image 64K..128K untouched);
// [72K, 136K) linear at image 72K; [136K, 1M) crypt in place (IV = image sector).
VolumeLayout layout(std::uint32_t ss) {
  VolumeLayout l;
  l.type = VolumeType::kBitlk;
  l.cipher = *crypto::CipherSpec::parse("aes-xts-plain64");
  l.key_bytes = 32;
  l.sector_size = ss;
  l.iv_large_sectors = ss != 512;
  l.segments = {
      {SegmentKind::kCrypt, 0, 8192, 512u << 10, (512u << 10) / 512, {}},
      {SegmentKind::kZero, 8192, 65536, 0, 0, {}},
      {SegmentKind::kLinear, 73728, 65536, 73728, 0, {}},
      {SegmentKind::kCrypt, 139264, kImage - 139264, 139264, 139264 / 512, {}},
  };
  l.size_bytes = kImage;
  return l;
}

// The ciphertext a single-segment dm-crypt mapping (iv_offset in 512-byte sectors) gives.
std::vector<std::byte> encrypt_as_dm(std::vector<std::byte> plain, std::uint32_t ss,
                                     std::uint64_t iv_offset) {
  crypto::SectorCipherConfig cc;
  cc.spec = *crypto::CipherSpec::parse("aes-xts-plain64");
  cc.sector_size = ss;
  cc.iv_large_sectors = ss != 512;
  cc.iv_offset = iv_offset;
  auto c = crypto::make_sector_cipher(cc, key());
  EXPECT_TRUE(c);
  EXPECT_TRUE((*c)->encrypt({plain, {}, SectorIndex{0}}));
  return plain;
}

class SegmentMap : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(SegmentMap, EachKindLandsWhereItsDmTableLineWouldPutIt) {
  const std::uint32_t ss = GetParam();
  auto mem = std::make_unique<MemBackingStore>(kImage);
  MemBackingStore* raw = mem.get();
  const auto untouched = pattern(65536, 99);
  // Image 8K..72K is mapped by nothing but the zero segment: 64K..72K keeps this pattern.
  ASSERT_TRUE(raw->write_at(ByteOffset{65536}, untouched));
  const VolumeLayout l = layout(ss);
  auto store = make_segmented_store(l, std::move(mem));
  ASSERT_TRUE(store) << store.error().message();
  auto cipher = make_segmented_cipher(l, key());
  ASSERT_TRUE(cipher) << cipher.error().message();
  VolumeLayout flat = l;
  flat.size_bytes = kImage;
  auto vol = open_volume(flat, std::move(*cipher), std::move(*store), VolumeOptions{}, nullptr);
  ASSERT_TRUE(vol) << vol.error().message();
  EXPECT_EQ((*vol)->size_bytes(), kImage);

  const auto data = pattern(kImage, 1);
  ASSERT_TRUE((*vol)->write(ByteOffset{0}, data));
  ASSERT_TRUE((*vol)->flush());

  std::vector<std::byte> img(kImage);
  ASSERT_TRUE(raw->read_at(ByteOffset{0}, img));
  auto at = [&](std::uint64_t off, std::size_t n) {
    return std::vector<std::byte>(img.begin() + static_cast<std::ptrdiff_t>(off),
                                  img.begin() + static_cast<std::ptrdiff_t>(off + n));
  };
  auto plain = [&](std::uint64_t off, std::size_t n) {
    return std::vector<std::byte>(data.begin() + static_cast<std::ptrdiff_t>(off),
                                  data.begin() + static_cast<std::ptrdiff_t>(off + n));
  };
  // Relocated crypt segment: ciphertext of volume [0, 8K) at image 512K with IV 1024.
  EXPECT_EQ(at(512u << 10, 8192), encrypt_as_dm(plain(0, 8192), ss, 1024));
  // Zero segment: the image under it was never written (image 8K..72K kept its zeros and the
  // pattern written at 64K..72K).
  EXPECT_EQ(at(8192, 65536 - 8192), std::vector<std::byte>(65536 - 8192));
  EXPECT_EQ(at(65536, 8192), std::vector<std::byte>(untouched.begin(), untouched.begin() + 8192));
  // Linear: plaintext in place.
  EXPECT_EQ(at(73728, 65536), plain(73728, 65536));
  // Crypt in place, IV = image sector: compare one stretch past the relocated copy.
  EXPECT_EQ(at(139264, 65536), encrypt_as_dm(plain(139264, 65536), ss, 139264 / 512));
  // Read back: everything but the zero segment as written; the zero segment reads zeros.
  std::vector<std::byte> back(kImage);
  ASSERT_TRUE((*vol)->read(ByteOffset{0}, back));
  for (std::uint64_t o = 8192; o < 73728; ++o) ASSERT_EQ(back[o], std::byte{0}) << o;
  std::fill(back.begin() + 8192, back.begin() + 73728, std::byte{0});
  auto expect = data;
  std::fill(expect.begin() + 8192, expect.begin() + 73728, std::byte{0});
  EXPECT_EQ(back, expect);
  // An unaligned read across three segments.
  std::vector<std::byte> small(70000);
  ASSERT_TRUE((*vol)->read(ByteOffset{4000}, small));
  EXPECT_EQ(small, std::vector<std::byte>(expect.begin() + 4000, expect.begin() + 74000));
}

INSTANTIATE_TEST_SUITE_P(SectorSizes, SegmentMap, ::testing::Values(512u, 4096u));

TEST(SegmentMapValidate, RejectsGapsOverlapsMisalignmentAndRangesOutsideTheImage) {
  VolumeLayout l = layout(512);
  EXPECT_TRUE(validate_segments(l, kImage));
  auto bad = [&](auto edit) {
    VolumeLayout c = l;
    edit(c);
    auto r = validate_segments(c, kImage);
    EXPECT_FALSE(r);
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::kCorrupt);
    }
  };
  bad([](VolumeLayout& c) { c.segments[1].offset_bytes += 512; });          // gap
  bad([](VolumeLayout& c) { c.segments[1].length_bytes = 100; });           // partial sector
  bad([](VolumeLayout& c) { c.segments[0].image_offset_bytes = kImage; });  // outside
  bad([](VolumeLayout& c) { c.segments[3].length_bytes += 512; });          // past the end
  bad([](VolumeLayout& c) { c.segments.clear(); });
  bad([](VolumeLayout& c) { c.size_bytes = 4096; });
  bad([](VolumeLayout& c) { c.segments[0].length_bytes = ~0ull - 100; });
  VolumeLayout big = layout(4096);
  big.segments[0].iv_offset = 1025;  // not a multiple of 8 with 4K sectors
  EXPECT_FALSE(validate_segments(big, kImage));
}

// A LUKS2 image in reencryption (docs/reencrypt.md §9): two crypt segments, each with its own
// cipher, sector size and slice of the volume key, inside a volume of the larger sector size.
std::vector<std::byte> encrypt_with(std::vector<std::byte> plain, const char* spec,
                                    std::uint32_t ss, std::uint64_t iv_offset,
                                    std::span<const std::byte> k) {
  crypto::SectorCipherConfig cc;
  cc.spec = *crypto::CipherSpec::parse(spec);
  cc.sector_size = ss;
  cc.iv_offset = iv_offset;
  auto c = crypto::make_sector_cipher(cc, k);
  EXPECT_TRUE(c) << c.error().message();
  if (c) {
    EXPECT_TRUE((*c)->encrypt({plain, {}, SectorIndex{0}}));
  }
  return plain;
}

TEST(SegmentMapOwnCiphers, EachCryptSegmentUsesItsCipherSectorSizeAndKeySlice) {
  constexpr std::uint64_t kSplit = 256u << 10;
  const auto vk = pattern(96, 5);  // [0, 64): xts key; [64, 96): cbc key
  VolumeLayout l;
  l.type = VolumeType::kLuks2;
  l.cipher = *crypto::CipherSpec::parse("aes-xts-plain64");
  l.key_bytes = 96;
  l.sector_size = 4096;
  l.size_bytes = kImage;
  l.segments = {{SegmentKind::kCrypt, 0, kSplit, 0, 8, {"aes-cbc-essiv:sha256", 512, 64, 32}},
                {SegmentKind::kCrypt,
                 kSplit,
                 kImage - kSplit,
                 kSplit,
                 8 + kSplit / 512,
                 {"aes-xts-plain64", 4096, 0, 64}}};
  auto mem = std::make_unique<MemBackingStore>(kImage);
  MemBackingStore* raw = mem.get();
  auto store = make_segmented_store(l, std::move(mem));
  ASSERT_TRUE(store) << store.error().message();
  auto cipher = make_segmented_cipher(l, vk);
  ASSERT_TRUE(cipher) << cipher.error().message();
  auto vol = open_volume(l, std::move(*cipher), std::move(*store), VolumeOptions{}, nullptr);
  ASSERT_TRUE(vol) << vol.error().message();
  const auto data = pattern(kImage, 2);
  ASSERT_TRUE((*vol)->write(ByteOffset{0}, data));
  ASSERT_TRUE((*vol)->flush());
  std::vector<std::byte> img(kImage);
  ASSERT_TRUE(raw->read_at(ByteOffset{0}, img));
  const std::span<const std::byte> key_span(vk);
  EXPECT_EQ(std::vector<std::byte>(img.begin(), img.begin() + kSplit),
            encrypt_with(std::vector<std::byte>(data.begin(), data.begin() + kSplit),
                         "aes-cbc-essiv:sha256", 512, 8, key_span.subspan(64, 32)));
  EXPECT_EQ(std::vector<std::byte>(img.begin() + kSplit, img.end()),
            encrypt_with(std::vector<std::byte>(data.begin() + kSplit, data.end()),
                         "aes-xts-plain64", 4096, 8 + kSplit / 512, key_span.first(64)));
  std::vector<std::byte> across(10000);  // unaligned, across the boundary
  ASSERT_TRUE((*vol)->read(ByteOffset{kSplit - 5000}, across));
  EXPECT_EQ(across,
            std::vector<std::byte>(data.begin() + kSplit - 5000, data.begin() + kSplit + 5000));

  VolumeLayout bad = l;
  bad.segments[0].cipher.sector_size = 8192;  // larger than the volume's
  EXPECT_FALSE(validate_segments(bad, kImage));
  bad = l;
  bad.segments[1].cipher.key_offset = 64;  // [64, 128) is past the 96-byte key
  EXPECT_FALSE(make_segmented_cipher(bad, vk));
  bad = l;
  bad.segments[0].cipher.encryption = "nope-xts";
  EXPECT_FALSE(make_segmented_cipher(bad, vk));
}

// An online decryption's cipher (docs/reencrypt.md §10): crypt below the boundary, plaintext
// (no cipher) above it, the boundary moving down; an encryption's is the mirror image.
TEST(SegmentMapBoundary, APlaintextSidePassesThroughWhileTheBoundaryMovesDown) {
  constexpr std::uint64_t kSplit = 256u << 10;
  const auto vk = key();
  crypto::SectorCipherConfig cc;
  cc.spec = *crypto::CipherSpec::parse("aes-cbc-essiv:sha256");
  cc.sector_size = 512;
  cc.iv_offset = 8;
  auto old_side = crypto::make_sector_cipher(cc, vk);
  ASSERT_TRUE(old_side) << old_side.error().message();
  auto boundary = std::make_shared<SegmentBoundary>(kSplit);
  auto cipher = make_boundary_cipher(std::move(*old_side), nullptr, 4096, boundary);
  ASSERT_TRUE(cipher) << cipher.error().message();
  const auto data = pattern(kImage, 9);
  auto buf = data;
  ASSERT_TRUE((*cipher)->encrypt({buf, {}, SectorIndex{0}}));
  EXPECT_EQ(std::vector<std::byte>(buf.begin(), buf.begin() + kSplit),
            encrypt_with(std::vector<std::byte>(data.begin(), data.begin() + kSplit),
                         "aes-cbc-essiv:sha256", 512, 8, vk));
  EXPECT_EQ(std::vector<std::byte>(buf.begin() + kSplit, buf.end()),
            std::vector<std::byte>(data.begin() + kSplit, data.end()));
  // Down by 64 KiB: those sectors are plaintext now, both ways; below they still decrypt.
  boundary->move_to(kSplit - (64u << 10));
  auto moved = data;
  ASSERT_TRUE((*cipher)->decrypt({moved, {}, SectorIndex{0}}));
  EXPECT_EQ(std::vector<std::byte>(moved.begin() + kSplit - (64u << 10), moved.end()),
            std::vector<std::byte>(data.begin() + kSplit - (64u << 10), data.end()));
  ASSERT_TRUE((*cipher)->decrypt({buf, {}, SectorIndex{0}}));
  EXPECT_EQ(std::vector<std::byte>(buf.begin(), buf.begin() + kSplit - (64u << 10)),
            std::vector<std::byte>(data.begin(), data.begin() + kSplit - (64u << 10)));
  EXPECT_FALSE(make_boundary_cipher(nullptr, nullptr, 4096, boundary));
}

// A data shift's served store (docs/reencrypt.md §10 item 10): bytes below the boundary map
// through the "before" segments, the rest through the "after" ones; a request across the
// boundary is cut there; a pending range below it maps to the after side, and joins the before
// side when cleared. The cipher sees the same sides.
TEST(SegmentMapBoundary, AStoreMapsEachSideAtItsOwnPlace) {
  constexpr std::uint64_t kVol = 64u << 10, kShift = 16u << 10;
  auto mem = std::make_unique<MemBackingStore>(kVol + 2 * kShift, "mem:shift");
  MemBackingStore& img = *mem;
  // Bytes that differ from offset to offset (pattern() repeats every 256 bytes).
  const auto image = test::deterministic_bytes(kVol + 2 * kShift, 5);
  ASSERT_TRUE(img.write_at(ByteOffset{0}, image));
  // before: [0, 16K) at image 80K (a moved start), [16K, 64K) in place; after: at the shift.
  std::vector<Segment> before = {{SegmentKind::kLinear, 0, kShift, kVol + kShift, 0, {}},
                                 {SegmentKind::kLinear, kShift, kVol - kShift, kShift, 0, {}}};
  std::vector<Segment> after = {{SegmentKind::kLinear, 0, kVol, kShift, 0, {}}};
  auto boundary = std::make_shared<SegmentBoundary>(48u << 10);
  auto store = make_boundary_store(before, after, std::move(mem), boundary);
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_EQ((*store)->size_bytes(), kVol);
  std::vector<std::byte> all(kVol);
  ASSERT_TRUE((*store)->read_at(ByteOffset{0}, all));
  auto at = [&](std::uint64_t v, std::uint64_t image_off) {  // 512 bytes at v are image's
    return std::equal(all.begin() + v, all.begin() + v + 512, image.begin() + image_off);
  };
  EXPECT_TRUE(at(0, kVol + kShift) && at(kShift - 512, kVol + 2 * kShift - 512));  // moved
  EXPECT_TRUE(at(kShift, kShift) && at((48u << 10) - 512, (48u << 10) - 512));     // in place
  EXPECT_TRUE(at(48u << 10, (48u << 10) + kShift) && at(kVol - 512, kVol + kShift - 512));
  // A write across the boundary lands on both sides' places.
  const auto w = test::deterministic_bytes(8192, 77);
  ASSERT_TRUE((*store)->write_at(ByteOffset{(48u << 10) - 4096}, w));
  std::vector<std::byte> got(4096);
  ASSERT_TRUE(img.read_at(ByteOffset{(48u << 10) - 4096}, got));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), w.begin()));
  ASSERT_TRUE(img.read_at(ByteOffset{(48u << 10) + kShift}, got));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), w.begin() + 4096));
  // Down to 0: everything at the shift.
  boundary->move_to(0);
  ASSERT_TRUE((*store)->read_at(ByteOffset{0}, all));
  EXPECT_TRUE(at(0, kShift) && at(kVol - 512, kVol + kShift - 512));
  // A pending range below the boundary stays on the after side until cleared.
  boundary->move_to(kVol);
  boundary->set_pending(0, kShift);
  EXPECT_FALSE(boundary->before(0));
  EXPECT_TRUE(boundary->before(kShift));
  ASSERT_TRUE((*store)->read_at(ByteOffset{0}, all));
  EXPECT_TRUE(at(0, kShift) && at(kShift, kShift));  // after side, then before (in place)
  boundary->set_pending(0, 0);
  ASSERT_TRUE((*store)->read_at(ByteOffset{0}, all));
  EXPECT_TRUE(at(0, kVol + kShift));
  // Sides of different sizes, or a gap, are refused.
  after[0].length_bytes -= 512;
  EXPECT_FALSE(make_boundary_store(before, after,
                                   std::make_unique<MemBackingStore>(kVol + 2 * kShift), boundary));
}

// status's offset and skipped sectors (docs/formats.md §3.8): the crypt or linear line with the
// smallest image offset, zero lines ignored, the first of equal ones; TCRYPT and one-line
// volumes keep their own fields.
TEST(ActiveOffsets, TheSegmentWithTheSmallestImageOffsetGivesOffsetAndIvOffset) {
  VolumeLayout one;
  one.data_offset_bytes = 4096;
  one.iv_offset = 24;
  EXPECT_EQ(active_offsets(one).offset_sectors, 8u);
  EXPECT_EQ(active_offsets(one).iv_offset_sectors, 24u);

  // BitLocker's shape: the relocated header at image 512K first in the volume, zero lines over
  // the metadata (one at image 0), the data mapped onto itself from 8K.
  VolumeLayout bl;
  bl.type = VolumeType::kBitlk;
  bl.segments = {{SegmentKind::kCrypt, 0, 8192, 512 * 1024, 1024, {}},
                 {SegmentKind::kZero, 8192, 4096, 0, 0, {}},
                 {SegmentKind::kCrypt, 12288, 65536, 12288, 24, {}},
                 {SegmentKind::kCrypt, 77824, 4096, 8192, 16, {}}};
  EXPECT_EQ(active_offsets(bl).offset_sectors, 16u);
  EXPECT_EQ(active_offsets(bl).iv_offset_sectors, 16u);

  VolumeLayout lin = bl;  // a linear line below them: its IV offset counts as 0
  lin.segments.push_back({SegmentKind::kLinear, 81920, 4096, 1024, 0, {}});
  EXPECT_EQ(active_offsets(lin).offset_sectors, 2u);
  EXPECT_EQ(active_offsets(lin).iv_offset_sectors, 0u);

  VolumeLayout tie;  // two lines at the same image offset: the first in the table
  tie.segments = {{SegmentKind::kCrypt, 0, 4096, 16 << 20, 7, {}},
                  {SegmentKind::kCrypt, 4096, 4096, 16 << 20, 9, {}}};
  EXPECT_EQ(active_offsets(tie).offset_sectors, 32768u);
  EXPECT_EQ(active_offsets(tie).iv_offset_sectors, 7u);

  VolumeLayout zeros;  // nothing but zero lines: 0, as dm's table has no offset to show
  zeros.segments = {{SegmentKind::kZero, 0, 4096, 0, 0, {}}};
  zeros.data_offset_bytes = 4096;
  EXPECT_EQ(active_offsets(zeros).offset_sectors, 0u);

  VolumeLayout tc = bl;  // TCRYPT: the header's values, as cryptsetup takes them
  tc.type = VolumeType::kTcrypt;
  tc.data_offset_bytes = 131072;
  tc.iv_offset = 256;
  EXPECT_EQ(active_offsets(tc).offset_sectors, 256u);
  EXPECT_EQ(active_offsets(tc).iv_offset_sectors, 256u);
}

}  // namespace
}  // namespace cryptmap::volume

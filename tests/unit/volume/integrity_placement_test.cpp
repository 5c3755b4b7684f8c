// Where an integrity volume's blocks and tags lie in the image, checked against images built
// here, independently of the volume's write path (docs/integrity.md §0, §1.2):
//  * tags are bound to the volume-relative sector: blocks encrypted here with the
//    volume-relative AAD sector and put at their geometry positions read back; the same blocks
//    with their tags bound to the image sector (what a layer that authenticated the image offset
//    would write) fail, every one of them;
//  * legacy padding (superblock flags 0, version 1: 128 KiB metadata runs; cryptmap formats
//    only fixed padding): a volume built here with that superblock opens, blocks written here at
//    the legacy positions read back, and the volume's own writes land at the legacy positions
//    (not the fixed-padding ones) with tags that verify there.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "crypto/auth_cipher.h"
#include "tests/unit/volume/integrity_test_util.h"
#include "volume/format/dm_integrity.h"
#include "volume/integrity/integrity_volume.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint64_t kMiB = 1u << 20;
constexpr std::uint32_t kBs = 4096;
constexpr std::uint32_t kSpb = kBs / 512;
constexpr const char* kEnc = "aes-xts-random";
constexpr const char* kInteg = "hmac(sha256)";
constexpr std::uint32_t kTag = 48;

VolumeLayout layout_at(std::uint64_t off) {
  return test::integrity_layout(kEnc, kInteg, kBs, off, /*journal=*/false);
}

std::vector<std::byte> volume_key() {
  std::vector<std::byte> k(96);
  for (std::size_t i = 0; i < k.size(); ++i) k[i] = std::byte(0x3b * i + 1);
  return k;
}

std::vector<std::byte> block_of(std::uint64_t k) {
  std::vector<std::byte> v(kBs);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = std::byte((k * 131 + i * 7 + (i >> 9)) & 0xff);
  return v;
}

VolumeOptions direct() {
  VolumeOptions o;
  o.cache_bytes = 0;
  o.no_write_workqueue = true;
  o.no_read_workqueue = true;
  return o;
}

// Writes the superblock of `g` and its initial journal at g.start (what a format writes).
void write_integrity_area(MemBackingStore& mem, const integrity::Geometry& g) {
  std::vector<std::byte> area(integrity::kSbBytes +
                              std::size_t{g.journal_sections} * g.journal_section_sectors * 512);
  integrity::serialize_superblock(integrity::format_superblock(g),
                                  std::span(area).first(integrity::kSbBytes));
  integrity::write_initial_journal(g, std::span(area).subspan(integrity::kSbBytes));
  mem.poke(g.start * 512, area);
}

// Encrypts block k with AAD sector `aad` and puts data and tuple at k's geometry positions.
void put_block(MemBackingStore& mem, const integrity::Geometry& g,
               const crypto::AuthSectorCipher& c, std::uint64_t k, std::uint64_t aad) {
  auto d = block_of(k);
  std::vector<std::byte> t(kTag);
  ASSERT_TRUE(c.encrypt_sector(aad, d, t));
  mem.poke(g.data_sector(k * kSpb) * 512, d);
  mem.poke(g.tag_byte(k * kSpb), t);
}

const std::uint64_t kBlocks[] = {0, 1, 2, 7, 100, 4095, 4096, 4097, 5000};  // areas 0 and 1

TEST(IntegrityPlacement, TagsBoundToTheImageOffsetFail) {
  const VolumeLayout l = layout_at(6 * kMiB);
  auto cipher = crypto::make_auth_sector_cipher(kEnc, kInteg, kBs, volume_key());
  ASSERT_TRUE(cipher);
  for (const bool bound_to_image : {false, true}) {
    SCOPED_TRACE(bound_to_image ? "tags bound to the image sector" : "volume-relative tags");
    auto mem = std::make_unique<MemBackingStore>(48 * kMiB, "mem:placement");
    auto g = format_integrity_area(*mem, l, kTag);
    ASSERT_TRUE(g) << g.error().message();
    for (std::uint64_t k : kBlocks) {
      const std::uint64_t aad =
          bound_to_image ? g->data_sector(k * kSpb) : crypto::aad_sector(SectorIndex{k}, kBs);
      put_block(*mem, *g, **cipher, k, aad);
    }
    auto v = open_integrity_volume(l, volume_key(), std::move(mem), direct(), nullptr);
    ASSERT_TRUE(v) << v.error().message();
    std::vector<std::byte> b(kBs);
    for (std::uint64_t k : kBlocks) {
      auto r = (*v)->read(ByteOffset{k * kBs}, b);
      if (bound_to_image) {
        ASSERT_FALSE(r) << "block " << k << " verified with a tag bound to the image offset";
        EXPECT_EQ(r.error().code, Errc::kAuth);
      } else {
        ASSERT_TRUE(r) << "block " << k << ": " << r.error().message();
        EXPECT_EQ(b, block_of(k)) << k;
      }
    }
    EXPECT_EQ(integrity_counters(**v)->tags_failed, bound_to_image ? std::size(kBlocks) : 0u);
  }
}

TEST(IntegrityPlacement, LegacyPaddingReadsAndWritesAtLegacyOffsets) {
  const VolumeLayout l = layout_at(1 * kMiB);
  integrity::GeometryParams p;
  p.dev_sectors = 48 * kMiB / 512;
  p.start = 1 * kMiB / 512;
  p.tag_size = kTag;
  p.sector_size = kBs;
  p.fixed_padding = false;
  auto legacy = integrity::compute_geometry(p);
  ASSERT_TRUE(legacy) << legacy.error().message();
  p.fixed_padding = true;
  auto fixed = integrity::compute_geometry(p);
  ASSERT_TRUE(fixed);
  // docs/integrity.md §1.2: mr = roundup(T · 2^(il − log2 spb), P) / 512, P 131072 (legacy) or
  // 4096: 48 · 4096 = 196608 bytes → 262144 (512 sectors) legacy, 196608 (384) fixed.
  ASSERT_EQ(legacy->metadata_run, 512u);
  ASSERT_EQ(fixed->metadata_run, 384u);
  const auto sb = integrity::format_superblock(*legacy);
  EXPECT_EQ(sb.flags, 0u);
  EXPECT_EQ(sb.version, 1);
  for (std::uint64_t k : kBlocks)
    ASSERT_NE(legacy->data_sector(k * kSpb), fixed->data_sector(k * kSpb)) << k;

  auto cipher = crypto::make_auth_sector_cipher(kEnc, kInteg, kBs, volume_key());
  ASSERT_TRUE(cipher);
  auto mem = std::make_unique<MemBackingStore>(48 * kMiB, "mem:legacy");
  MemBackingStore* image = mem.get();
  write_integrity_area(*mem, *legacy);
  // Reads: blocks written here at the legacy positions.
  for (std::uint64_t k : kBlocks)
    put_block(*mem, *legacy, **cipher, k, crypto::aad_sector(SectorIndex{k}, kBs));
  auto v = open_integrity_volume(l, volume_key(), std::move(mem), direct(), nullptr);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ((*v)->size_bytes(), legacy->provided_data_sectors * 512);
  std::vector<std::byte> b(kBs);
  for (std::uint64_t k : kBlocks) {
    auto r = (*v)->read(ByteOffset{k * kBs}, b);
    ASSERT_TRUE(r) << "block " << k << ": " << r.error().message();
    EXPECT_EQ(b, block_of(k)) << k;
  }
  // Writes: the volume's own blocks land at the legacy positions with their tags.
  for (std::uint64_t k : kBlocks) {
    auto nb = block_of(k + 1000);
    ASSERT_TRUE((*v)->write(ByteOffset{k * kBs}, nb));
  }
  ASSERT_TRUE((*v)->flush());
  for (std::uint64_t k : kBlocks) {
    std::vector<std::byte> d(kBs), t(kTag);
    image->peek(legacy->data_sector(k * kSpb) * 512, d);
    image->peek(legacy->tag_byte(k * kSpb), t);
    ASSERT_TRUE((*cipher)->decrypt_sector(crypto::aad_sector(SectorIndex{k}, kBs), d, t))
        << "block " << k << " is not at its legacy position";
    EXPECT_EQ(d, block_of(k + 1000)) << k;
  }
  // And a reopen reads them.
  std::vector<std::byte> copy(image->size_bytes());
  image->peek(0, copy);
  v->reset();
  auto mem2 = std::make_unique<MemBackingStore>(copy.size(), "mem:legacy");
  mem2->poke(0, copy);
  auto v2 = open_integrity_volume(l, volume_key(), std::move(mem2), direct(), nullptr);
  ASSERT_TRUE(v2) << v2.error().message();
  for (std::uint64_t k : kBlocks) {
    ASSERT_TRUE((*v2)->read(ByteOffset{k * kBs}, b));
    EXPECT_EQ(b, block_of(k + 1000)) << k;
  }
}

}  // namespace
}  // namespace cryptmap::volume

// dm-integrity geometry and superblock (docs/integrity.md §1): every kernel-made size case of
// §1.3, the worked offsets and the superblock/journal bytes of §1.4, hostile superblocks.
#include "volume/format/dm_integrity.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/bytes.h"
#include "crypto/hash.h"

namespace cryptmap::volume::integrity {
namespace {

struct SizeCase {
  const char* name;
  std::uint64_t dev_sectors, start;
  std::uint32_t tag, sector;
  bool fixed;
  std::uint64_t provided, initial, metadata_run;  // 0 = not pinned by the source
};

// docs/integrity.md §1.3. LUKS2 cases: 32 MiB image, --offset 8192, legacy padding (the
// cryptsetup test formats with --integrity-legacy-padding); T = auth tag + stored IV.
constexpr std::uint64_t k32M = 65536;
const SizeCase kCases[] = {
    {"xts_plain64_hmac_sha256_512", k32M, 8192, 32, 512, false, 52800, 448, 2048},
    {"cbc_essiv_hmac_sha256_512", k32M, 8192, 32, 512, false, 52800, 448, 2048},
    {"aegis128_random_512", k32M, 8192, 32, 512, false, 52800, 448, 2048},
    {"xts_random_hmac_sha256_512", k32M, 8192, 48, 512, false, 50680, 520, 3072},
    {"gcm_random_512", k32M, 8192, 28, 512, false, 53312, 448, 1792},
    {"chacha20_random_poly1305_512", k32M, 8192, 28, 512, false, 53312, 448, 1792},
    {"ccm_random_512", k32M, 8192, 24, 512, false, 53848, 424, 1536},
    {"chacha20_plain64_poly1305_512", k32M, 8192, 16, 512, false, 54776, 520, 1024},
    {"xts_plain64_hmac_sha512_512", k32M, 8192, 64, 512, false, 48640, 512, 4096},
    {"xts_plain64_hmac_sha256_4096", k32M, 8192, 32, 4096, false, 56560, 272, 256},
    {"cbc_essiv_hmac_sha256_4096", k32M, 8192, 32, 4096, false, 56560, 272, 256},
    {"gcm_random_4096", k32M, 8192, 28, 4096, false, 56560, 272, 256},
    {"chacha20_random_poly1305_4096", k32M, 8192, 28, 4096, false, 56560, 272, 256},
    {"aegis128_random_4096", k32M, 8192, 32, 4096, false, 56560, 272, 256},
    {"xts_random_hmac_sha256_4096", k32M, 8192, 48, 4096, false, 56048, 272, 512},
    {"xts_random_hmac_sha1_4096", k32M, 8192, 36, 4096, false, 56048, 272, 512},
    {"xts_plain64_hmac_sha1_4096", k32M, 8192, 20, 4096, false, 56496, 336, 256},
    {"ccm_random_4096", k32M, 8192, 24, 4096, false, 56496, 336, 256},
    {"chacha20_plain64_poly1305_4096", k32M, 8192, 16, 4096, false, 56496, 336, 256},
    {"xts_plain64_hmac_sha512_4096", k32M, 8192, 64, 4096, false, 55912, 408, 512},
    {"xts_random_hmac_sha512_4096", k32M, 8192, 80, 4096, false, 55400, 408, 768},
    // tests/integrity-compat-test: standalone, start 0.
    {"standalone_t4_512", k32M, 0, 4, 512, false, 64664, 0, 0},
    {"standalone_t8_512", k32M, 0, 8, 512, false, 64152, 0, 0},
    {"standalone_t20_512", k32M, 0, 20, 512, false, 62552, 0, 0},
    {"standalone_t32_512", k32M, 0, 32, 512, false, 60992, 0, 0},
    {"standalone_t16_4096", k32M, 0, 16, 4096, false, 64688, 0, 0},
    {"standalone_t32_4096", k32M, 0, 32, 4096, false, 64752, 0, 0},
    {"standalone_fixed_padding_t4_4096", k32M, 0, 4, 4096, true, 65072, 0, 0},
    // §1.4 worked examples (fixed padding, LUKS2 default offset 16 MiB) and the 64 MiB one.
    {"w256m_xts_random_hmac_sha256", 524288, 32768, 48, 4096, true, 481792, 3968, 384},
    {"w256m_gcm_random", 524288, 32768, 28, 4096, true, 484192, 3968, 224},
    {"w256m_xts_plain64_hmac_sha512", 524288, 32768, 64, 4096, true, 479832, 4008, 512},
    {"w256m_xts_random_hmac_sha256_512", 524288, 32768, 48, 512, true, 444408, 4104, 3072},
    {"w1g_xts_random_hmac_sha256", 2097152, 32768, 48, 4096, true, 2024200, 16376, 384},
    {"w1g_gcm_random", 2097152, 32768, 28, 4096, true, 2033896, 16376, 224},
    {"w64m_hmac_sha256", 131072, 32768, 32, 4096, true, 96736, 0, 0},
};

class SizeCases : public ::testing::TestWithParam<SizeCase> {};

TEST_P(SizeCases, ProvidedDataSectorsInitialAndMetadataRun) {
  const SizeCase& c = GetParam();
  GeometryParams p;
  p.dev_sectors = c.dev_sectors;
  p.start = c.start;
  p.tag_size = c.tag;
  p.sector_size = c.sector;
  p.fixed_padding = c.fixed;
  auto g = compute_geometry(p);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->provided_data_sectors, c.provided);
  if (c.initial != 0) {
    EXPECT_EQ(g->initial_sectors, c.initial);
  }
  if (c.metadata_run != 0) {
    EXPECT_EQ(g->metadata_run, c.metadata_run);
  }
  // The kernel's checksum is of provided·512 zero bytes; the last sector fits, one block more
  // would not.
  EXPECT_LT(g->data_sector(g->provided_data_sectors - 1), c.dev_sectors);
  // Round trip through the superblock.
  const Superblock sb = format_superblock(*g);
  std::vector<std::byte> area(kSbBytes);
  serialize_superblock(sb, area);
  auto back = parse_superblock(area);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, sb);
  auto g2 = geometry_from_superblock(*back, c.dev_sectors, c.start);
  ASSERT_TRUE(g2) << g2.error().message();
  EXPECT_EQ(g2->provided_data_sectors, c.provided);
  EXPECT_EQ(g2->initial_sectors, g->initial_sectors);
}

INSTANTIATE_TEST_SUITE_P(KernelMade, SizeCases, ::testing::ValuesIn(kCases),
                         [](const auto& i) { return std::string(i.param.name); });

// The two kernel size cases of §1.2 without an interleaved layout (a separate metadata device:
// 65536 of 65536 sectors; inline tags: 32760 of 32768) are layouts cryptmap does not compute: a
// LUKS2 stack never has a metadata device (GeometryParams cannot express one) and inline tags
// need the device's own per-sector metadata. An inline superblock is refused by the geometry
// code itself, naming the mode, before any size is computed from it.
TEST(DmIntegrityGeometry, InlineSuperblocksAreRefusedNotSized) {
  GeometryParams p;
  p.dev_sectors = 32768;
  p.tag_size = 16;
  p.sector_size = 4096;
  auto g = compute_geometry(p);
  ASSERT_TRUE(g) << g.error().message();
  Superblock sb = format_superblock(*g);
  ASSERT_TRUE(geometry_from_superblock(sb, 32768, 0));
  sb.flags |= kFlagInline;
  auto inl = geometry_from_superblock(sb, 32768, 0);
  ASSERT_FALSE(inl);
  EXPECT_EQ(inl.error().code, Errc::kUnsupported);
  EXPECT_NE(inl.error().message().find("inline"), std::string::npos) << inl.error().message();
}

TEST(DmIntegrityGeometry, WorkedOffsets256MiB) {
  GeometryParams p;
  p.dev_sectors = 524288;
  p.start = 32768;
  p.tag_size = 48;
  p.sector_size = 4096;
  auto g = compute_geometry(p);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->journal_entry_size, 120u);
  EXPECT_EQ(g->journal_sections, 15u);
  EXPECT_EQ(g->journal_section_sectors, 264u);
  EXPECT_EQ(g->data_sector(0) * 512, 0x1220000u);
  EXPECT_EQ(g->tag_byte(0), 0x11f0000u);
  EXPECT_EQ(g->data_sector(8) * 512, 0x1221000u);
  EXPECT_EQ(g->tag_byte(8), 0x11f0030u);
  EXPECT_EQ(g->data_sector(32768) * 512, 0x2250000u);
  EXPECT_EQ(g->tag_byte(32768), 0x2220000u);

  const Superblock sb = format_superblock(*g);
  EXPECT_EQ(sb.version, 4);
  EXPECT_EQ(sb.log2_blocks_per_bitmap_bit, 12);
  std::vector<std::byte> area(kSbBytes);
  serialize_superblock(sb, area);
  EXPECT_EQ(to_hex(std::span<const std::byte>(area).first(32)),
            "696e746567727400040f30000f000000005a07000000000008000000030c0000");
  for (std::size_t i = 32; i < area.size(); ++i) ASSERT_EQ(area[i], std::byte{0}) << i;

  // Superblock area + initial journal (docs/integrity.md §1.3).
  std::vector<std::byte> all(kSbBytes + std::size_t{15} * 264 * 512);
  std::copy(area.begin(), area.end(), all.begin());
  write_initial_journal(*g, std::span(all).subspan(kSbBytes));
  EXPECT_EQ(all.size(), 2031616u);
  std::vector<std::byte> h(32);
  ASSERT_TRUE(crypto::hash_digest("sha256", {std::span<const std::byte>(all)}, h));
  EXPECT_EQ(to_hex(h), "0a14de687fe6b3090450085a9778d3d77b2cd1abd2e51f7933009a4bdc219360");
}

TEST(DmIntegrityGeometry, JournalEntriesAreStriped) {
  GeometryParams p;
  p.dev_sectors = 524288;
  p.start = 32768;
  p.tag_size = 48;
  p.sector_size = 4096;
  auto g = compute_geometry(p);
  ASSERT_TRUE(g);
  EXPECT_EQ(journal_entry_offset(*g, 0), 0u);
  EXPECT_EQ(journal_entry_offset(*g, 1), 512u);
  EXPECT_EQ(journal_entry_offset(*g, 8), 120u);
  EXPECT_EQ(journal_entry_offset(*g, 9), 632u);
  EXPECT_EQ(journal_commit_id(1, 2, 0), 0x1111111111111111ull ^ ((1ull << 32) ^ 2));
}

TEST(DmIntegrityGeometry, LegacyPaddingIsVersion1) {
  GeometryParams p;
  p.dev_sectors = k32M;
  p.start = 8192;
  p.tag_size = 32;
  p.fixed_padding = false;
  auto g = compute_geometry(p);
  ASSERT_TRUE(g);
  EXPECT_EQ(format_superblock(*g).version, 1);
  EXPECT_EQ(format_superblock(*g).flags, 0u);
}

TEST(DmIntegritySuperblock, HostileFieldsAreRefused) {
  GeometryParams p;
  p.dev_sectors = 524288;
  p.start = 32768;
  p.tag_size = 48;
  p.sector_size = 4096;
  auto g = compute_geometry(p);
  ASSERT_TRUE(g);
  std::vector<std::byte> area(kSbBytes);
  serialize_superblock(format_superblock(*g), area);
  auto mutated = [&](std::size_t at, std::uint8_t v) {
    auto a = area;
    a[at] = std::byte{v};
    return parse_superblock(a);
  };
  EXPECT_EQ(mutated(7, 'x').error().code, Errc::kCorrupt);  // magic "integrt\0"
  EXPECT_EQ(mutated(8, 0).error().code, Errc::kCorrupt);    // version 0
  EXPECT_EQ(mutated(8, 7).error().code, Errc::kCorrupt);    // version 7
  EXPECT_EQ(mutated(28, 4).error().code, Errc::kCorrupt);   // 8 KiB blocks
  EXPECT_EQ(mutated(9, 2).error().code, Errc::kCorrupt);    // interleave 4 sectors
  EXPECT_FALSE(parse_superblock(std::span(area).first(100)));

  auto sb = *parse_superblock(area);
  EXPECT_TRUE(check_luks2_superblock(sb, 48, 4096));
  EXPECT_EQ(check_luks2_superblock(sb, 32, 4096).error().code, Errc::kCorrupt);
  EXPECT_EQ(check_luks2_superblock(sb, 48, 512).error().code, Errc::kCorrupt);
  for (std::uint32_t f : {kFlagInline, kFlagHaveJournalMac, kFlagRecalculating, kFlagDirtyBitmap}) {
    auto s = sb;
    s.flags |= f;
    EXPECT_EQ(check_luks2_superblock(s, 48, 4096).error().code, Errc::kUnsupported) << f;
  }
  // More data than the file holds (a truncated image), and absurd journals.
  auto big = sb;
  big.provided_data_sectors += 8;
  EXPECT_EQ(geometry_from_superblock(big, 524288, 32768).error().code, Errc::kCorrupt);
  EXPECT_FALSE(geometry_from_superblock(sb, 400000, 32768));
  auto has = [](const Result<Geometry>& r, std::initializer_list<const char*> parts) {
    if (r) return ::testing::AssertionFailure() << "opened";
    const std::string m = r.error().message();
    for (const char* part : parts)
      if (m.find(part) == std::string::npos)
        return ::testing::AssertionFailure() << "\"" << part << "\" missing in: " << m;
    return ::testing::AssertionSuccess();
  };
  // Wrong journal sizes say what is wrong and what to do.
  auto huge = sb;
  huge.journal_sections = 0xFFFFFFFFu;
  EXPECT_TRUE(has(
      geometry_from_superblock(huge, 524288, 32768),
      {"journal_sections [4294967295]", "exceed 2^32 - 1", "superblock damaged", "from a backup"}));
  huge.journal_sections = 0;
  EXPECT_TRUE(has(geometry_from_superblock(huge, 524288, 32768),
                  {"journal_sections [0]", "at least 1", "superblock damaged", "from a backup"}));
  // More sections than formatted: the data areas move up and the claimed data no longer fits;
  // the message names the sections it assumed, both fields and the truncation.
  auto more = sb;
  more.journal_sections = 40;  // formatted with 15
  EXPECT_TRUE(has(geometry_from_superblock(more, 524288, 32768),
                  {"provided_data_sectors [481792]", "holds only 475192 with 40 journal sections",
                   "restore the full image or superblock"}));
  // So many sections that no data fits at all.
  auto full = sb;
  full.journal_sections = 1900;  // 1900 x 264 sectors > the 491520 after the offset
  EXPECT_TRUE(has(geometry_from_superblock(full, 524288, 32768),
                  {"device size [524288]", "no data fits after 1900 journal sections",
                   "too small or truncated", "superblock damaged"}));
  auto odd = sb;
  odd.provided_data_sectors = 12;  // not a whole 4 KiB block
  EXPECT_TRUE(has(geometry_from_superblock(odd, 524288, 32768),
                  {"provided_data_sectors [12]", "multiple of 8 (the block)", "from a backup"}));
  EXPECT_EQ(geometry_from_superblock(sb, ~0ull, 32768).error().code, Errc::kInvalid);
  auto small = sb;
  small.log2_interleave_sectors = 5;  // smaller than dm-bufio's buffer: refused
  EXPECT_EQ(geometry_from_superblock(small, 524288, 32768).error().code, Errc::kUnsupported);
}

}  // namespace
}  // namespace cryptmap::volume::integrity

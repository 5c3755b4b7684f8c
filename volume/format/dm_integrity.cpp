// dm-integrity layout: docs/integrity.md §1 (superblock §1.1, geometry §1.2, journal §1.5).
#include "volume/format/dm_integrity.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/bytes.h"

namespace cryptmap::volume::integrity {
namespace {

constexpr char kMagic[8] = {'i', 'n', 't', 'e', 'g', 'r', 't', '\0'};
constexpr std::uint32_t kMaxTagSize = 504 - 8 - 8 - 8 * 8;  // kernel MAX_TAG_SIZE = 424
constexpr std::uint32_t kMinLog2Interleave = 3;
constexpr std::uint64_t kMaxDevSectors = std::uint64_t{1} << 54;
constexpr std::uint32_t kMaxLog2Interleave = 31;
// The flat tag offset equals the kernel's dm-bufio computation only when the interleave is at
// least the buffer size (128 sectors); LUKS2 always uses 32768 (docs/integrity.md §1.2).
constexpr std::uint32_t kMinSupportedLog2Interleave = 7;
constexpr std::uint64_t kCommitIds[4] = {0x1111111111111111ull, 0x2222222222222222ull,
                                         0x3333333333333333ull, 0x4444444444444444ull};

std::uint64_t round_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

// Device sector of logical sector l, or nullopt on overflow (hostile sizes).
std::optional<std::uint64_t> checked_data_sector(const Geometry& g, std::uint64_t l) {
  const std::uint64_t area = l >> g.log2_interleave;
  const std::uint64_t off = l & (g.interleave_sectors() - 1);
  std::uint64_t a = 0, b = 0, r = 0;
  if (__builtin_mul_overflow(area, g.interleave_sectors(), &a)) return std::nullopt;
  if (__builtin_mul_overflow(area + 1, g.metadata_run, &b)) return std::nullopt;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  if (__builtin_add_overflow(r, g.initial_sectors + off, &r)) return std::nullopt;
  if (__builtin_add_overflow(r, g.start, &r)) return std::nullopt;
  return r;
}

// calculate_device_limits: 0 when `provided` fits, as the kernel's check.
bool fits(const Geometry& g, std::uint64_t provided) {
  if (g.initial_sectors + 8 >= g.dev_sectors) return false;
  const auto last = checked_data_sector(g, provided - 1);
  return last && *last >= g.start && *last < g.dev_sectors;
}

Result<Geometry> finish(Geometry g) {
  // calculate_journal_section_size (no journal MAC for LUKS2 stacks).
  const std::uint32_t spb = g.sectors_per_block();
  g.journal_entry_size = static_cast<std::uint32_t>(round_up(8 + 8u * spb + g.tag_size, 8));
  g.journal_section_entries = 8 * (504 / g.journal_entry_size);
  g.journal_section_sectors = g.journal_section_entries * spb + 8;
  g.initial_sectors = kSbSectors + std::uint64_t{g.journal_section_sectors} * g.journal_sections;
  if (g.initial_sectors > 0xFFFFFFFFull)
    return fail(make_error_fmt(Errc::kInvalid, "dm-integrity superblock: journal_sections",
                               g.journal_sections,
                               "%llu journal sectors exceed 2^32 - 1: superblock damaged (restore "
                               "it from a backup)",
                               static_cast<unsigned long long>(g.initial_sectors)));
  const std::uint64_t padding = g.fixed_padding ? 4096 : 131072;
  g.metadata_run =
      round_up(std::uint64_t{g.tag_size} << (g.log2_interleave - g.log2_sectors_per_block),
               padding) /
      512;
  // get_provided_data_sectors: the largest multiple of 8 whose last sector still fits.
  g.provided_data_sectors = 0;
  for (int bit = 63 - std::countl_zero(g.dev_sectors); bit >= 3; --bit) {
    const std::uint64_t t = g.provided_data_sectors | (std::uint64_t{1} << bit);
    if (fits(g, t)) g.provided_data_sectors = t;
  }
  if (g.provided_data_sectors == 0)
    return fail(make_error_fmt(Errc::kInvalid, "dm-integrity device size", g.dev_sectors,
                               "no data fits after %u journal sections: image too small or "
                               "truncated, or superblock damaged",
                               g.journal_sections));
  return g;
}

Result<std::uint32_t> log2_block(std::uint32_t sector_size) {
  if (sector_size < 512 || sector_size > 4096 || !std::has_single_bit(sector_size))
    return fail(make_error_fmt(Errc::kInvalid, "dm-integrity block size", sector_size,
                               "must be 512, 1024, 2048 or 4096"));
  return static_cast<std::uint32_t>(std::countr_zero(sector_size / 512));
}

}  // namespace

std::uint8_t superblock_version_for(std::uint32_t flags) noexcept {
  if ((flags & kFlagInline) != 0) return 6;
  if ((flags & kFlagFixedHmac) != 0) return 5;
  if ((flags & kFlagFixedPadding) != 0) return 4;
  if ((flags & kFlagDirtyBitmap) != 0) return 3;
  if ((flags & kFlagRecalculating) != 0) return 2;
  return 1;
}

Result<Superblock> parse_superblock(std::span<const std::byte> a) {
  if (a.size() < 512)
    return fail(make_error(Errc::kCorrupt, "dm-integrity superblock: short read"));
  if (std::memcmp(a.data(), kMagic, sizeof kMagic) != 0)
    return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity superblock", 0,
                               "not a valid INTEGRITY device (magic)"));
  Superblock sb;
  const std::byte* p = a.data();
  sb.version = std::to_integer<std::uint8_t>(p[8]);
  sb.log2_interleave_sectors = std::to_integer<std::uint8_t>(p[9]);
  sb.integrity_tag_size = load_le16(p + 10);
  sb.journal_sections = load_le32(p + 12);
  sb.provided_data_sectors = load_le64(p + 16);
  sb.flags = load_le32(p + 24);
  sb.log2_sectors_per_block = std::to_integer<std::uint8_t>(p[28]);
  sb.log2_blocks_per_bitmap_bit = std::to_integer<std::uint8_t>(p[29]);
  sb.recalc_sector = load_le64(p + 32);
  std::memcpy(sb.salt.data(), p + 48, 16);
  if (sb.version < 1 || sb.version > 6)
    return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity superblock: version", sb.version,
                               "unknown version %u", sb.version));
  if (sb.log2_sectors_per_block > 3)
    return fail(make_error(Errc::kCorrupt, "dm-integrity superblock: log2_sectors_per_block",
                           sb.log2_sectors_per_block));
  if (sb.integrity_tag_size == 0)
    return fail(make_error(Errc::kCorrupt, "dm-integrity superblock: tag size", 0));
  if ((sb.flags & kFlagInline) == 0 && (sb.log2_interleave_sectors < kMinLog2Interleave ||
                                        sb.log2_interleave_sectors > kMaxLog2Interleave))
    return fail(make_error(Errc::kCorrupt, "dm-integrity superblock: log2_interleave_sectors",
                           sb.log2_interleave_sectors));
  return sb;
}

void serialize_superblock(const Superblock& sb, std::span<std::byte> out) {
  std::fill(out.begin(), out.end(), std::byte{0});
  std::byte* p = out.data();
  std::memcpy(p, kMagic, sizeof kMagic);
  p[8] = std::byte{superblock_version_for(sb.flags)};
  p[9] = std::byte{sb.log2_interleave_sectors};
  p[10] = std::byte(sb.integrity_tag_size & 0xff);
  p[11] = std::byte(sb.integrity_tag_size >> 8);
  store_le32(p + 12, sb.journal_sections);
  store_le64(p + 16, sb.provided_data_sectors);
  store_le32(p + 24, sb.flags);
  p[28] = std::byte{sb.log2_sectors_per_block};
  p[29] = std::byte{sb.log2_blocks_per_bitmap_bit};
  store_le64(p + 32, sb.recalc_sector);
  std::memcpy(p + 48, sb.salt.data(), 16);
}

Result<void> check_luks2_superblock(const Superblock& sb, std::uint32_t tag_size,
                                    std::uint32_t sector_size) {
  if ((sb.flags & kFlagInline) != 0)
    return fail(make_error(Errc::kUnsupported, "dm-integrity superblock: inline mode"));
  if ((sb.flags & kFlagHaveJournalMac) != 0)
    return fail(make_error(Errc::kUnsupported, "dm-integrity superblock: journal MAC"));
  if ((sb.flags & kFlagRecalculating) != 0)
    return fail(make_error(Errc::kUnsupported, "dm-integrity superblock: recalculating"));
  if ((sb.flags & kFlagDirtyBitmap) != 0)
    return fail(make_error(Errc::kUnsupported, "dm-integrity superblock: bitmap mode"));
  if (sb.integrity_tag_size != tag_size)
    return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity superblock: tag size",
                               sb.integrity_tag_size, "%u, the LUKS2 segment needs %u",
                               sb.integrity_tag_size, tag_size));
  if (sb.block_bytes() != sector_size)
    return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity superblock: block size",
                               sb.block_bytes(), "%u, the LUKS2 segment says %u", sb.block_bytes(),
                               sector_size));
  return {};
}

std::uint64_t Geometry::data_sector(std::uint64_t l) const noexcept {
  const std::uint64_t area = l >> log2_interleave;
  const std::uint64_t off = l & (interleave_sectors() - 1);
  return start + initial_sectors + area * interleave_sectors() + (area + 1) * metadata_run + off;
}

std::uint64_t Geometry::tag_byte(std::uint64_t l) const noexcept {
  const std::uint64_t area = l >> log2_interleave;
  const std::uint64_t off = l & (interleave_sectors() - 1);
  const std::uint64_t run = start + initial_sectors + area * (interleave_sectors() + metadata_run);
  return run * 512 + (off >> log2_sectors_per_block) * tag_size;
}

Result<Geometry> compute_geometry(const GeometryParams& p) {
  CRYPTMAP_TRY(l2, log2_block(p.sector_size));
  if (p.tag_size == 0 || p.tag_size > kMaxTagSize)
    return fail(make_error(Errc::kInvalid, "dm-integrity tag size", p.tag_size));
  if (p.log2_interleave < kMinSupportedLog2Interleave || p.log2_interleave > kMaxLog2Interleave)
    return fail(make_error(Errc::kUnsupported, "dm-integrity interleave", p.log2_interleave));
  // Byte offsets (sectors · 512) must fit in 64 bits everywhere below.
  if (p.dev_sectors > kMaxDevSectors)
    return fail(make_error(Errc::kInvalid, "dm-integrity device size: larger than 2^63 bytes",
                           p.dev_sectors));
  if (p.start >= p.dev_sectors || p.dev_sectors - p.start < 2 * kSbSectors)
    return fail(make_error_fmt(Errc::kInvalid, "dm-integrity device size", p.dev_sectors,
                               "too small for a superblock at sector %llu",
                               static_cast<unsigned long long>(p.start)));
  Geometry g;
  g.start = p.start;
  g.dev_sectors = p.dev_sectors;
  g.tag_size = p.tag_size;
  g.log2_sectors_per_block = l2;
  g.log2_interleave = p.log2_interleave;
  g.fixed_padding = p.fixed_padding;
  const std::uint32_t spb = 1u << l2;
  const std::uint32_t entry = static_cast<std::uint32_t>(round_up(8 + 8u * spb + p.tag_size, 8));
  const std::uint64_t section = std::uint64_t{8 * (504 / entry)} * spb + 8;
  if (p.journal_sections) {
    g.journal_sections = *p.journal_sections;
  } else {
    const std::uint64_t js = p.journal_sectors.value_or(
        std::min(kDefaultMaxJournalSectors, p.dev_sectors >> kJournalSizeFactor));
    g.journal_sections = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(std::max<std::uint64_t>(js / section, 1), 0xFFFFFFFFull));
  }
  if (g.journal_sections == 0)
    return fail(
        make_error_fmt(Errc::kCorrupt, "dm-integrity superblock: journal_sections", 0,
                       "must be at least 1: superblock damaged (restore it from a backup)"));
  return finish(g);
}

Result<Geometry> geometry_from_superblock(const Superblock& sb, std::uint64_t dev_sectors,
                                          std::uint64_t start) {
  if ((sb.flags & kFlagInline) != 0)
    return fail(make_error(Errc::kUnsupported, "dm-integrity superblock: inline mode"));
  GeometryParams p;
  p.dev_sectors = dev_sectors;
  p.start = start;
  p.tag_size = sb.integrity_tag_size;
  p.sector_size = sb.block_bytes();
  p.fixed_padding = (sb.flags & kFlagFixedPadding) != 0;
  p.log2_interleave = sb.log2_interleave_sectors;
  p.journal_sections = sb.journal_sections;
  CRYPTMAP_TRY(g, compute_geometry(p));
  if (sb.provided_data_sectors > g.provided_data_sectors)
    return fail(make_error_fmt(
        Errc::kCorrupt, "dm-integrity superblock: provided_data_sectors", sb.provided_data_sectors,
        "device holds only %llu with %u journal sections: restore the full "
        "image or superblock",
        static_cast<unsigned long long>(g.provided_data_sectors), g.journal_sections));
  if (sb.provided_data_sectors % g.sectors_per_block() != 0 || sb.provided_data_sectors == 0)
    return fail(make_error_fmt(Errc::kCorrupt, "dm-integrity superblock: provided_data_sectors",
                               sb.provided_data_sectors,
                               "not a positive multiple of %u (the block): superblock "
                               "damaged, restore it from a backup",
                               g.sectors_per_block()));
  g.provided_data_sectors = sb.provided_data_sectors;
  return g;
}

Superblock format_superblock(const Geometry& g) {
  Superblock sb;
  sb.flags = g.fixed_padding ? kFlagFixedPadding : 0;
  sb.version = superblock_version_for(sb.flags);
  sb.log2_interleave_sectors = static_cast<std::uint8_t>(g.log2_interleave);
  sb.integrity_tag_size = static_cast<std::uint16_t>(g.tag_size);
  sb.journal_sections = g.journal_sections;
  sb.provided_data_sectors = g.provided_data_sectors;
  sb.log2_sectors_per_block = static_cast<std::uint8_t>(g.log2_sectors_per_block);
  // dm_integrity_ctr: 15 (32768 sectors per bit) raised until the journal, counted in bits,
  // covers the data.
  std::uint64_t bits = (std::uint64_t{g.journal_section_sectors} * g.journal_sections) << 12;
  bits = std::min<std::uint64_t>(bits, 0xFFFFFFFFull);
  unsigned l2 = 15;
  if (bits != 0)
    while (l2 < 63 && bits < ((g.provided_data_sectors + (std::uint64_t{1} << l2) - 1) >> l2)) ++l2;
  sb.log2_blocks_per_bitmap_bit = static_cast<std::uint8_t>(l2 - g.log2_sectors_per_block);
  return sb;
}

std::uint64_t journal_commit_id(std::uint32_t section, std::uint32_t sector,
                                unsigned seq) noexcept {
  return kCommitIds[seq & 3] ^ ((std::uint64_t{section} << 32) ^ sector);
}

std::size_t journal_entry_offset(const Geometry& g, std::uint32_t n) noexcept {
  return std::size_t{n % 8} * 512 + std::size_t{n / 8} * g.journal_entry_size;
}

void write_initial_journal(const Geometry& g, std::span<std::byte> out) {
  write_initial_journal(g, out, 0);
}

void write_initial_journal(const Geometry& g, std::span<std::byte> out, unsigned seq) {
  std::fill(out.begin(), out.end(), std::byte{0});
  const std::size_t section_bytes = std::size_t{g.journal_section_sectors} * 512;
  for (std::uint32_t i = 0; i < g.journal_sections; ++i) {
    std::byte* s = out.data() + i * section_bytes;
    if (static_cast<std::size_t>(s - out.data()) + section_bytes > out.size()) return;
    for (std::uint32_t j = 0; j < g.journal_section_sectors; ++j)
      store_le64(s + std::size_t{j} * 512 + 504, journal_commit_id(i, j, seq));
    for (std::uint32_t n = 0; n < g.journal_section_entries; ++n)
      store_le32(s + journal_entry_offset(g, n) + 4, 0xFFFFFFFFu);  // sector_hi: unused
  }
}

std::string describe_superblock(const Superblock& sb) {
  std::string o;
  auto line = [&](const char* k, unsigned long long v) {
    o += k;
    o += std::to_string(v);
    o += "\n";
  };
  line("version: ", sb.version);
  line("tag size: ", sb.integrity_tag_size);
  line("sector size: ", sb.block_bytes());
  o += "data size: " + std::to_string(sb.provided_data_sectors) + " [512-byte units] (" +
       std::to_string(sb.provided_data_sectors * 512) + " [bytes])\n";
  if ((sb.flags & kFlagRecalculating) != 0) line("recalculate sector: ", sb.recalc_sector);
  line("journal sections: ", sb.journal_sections);
  line("log2 interleave sectors: ", sb.log2_interleave_sectors);
  line("log2 blocks per bitmap: ", sb.log2_blocks_per_bitmap_bit);
  o += "flags:";
  const struct {
    std::uint32_t f;
    const char* n;
  } names[] = {{kFlagHaveJournalMac, " have_journal_mac"},
               {kFlagRecalculating, " recalculating"},
               {kFlagDirtyBitmap, " dirty_bitmap"},
               {kFlagFixedPadding, " fix_padding"},
               {kFlagFixedHmac, " fix_hmac"},
               {kFlagInline, " inline"}};
  for (const auto& n : names)
    if ((sb.flags & n.f) != 0) o += n.n;
  o += "\n";
  return o;
}

}  // namespace cryptmap::volume::integrity

// The dm-integrity on-disk layout that a LUKS2 `--integrity` volume keeps under its data segment:
// the superblock, the journal area and the interleaved tag areas (docs/integrity.md §1).
// Pure functions over integers and byte spans; thread-safe. Every sector number here is in
// 512-byte units. "Device" sectors are absolute in the data file (they include `start`, the LUKS2
// segment offset); "logical" sectors are dm-integrity-relative (0 = first data sector), which is
// also the sector dm-crypt authenticates (docs/integrity.md §0).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"

namespace cryptmap::volume::integrity {

inline constexpr std::uint32_t kSbSectors = 8;  // SB_SECTORS: reserved for the superblock
inline constexpr std::size_t kSbBytes = kSbSectors * 512;
inline constexpr std::size_t kSbStructBytes = 64;  // the struct; the rest of the area is 0
inline constexpr std::uint32_t kDefaultLog2Interleave = 15;  // 32768 sectors
inline constexpr std::uint64_t kDefaultMaxJournalSectors = 131072;
inline constexpr unsigned kJournalSizeFactor = 7;  // journal = device >> 7 by default

// Superblock flags (dm-integrity.c SB_FLAG_*).
inline constexpr std::uint32_t kFlagHaveJournalMac = 0x1;
inline constexpr std::uint32_t kFlagRecalculating = 0x2;
inline constexpr std::uint32_t kFlagDirtyBitmap = 0x4;
inline constexpr std::uint32_t kFlagFixedPadding = 0x8;
inline constexpr std::uint32_t kFlagFixedHmac = 0x10;
inline constexpr std::uint32_t kFlagInline = 0x20;

// The 64-byte superblock, little-endian on disk (docs/integrity.md §1.1).
struct Superblock {
  std::uint8_t version = 0;
  std::uint8_t log2_interleave_sectors = 0;
  std::uint16_t integrity_tag_size = 0;
  std::uint32_t journal_sections = 0;
  std::uint64_t provided_data_sectors = 0;
  std::uint32_t flags = 0;
  std::uint8_t log2_sectors_per_block = 0;
  std::uint8_t log2_blocks_per_bitmap_bit = 0;
  std::uint64_t recalc_sector = 0;
  std::array<std::byte, 16> salt{};

  std::uint32_t block_bytes() const noexcept { return 512u << log2_sectors_per_block; }
  bool operator==(const Superblock&) const = default;
};

// Parses the superblock area (at least 512 bytes). kCorrupt for a wrong magic ("not a valid
// INTEGRITY device"), a version outside 1..6, a block size beyond 4096, an interleave outside
// 3..31, a zero tag size; everything else is returned as read (the caller decides what it
// refuses, see check_luks2_superblock).
Result<Superblock> parse_superblock(std::span<const std::byte> area);
// Writes the 64-byte struct into the first bytes of `out` (≥ 64 bytes) and zeroes the rest of
// `out`. The version is recomputed from the flags as the kernel does (sb_set_version).
void serialize_superblock(const Superblock& sb, std::span<std::byte> out);
std::uint8_t superblock_version_for(std::uint32_t flags) noexcept;
// What a LUKS2 stack can use: no INLINE, HAVE_JOURNAL_MAC, RECALCULATING or DIRTY_BITMAP; tag
// size and block size as the segment says. kUnsupported / kCorrupt naming the field otherwise.
Result<void> check_luks2_superblock(const Superblock& sb, std::uint32_t tag_size,
                                    std::uint32_t sector_size);

// Geometry of one dm-integrity device without a separate metadata device.
struct Geometry {
  std::uint64_t start = 0;        // device sector of the superblock (the LUKS2 segment offset)
  std::uint64_t dev_sectors = 0;  // size of the whole data file/device, `start` included
  std::uint32_t tag_size = 0;
  std::uint32_t log2_sectors_per_block = 0;
  std::uint32_t log2_interleave = kDefaultLog2Interleave;
  bool fixed_padding = true;
  // Journal (docs/integrity.md §1.2, §1.5).
  std::uint32_t journal_entry_size = 0;       // roundup(8 + 8·spb + T, 8)
  std::uint32_t journal_section_entries = 0;  // 8 · (504 / entry)
  std::uint32_t journal_section_sectors = 0;  // entries · spb + 8
  std::uint32_t journal_sections = 0;
  std::uint64_t initial_sectors = 0;        // 8 + sections · section_sectors
  std::uint64_t metadata_run = 0;           // sectors of tags before each data area
  std::uint64_t provided_data_sectors = 0;  // usable logical sectors (multiple of 8)

  std::uint32_t sectors_per_block() const noexcept { return 1u << log2_sectors_per_block; }
  std::uint32_t block_bytes() const noexcept { return 512u << log2_sectors_per_block; }
  std::uint64_t interleave_sectors() const noexcept { return std::uint64_t{1} << log2_interleave; }
  // Device sector holding logical sector `l` (kernel get_data_sector).
  std::uint64_t data_sector(std::uint64_t l) const noexcept;
  // Byte offset in the device of the tag of the block holding logical sector `l`.
  std::uint64_t tag_byte(std::uint64_t l) const noexcept;
  // Device sectors of the superblock + journal area.
  std::uint64_t journal_first_sector() const noexcept { return start + kSbSectors; }
};

struct GeometryParams {
  std::uint64_t dev_sectors = 0;
  std::uint64_t start = 0;
  std::uint32_t tag_size = 0;
  std::uint32_t sector_size = 512;  // 512..4096, a power of two
  bool fixed_padding = true;        // false = legacy padding (131072-byte metadata runs)
  std::uint32_t log2_interleave = kDefaultLog2Interleave;
  // At format the journal size comes from journal_sectors (default min(131072, dev >> 7));
  // when opening, from the superblock's journal_sections.
  std::optional<std::uint64_t> journal_sectors;
  std::optional<std::uint32_t> journal_sections;
};

// The kernel's calculate_journal_section_size + calculate_device_limits +
// get_provided_data_sectors. kInvalid (naming the size) when the device is too small for the
// superblock, the journal and one block of data.
Result<Geometry> compute_geometry(const GeometryParams& p);
// Geometry of an existing device: interleave, padding, tag and block size and journal sections
// from the superblock, provided_data_sectors recomputed from dev_sectors (kCorrupt if the
// superblock claims more than fits, as the kernel refuses to activate it).
Result<Geometry> geometry_from_superblock(const Superblock& sb, std::uint64_t dev_sectors,
                                          std::uint64_t start);
// The superblock a format writes for `g` (no journal MAC, no salt: version 4 with fixed padding,
// 1 with legacy padding), including log2_blocks_per_bitmap_bit.
Superblock format_superblock(const Geometry& g);

// Journal commit id of section `section`, journal sector `sector` (within the section), sequence
// `seq` (0..3).
std::uint64_t journal_commit_id(std::uint32_t section, std::uint32_t sector, unsigned seq) noexcept;
// Writes the initial journal (every section: zeros, commit ids of sequence 0, every entry
// marked unused) into `out`, which must be journal_sections · section_sectors · 512 bytes.
void write_initial_journal(const Geometry& g, std::span<std::byte> out);
// The same with the commit ids of sequence `seq` (0..3): what the kernel's init_journal leaves
// when replay re-initialises the journal (docs/integrity.md §1.3).
void write_initial_journal(const Geometry& g, std::span<std::byte> out, unsigned seq);
// Byte offset of entry `n` within a section's first 8 sectors (entries are striped: entry n in
// metadata sector n mod 8 at (n div 8)·entry_size).
std::size_t journal_entry_offset(const Geometry& g, std::uint32_t n) noexcept;

// `integritysetup dump`-style text of a superblock (for luksDump --debug and tests).
std::string describe_superblock(const Superblock& sb);

}  // namespace cryptmap::volume::integrity

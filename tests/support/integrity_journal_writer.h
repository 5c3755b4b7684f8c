// Test helper: writes dm-integrity journal sections byte by byte from the format described in
// docs/integrity.md §1.3 (commit ids, striped entries, displaced last bytes), independently of
// volume/format/dm_integrity_journal (the code under test). Only the section geometry numbers
// are taken as inputs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace cryptmap::test {

class JournalWriter {
 public:
  // `sections` sections for blocks of `spb` 512-byte sectors and `tag` tag bytes. Starts as the
  // journal a format leaves: every sector carrying sequence 0, every entry unused.
  JournalWriter(std::uint32_t sections, std::uint32_t spb, std::uint32_t tag)
      : spb_(spb), tag_(tag) {
    entry_ = (8 + 8 * spb + tag + 7) / 8 * 8;
    entries_ = 8 * (504 / entry_);
    sectors_ = entries_ * spb + 8;
    bytes_.assign(std::size_t{sections} * sectors_ * 512, std::byte{0});
    for (std::uint32_t i = 0; i < sections; ++i) {
      seal(i, 0);
      clear_entries(i);
    }
  }

  static std::uint64_t commit_id(std::uint32_t section, std::uint32_t sector, unsigned seq) {
    const std::uint64_t c = 0x1111111111111111ull * (seq + 1);
    return c ^ ((std::uint64_t{section} << 32) ^ sector);
  }

  // Every sector of section `i` carries sequence `seq` (a fully committed section).
  void seal(std::uint32_t i, unsigned seq) {
    for (std::uint32_t j = 0; j < sectors_; ++j) set_id(i, j, seq);
  }
  // One sector's commit id (a torn section: some sectors new, some old).
  void set_id(std::uint32_t i, std::uint32_t j, unsigned seq) {
    put64(sector_ptr(i, j) + 504, commit_id(i, j, seq));
  }
  void set_raw_id(std::uint32_t i, std::uint32_t j, std::uint64_t id) {
    put64(sector_ptr(i, j) + 504, id);
  }
  void clear_entries(std::uint32_t i) {
    for (std::uint32_t n = 0; n < entries_; ++n) {
      std::byte* e = entry_ptr(i, n);
      std::memset(e, 0, entry_);
      put32(e + 4, 0xFFFFFFFFu);
    }
  }
  // Entry `n` of section `i` = `block` (spb·512 bytes) for logical `sector` with `tag`; the last
  // 8 bytes of each 512-byte piece go to the entry (the journal sector's tail is its commit id).
  void put(std::uint32_t i, std::uint32_t n, std::uint64_t sector, std::span<const std::byte> block,
           std::span<const std::byte> tag) {
    std::byte* e = entry_ptr(i, n);
    put64(e, sector);
    for (std::uint32_t k = 0; k < spb_; ++k) {
      std::memcpy(e + 8 + 8 * k, block.data() + k * 512 + 504, 8);
      std::memcpy(sector_ptr(i, 8 + n * spb_ + k), block.data() + k * 512, 504);
    }
    std::memcpy(e + 8 + 8 * spb_, tag.data(), tag_);
  }
  // Only the entry's sector field (hostile values).
  void put_sector(std::uint32_t i, std::uint32_t n, std::uint64_t sector) {
    put64(entry_ptr(i, n), sector);
  }

  std::span<const std::byte> bytes() const { return bytes_; }
  std::span<std::byte> bytes() { return bytes_; }
  std::uint32_t entries() const { return entries_; }
  std::uint32_t section_sectors() const { return sectors_; }

 private:
  std::byte* sector_ptr(std::uint32_t i, std::uint32_t j) {
    return bytes_.data() + (std::size_t{i} * sectors_ + j) * 512;
  }
  std::byte* entry_ptr(std::uint32_t i, std::uint32_t n) {
    return sector_ptr(i, n % 8) + (n / 8) * entry_;
  }
  static void put64(std::byte* p, std::uint64_t v) {
    for (int b = 0; b < 8; ++b) p[b] = std::byte(v >> (8 * b));
  }
  static void put32(std::byte* p, std::uint32_t v) {
    for (int b = 0; b < 4; ++b) p[b] = std::byte(v >> (8 * b));
  }

  std::uint32_t spb_, tag_, entry_ = 0, entries_ = 0, sectors_ = 0;
  std::vector<std::byte> bytes_;
};

}  // namespace cryptmap::test

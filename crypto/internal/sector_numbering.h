// Internal: the one place where SectorIndex becomes dm-crypt's cc_sector and IvSector
// (docs/formats.md §3.1/§3.5; dm-crypt crypt_convert_block_skcipher).
//   cc_sector = iv_offset + index * (sector_size / 512)      (512-byte units; picks the multi-key)
//   iv_sector = cc_sector, or cc_sector >> log2(sector_size / 512) with iv_large_sectors
#pragma once

#include <cstdint>

#include "base/result.h"
#include "base/units.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto::internal {

struct SectorNumbering {
  // The numbering a cipher configuration asks for (sector_size a power of two >= 512).
  static SectorNumbering of(const SectorCipherConfig& config) noexcept {
    return {config.sector_size, static_cast<std::uint32_t>(__builtin_ctz(config.sector_size / 512)),
            config.iv_large_sectors, config.iv_offset};
  }

  std::uint32_t sector_size = 512;
  std::uint32_t shift = 0;  // log2(sector_size / 512)
  bool iv_large_sectors = false;
  std::uint64_t iv_offset = 0;

  std::uint64_t cc_sector(std::uint64_t index) const noexcept {
    return iv_offset + (index << shift);
  }
  IvSector iv_sector(std::uint64_t cc) const noexcept {
    return IvSector{iv_large_sectors ? cc >> shift : cc};
  }
  // Rejects runs whose cc_sector would overflow 64 bits (a corrupt offset, never real data).
  Result<void> check_run(std::uint64_t first, std::size_t count) const {
    const std::uint64_t max_index = (~std::uint64_t{0} - iv_offset) >> shift;
    if (count == 0) return ok();
    if (first > max_index || count - 1 > max_index - first)
      return make_error(Errc::kInvalid, "sector cipher: sector number out of range", first);
    return ok();
  }
  // The prologue every engine's conversion starts with: the run must be whole sectors of this
  // size (check_run_shape) whose numbers do not overflow (check_run). Returns the sector count.
  Result<std::size_t> begin_run(const SectorRun& run) const;
};

}  // namespace cryptmap::crypto::internal

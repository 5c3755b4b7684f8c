// Strong units for the three numbers dm-crypt code confuses.
//
//  ByteOffset  — a byte position (in the volume, or in the image, as the name says).
//  SectorIndex — an index in units of the volume's encryption sector (sector_size bytes,
//                512..4096), relative to the start of the volume's data segment.
//  IvSector    — the number fed to the IV generator: 512-byte units plus iv_offset, unless
//                iv_large_sectors (then sector_size units). See volume/FORMATS.md.
// They do not convert into each other implicitly; conversions are explicit functions next to
// the code that owns the rule (crypto::SectorCipher owns SectorIndex -> IvSector).
#pragma once

#include <compare>
#include <cstdint>

namespace cryptmap {

template <class Tag>
struct StrongU64 {
  std::uint64_t value = 0;
  constexpr StrongU64() = default;
  constexpr explicit StrongU64(std::uint64_t v) : value(v) {}
  constexpr auto operator<=>(const StrongU64&) const = default;
  constexpr StrongU64 operator+(std::uint64_t n) const { return StrongU64{value + n}; }
  constexpr StrongU64& operator+=(std::uint64_t n) {
    value += n;
    return *this;
  }
  constexpr std::uint64_t operator-(StrongU64 o) const { return value - o.value; }
};

struct ByteOffsetTag {};
struct SectorIndexTag {};
struct IvSectorTag {};
using ByteOffset = StrongU64<ByteOffsetTag>;
using SectorIndex = StrongU64<SectorIndexTag>;
using IvSector = StrongU64<IvSectorTag>;

inline constexpr std::uint32_t kSectorShift512 = 9;  // dm's fixed 512-byte sector
inline constexpr std::uint32_t kSector512 = 512;

}  // namespace cryptmap

// Sector/offset arithmetic of the I/O engine: every conversion between volume byte offsets,
// sector indices and image byte offsets that the engine does goes through this header, so the
// edge cases (partial head/tail sectors, the end of the volume, offsets above 2 TiB, ranges
// near UINT64_MAX) are decided in one place and tested in sector_math_test.
//
// Units: a volume byte offset is relative to the start of the decrypted volume; a sector is a
// SectorIndex (sector_size units, relative to the data segment: the value the engine hands to
// crypto::SectorCipher); an image byte offset is where that sector's ciphertext lives in the
// backing store (data_offset + sector * sector_size).
//
// IV sectors are NOT computed here: the engine passes the SectorIndex to the cipher, and
// crypto owns the one rule that turns it into dm-crypt's IV sector (iv_offset in 512-byte
// units; iv_large_sectors counts in sector_size units; crypto/sector_cipher.h and
// crypto/internal/sector_numbering.h). sector_math_test checks end to end that the engine's
// placement and index agree with that rule.
//
// Everything is constexpr, allocation-free and total: no function overflows for any input
// (ranges that would run past UINT64_MAX saturate there). Thread-safety: values only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

namespace cryptmap::volume {

// Sectors [first, end).
struct SectorSpan {
  std::uint64_t first = 0;
  std::uint64_t end = 0;

  constexpr std::uint64_t count() const noexcept { return end > first ? end - first : 0; }
  constexpr bool empty() const noexcept { return end <= first; }
  friend constexpr bool operator==(const SectorSpan&, const SectorSpan&) = default;
};

// Bytes [lo, hi) of a range: the part of a request that one buffer or sector holds.
struct ByteSpan {
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;

  constexpr std::uint64_t size() const noexcept { return hi > lo ? hi - lo : 0; }
  friend constexpr bool operator==(const ByteSpan&, const ByteSpan&) = default;
};

// The end of [off, off + len), saturated at UINT64_MAX instead of wrapping.
constexpr std::uint64_t saturating_end(std::uint64_t off, std::uint64_t len) noexcept {
  return len > std::numeric_limits<std::uint64_t>::max() - off
             ? std::numeric_limits<std::uint64_t>::max()
             : off + len;
}

// The intersection of the byte ranges [off, off + len) and [start, start + n) (empty, with
// lo == hi, when they do not meet).
constexpr ByteSpan overlap(std::uint64_t off, std::uint64_t len, std::uint64_t start,
                           std::uint64_t n) noexcept {
  const std::uint64_t lo = std::max(off, start);
  const std::uint64_t hi = std::min(saturating_end(off, len), saturating_end(start, n));
  return hi > lo ? ByteSpan{lo, hi} : ByteSpan{lo, lo};
}

// `bytes` rounded down to whole sectors of `sector_size` (a power of two).
constexpr std::uint64_t round_down_to_sector(std::uint64_t bytes,
                                             std::uint32_t sector_size) noexcept {
  return bytes / sector_size * sector_size;
}

// The geometry of one open volume: sector size (a power of two, 512..4096), where the data
// segment starts in the image, and the volume's size in bytes (a multiple of the sector size).
struct SectorGeometry {
  std::uint32_t sector_size = 512;
  std::uint64_t data_offset = 0;
  std::uint64_t size = 0;

  constexpr std::uint64_t sectors() const noexcept { return size / sector_size; }

  // The sector that holds volume byte `off`, and the first byte of sector `s`.
  constexpr std::uint64_t sector_of(std::uint64_t off) const noexcept { return off / sector_size; }
  constexpr std::uint64_t byte_of(std::uint64_t s) const noexcept { return s * sector_size; }
  // Whole sectors in a buffer of `n` bytes.
  constexpr std::uint64_t sectors_in(std::uint64_t n) const noexcept { return n / sector_size; }
  // Bytes in `n` sectors. REQUIRES: n <= sectors() (so it cannot overflow).
  constexpr std::uint64_t bytes(std::uint64_t n) const noexcept { return n * sector_size; }
  // Where sector `s` starts in the image. REQUIRES: s <= sectors() (the open check that the
  // volume fits in the image then rules out overflow).
  constexpr std::uint64_t image_offset(std::uint64_t s) const noexcept {
    return data_offset + s * sector_size;
  }

  // Where volume byte `off` lives in the image. REQUIRES: off <= size.
  constexpr std::uint64_t image_byte(std::uint64_t off) const noexcept { return data_offset + off; }

  // Whether [off, off + len) lies inside the volume (overflow-safe: a range that would wrap
  // does not fit).
  constexpr bool fits(std::uint64_t off, std::uint64_t len) const noexcept {
    return off <= size && len <= size - off;
  }
  // The length of [off, off + len) that lies inside the volume: a read is short at the end,
  // and 0 at or past it.
  constexpr std::uint64_t clamp(std::uint64_t off, std::uint64_t len) const noexcept {
    return off >= size ? 0 : std::min(len, size - off);
  }

  // The sectors [off, off + len) touches, partial head and tail included (empty for len 0).
  constexpr SectorSpan covering(std::uint64_t off, std::uint64_t len) const noexcept {
    const std::uint64_t s0 = off / sector_size;
    if (len == 0) return {s0, s0};
    const std::uint64_t last = saturating_end(off, len - 1);
    return {s0, last / sector_size + 1};
  }
  // The whole sectors inside [off, off + len) (what dm-crypt discards; may be empty).
  constexpr SectorSpan inner(std::uint64_t off, std::uint64_t len) const noexcept {
    const std::uint64_t s0 = off / sector_size + (off % sector_size != 0 ? 1 : 0);
    const std::uint64_t s1 = saturating_end(off, len) / sector_size;
    return s1 > s0 ? SectorSpan{s0, s1} : SectorSpan{s0, s0};
  }
  // The part of [off, off + len) that sector `s` holds, as bytes of the request.
  constexpr ByteSpan in_sector(std::uint64_t off, std::uint64_t len,
                               std::uint64_t s) const noexcept {
    return overlap(off, len, byte_of(s), sector_size);
  }
  // Whether the first (last) of sectors [s, s + n), which [off, off + len) touches, is covered
  // by it only in part: those are read before a write merges the request into them.
  constexpr bool head_partial(std::uint64_t off, std::uint64_t s) const noexcept {
    return byte_of(s) < off;
  }
  constexpr bool tail_partial(std::uint64_t off, std::uint64_t len, std::uint64_t s,
                              std::uint64_t n) const noexcept {
    return byte_of(s + n) > saturating_end(off, len);
  }
};

}  // namespace cryptmap::volume

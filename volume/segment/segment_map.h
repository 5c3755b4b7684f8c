// The segment map: a volume made of several dm table lines (crypt, zero, linear ranges, each
// crypt range with its own image offset and IV offset), served by the ordinary engine.
//
// How: the engine sees one flat volume (data offset 0, IV offset 0, size = the segments' sum)
// over two decorators built here, so neither the engine nor the cache knows about segments:
//   - SegmentedStore maps volume byte offsets to image offsets segment by segment: crypt and
//     linear ranges go to the image, zero ranges read zeros and drop writes and discards
//     (dm-zero);
//   - SegmentedCipher cuts every sector run at segment boundaries: crypt ranges go to their own
//     keyed SectorCipher (configured with that segment's iv_offset, index relative to the
//     segment start), zero ranges decrypt to zeros, linear ranges pass through unchanged.
// A run the engine hands over may span several segments; both decorators split it.
//
// Online reencryption serves a volume whose sides move (SegmentBoundary, make_boundary_cipher;
// make_boundary_store when the two sides lie at different places of the image: a data shift).
//
// Used for BitLocker (volume/format/bitlk.h), for a LUKS2 image in reencryption (two crypt
// segments, each with its own cipher, sector size and slice of the volume key:
// volume/format/luks2_reencrypt.h, docs/reencrypt.md §9) and meant for any format whose dm table
// has more than one line (TrueCrypt system volumes). Single-segment layouts (LUKS, plain) do not
// go through here.
//
// Thread-safety: both decorators are as thread-safe as what they wrap (immutable after
// creation). The store decorator owns the image store.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/result.h"
#include "crypto/sector_cipher.h"
#include "volume/store/backing_store.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

// Checks layout.segments against an image of image_bytes: in order from 0, no gaps or overlap,
// lengths non-zero and multiples of sector_size, crypt/linear ranges inside the image, crypt
// sector sizes dividing sector_size, crypt IV offsets multiples of their sector size / 512.
// kCorrupt naming the segment (object = its index).
Result<void> validate_segments(const VolumeLayout& layout, std::uint64_t image_bytes);

// The decorators (validate_segments first). `key` keys every crypt segment's cipher (its slice
// when the segment names one).
Result<std::unique_ptr<BackingStore>> make_segmented_store(const VolumeLayout& layout,
                                                           std::unique_ptr<BackingStore> image);
Result<std::unique_ptr<crypto::SectorCipher>> make_segmented_cipher(const VolumeLayout& layout,
                                                                    std::span<const std::byte> key);

// The boundary between the two sides of a volume whose reencryption moves while it is served
// (online reencryption, docs/reencrypt.md §10): bytes below it are under the "before" cipher,
// the rest under the "after" one (forward: the new key before it, the old one after; a
// backward decryption: the old key before it, plaintext after). It moves one way for a run (up
// forward, down backward), by whole engine sectors, while the range it moves over is held
// (Volume::hold_range), so a request sees one side or the other for each sector, never a mix.
// Thread-safe.
//
// A *fence* marks a range whose ciphertext is neither side's (a hotzone left half converted by a
// failed reencryption step that could not be recovered): the cipher fails every sector in it
// with kIo instead of returning garbage. Set, like a move, while the range is held.
//
// A *pending* range below the boundary is still on the "after" side (the moved first part of a
// decryption with a data shift, converted last: docs/reencrypt.md §11.1); cleared, like a move,
// while it is held.
class SegmentBoundary {
 public:
  explicit SegmentBoundary(std::uint64_t at) noexcept : at_(at) {}
  std::uint64_t get() const noexcept { return at_.load(std::memory_order_acquire); }
  void move_to(std::uint64_t at) noexcept { at_.store(at, std::memory_order_release); }
  void set_pending(std::uint64_t begin, std::uint64_t end) noexcept {
    pending_begin_.store(begin, std::memory_order_relaxed);
    pending_end_.store(end, std::memory_order_release);
  }
  // Whether byte `at` is on the "before" side now.
  bool before(std::uint64_t at) const noexcept {
    const std::uint64_t pe = pending_end_.load(std::memory_order_acquire);
    if (at < pe && at >= pending_begin_.load(std::memory_order_relaxed)) return false;
    return at < get();
  }
  // The first byte after `at` where the side may change (the boundary or a pending edge past
  // `at`; UINT64_MAX when none).
  std::uint64_t next_change(std::uint64_t at) const noexcept {
    std::uint64_t n = UINT64_MAX;
    for (std::uint64_t e : {get(), pending_begin_.load(std::memory_order_relaxed),
                            pending_end_.load(std::memory_order_acquire)})
      if (e > at && e < n) n = e;
    return n;
  }
  void fence(std::uint64_t begin, std::uint64_t end) noexcept {
    fence_begin_.store(begin, std::memory_order_relaxed);
    fence_end_.store(end, std::memory_order_release);
  }
  // [begin, end) of the fence; begin == end when there is none.
  std::uint64_t fence_begin() const noexcept {
    return fence_begin_.load(std::memory_order_relaxed);
  }
  std::uint64_t fence_end() const noexcept { return fence_end_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::uint64_t> at_;
  std::atomic<std::uint64_t> fence_begin_{0}, fence_end_{0};
  std::atomic<std::uint64_t> pending_begin_{0}, pending_end_{0};
};

// The cipher of such a volume: sectors of `sector_size` bytes (a multiple of both ciphers'
// sector sizes) below the boundary go to `before`, the others to `after`. Both ciphers take
// their sector indices from the start of the volume's data (each configured with its IV offset
// at that start), so moving the boundary needs no new cipher. One of them may be null: that side
// is plaintext (a linear segment: encryption's old side, decryption's new one). kInvalid when
// sector_size is not a multiple of theirs, or both are null.
Result<std::unique_ptr<crypto::SectorCipher>> make_boundary_cipher(
    std::unique_ptr<crypto::SectorCipher> before, std::unique_ptr<crypto::SectorCipher> after,
    std::uint32_t sector_size, std::shared_ptr<const SegmentBoundary> boundary);

// The store of such a volume when the two sides lie at different places of the image (a data
// shift: docs/reencrypt.md §10): bytes on the "before" side are mapped through `before`, the
// others through `after`; each list covers [0, size) in order, of linear or crypt segments (the
// image mapping only: the cipher is make_boundary_cipher's). kCorrupt when a list has gaps, a
// segment outside the image, or the two cover different sizes.
Result<std::unique_ptr<BackingStore>> make_boundary_store(
    std::vector<Segment> before, std::vector<Segment> after, std::unique_ptr<BackingStore> image,
    std::shared_ptr<const SegmentBoundary> boundary);

}  // namespace cryptmap::volume

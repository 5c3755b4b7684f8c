#include "volume/segment/segment_map.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace cryptmap::volume {
namespace {

// The segment holding volume byte `off` (REQUIRES: off < the last segment's end).
std::size_t find_segment(const std::vector<Segment>& segs, std::uint64_t off) {
  auto it = std::upper_bound(segs.begin(), segs.end(), off,
                             [](std::uint64_t o, const Segment& s) { return o < s.offset_bytes; });
  return static_cast<std::size_t>(it - segs.begin()) - 1;
}

Error segment_error(std::size_t i, const char* what) {
  return make_error_fmt(Errc::kCorrupt, "segment map", i, "segment %zu: %s", i, what);
}

// A request's range [off, off + len) checked against a mapped volume of `size` bytes over
// `image` (`what`: which store, for the message).
Result<void> check_range(const char* what, const BackingStore& image, std::uint64_t off,
                         std::uint64_t len, std::uint64_t size) {
  if (off > size || len > size - off)
    return make_error_fmt(Errc::kIo, what, off, "%s: %llu bytes at %llu, volume %llu bytes",
                          image.name().c_str(), static_cast<unsigned long long>(len),
                          static_cast<unsigned long long>(off),
                          static_cast<unsigned long long>(size));
  return ok();
}

class SegmentedStore final : public BackingStore {
 public:
  SegmentedStore(std::vector<Segment> segs, std::unique_ptr<BackingStore> image)
      : segs_(std::move(segs)),
        image_(std::move(image)),
        size_(segs_.back().offset_bytes + segs_.back().length_bytes) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return walk(off.value, out.size(),
                [&](const Segment& s, std::uint64_t in_seg, std::uint64_t pos,
                    std::uint64_t n) -> Result<void> {
                  auto part = out.subspan(pos, n);
                  if (s.kind == SegmentKind::kZero) {
                    std::memset(part.data(), 0, part.size());
                    return ok();
                  }
                  return image_->read_at(ByteOffset{s.image_offset_bytes + in_seg}, part);
                });
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (image_->read_only()) return image_->write_at(off, in);  // kReadOnly, as the image says
    return walk(off.value, in.size(),
                [&](const Segment& s, std::uint64_t in_seg, std::uint64_t pos,
                    std::uint64_t n) -> Result<void> {
                  if (s.kind == SegmentKind::kZero) return ok();  // dm-zero drops writes
                  return image_->write_at(ByteOffset{s.image_offset_bytes + in_seg},
                                          in.subspan(pos, n));
                });
  }
  Result<void> sync() override { return image_->sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t len) override {
    return walk(off.value, len,
                [&](const Segment& s, std::uint64_t in_seg, std::uint64_t,
                    std::uint64_t n) -> Result<void> {
                  if (s.kind == SegmentKind::kZero) return ok();
                  return image_->discard(ByteOffset{s.image_offset_bytes + in_seg}, n);
                });
  }
  std::uint64_t size_bytes() const noexcept override { return size_; }
  bool read_only() const noexcept override { return image_->read_only(); }
  bool splits_large_requests() const noexcept override { return image_->splits_large_requests(); }
  // write_fua is the default (a write and then sync) here: the image's FUA is not used.
  StoreDurability durability() const noexcept override {
    StoreDurability d = image_->durability();
    d.fua = false;
    return d;
  }
  const std::string& name() const noexcept override { return image_->name(); }

 private:
  // Calls fn(segment, offset in it, offset in the request, length) for each piece of
  // [off, off + len), in order; stops at the first error.
  template <typename Fn>
  Result<void> walk(std::uint64_t off, std::uint64_t len, Fn&& fn) const {
    CRYPTMAP_TRY_VOID(check_range("segmented store: range past the end", *image_, off, len, size_));
    std::uint64_t pos = 0;
    std::size_t i = len == 0 ? 0 : find_segment(segs_, off);
    while (pos < len) {
      const Segment& s = segs_[i];
      const std::uint64_t in_seg = off + pos - s.offset_bytes;
      const std::uint64_t n = std::min(len - pos, s.length_bytes - in_seg);
      CRYPTMAP_TRY_VOID(fn(s, in_seg, pos, n));
      pos += n;
      ++i;
    }
    return ok();
  }

  std::vector<Segment> segs_;
  std::unique_ptr<BackingStore> image_;
  std::uint64_t size_;
};

class SegmentedCipher final : public crypto::SectorCipher {
 public:
  SegmentedCipher(std::vector<Segment> segs,
                  std::vector<std::unique_ptr<crypto::SectorCipher>> ciphers, std::uint32_t ss)
      : segs_(std::move(segs)), ciphers_(std::move(ciphers)), ss_(ss) {}

  Result<void> encrypt(const crypto::SectorRun& run) const override { return crypt(run, true); }
  Result<void> decrypt(const crypto::SectorRun& run) const override { return crypt(run, false); }
  std::uint32_t sector_size() const noexcept override { return ss_; }
  const char* engine_name() const noexcept override {
    for (const auto& c : ciphers_)
      if (c) return c->engine_name();
    return "none";
  }

 private:
  Result<void> crypt(const crypto::SectorRun& run, bool enc) const {
    const std::uint64_t count = run.data.size() / ss_;
    std::uint64_t k = 0;
    while (k < count) {
      const std::uint64_t off = (run.first.value + k) * ss_;
      if (off >= segs_.back().offset_bytes + segs_.back().length_bytes)
        return make_error(Errc::kInvalid, "segmented cipher: sector past the last segment");
      const std::size_t i = find_segment(segs_, off);
      const Segment& s = segs_[i];
      const std::uint64_t first_in_seg = (off - s.offset_bytes) / ss_;
      const std::uint64_t n = std::min(count - k, s.length_bytes / ss_ - first_in_seg);
      auto part = run.data.subspan(k * ss_, n * ss_);
      if (s.kind == SegmentKind::kZero) {
        if (!enc) std::memset(part.data(), 0, part.size());  // what dm-zero reads
      } else if (s.kind == SegmentKind::kCrypt) {
        // A segment with smaller sectors than the volume's: the same bytes, more of its units.
        const std::uint64_t per = ss_ / ciphers_[i]->sector_size();
        const crypto::SectorRun sub{part, {}, SectorIndex{first_in_seg * per}};
        CRYPTMAP_TRY_VOID(enc ? ciphers_[i]->encrypt(sub) : ciphers_[i]->decrypt(sub));
      }  // linear: plaintext both ways
      k += n;
    }
    return ok();
  }

  std::vector<Segment> segs_;
  std::vector<std::unique_ptr<crypto::SectorCipher>> ciphers_;  // per segment; null unless crypt
  std::uint32_t ss_;
};

class BoundaryCipher final : public crypto::SectorCipher {
 public:
  BoundaryCipher(std::unique_ptr<crypto::SectorCipher> before,
                 std::unique_ptr<crypto::SectorCipher> after, std::uint32_t ss,
                 std::shared_ptr<const SegmentBoundary> boundary)
      : before_(std::move(before)),
        after_(std::move(after)),
        ss_(ss),
        boundary_(std::move(boundary)) {}

  Result<void> encrypt(const crypto::SectorRun& run) const override { return crypt(run, true); }
  Result<void> decrypt(const crypto::SectorRun& run) const override { return crypt(run, false); }
  std::uint32_t sector_size() const noexcept override { return ss_; }
  const char* engine_name() const noexcept override {
    return (after_ ? after_ : before_)->engine_name();
  }

 private:
  Result<void> crypt(const crypto::SectorRun& run, bool enc) const {
    const std::uint64_t count = run.data.size() / ss_;
    const std::uint64_t first = run.first.value;
    // The caller holds the run's range, so the boundary cannot cross it meanwhile.
    const std::uint64_t fence_end = boundary_->fence_end() / ss_;
    const std::uint64_t fence_begin = boundary_->fence_begin() / ss_;
    if (fence_begin < fence_end && first < fence_end && fence_begin < first + count)
      return fail(make_error_fmt(Errc::kIo, "reencryption hotzone", std::max(first, fence_begin),
                                 "left by a failed reencryption step: close the volume and open "
                                 "it again (recovery)"));
    // A null side is plaintext (linear): its bytes pass through unchanged.
    auto side = [&](const crypto::SectorCipher* c, std::uint64_t k, std::uint64_t n) {
      if (c == nullptr) return ok();
      const std::uint64_t per = ss_ / c->sector_size();
      const crypto::SectorRun sub{
          run.data.subspan(k * ss_, n * ss_), {}, SectorIndex{(first + k) * per}};
      return enc ? c->encrypt(sub) : c->decrypt(sub);
    };
    // Pieces of one side each: up to the boundary or a pending range's edge.
    for (std::uint64_t k = 0; k < count;) {
      const std::uint64_t at = (first + k) * ss_;
      const bool before = boundary_->before(at);
      const std::uint64_t change = boundary_->next_change(at);
      const std::uint64_t n =
          change == UINT64_MAX ? count - k : std::min(count - k, (change - at + ss_ - 1) / ss_);
      CRYPTMAP_TRY_VOID(side(before ? before_.get() : after_.get(), k, n));
      k += n;
    }
    return ok();
  }

  std::unique_ptr<crypto::SectorCipher> before_, after_;  // null: that side is plaintext
  std::uint32_t ss_;
  std::shared_ptr<const SegmentBoundary> boundary_;
};

// The image mapping of a volume whose two sides lie at different places (make_boundary_store).
class BoundaryStore final : public BackingStore {
 public:
  BoundaryStore(std::vector<Segment> before, std::vector<Segment> after,
                std::unique_ptr<BackingStore> image,
                std::shared_ptr<const SegmentBoundary> boundary)
      : before_(std::move(before)),
        after_(std::move(after)),
        image_(std::move(image)),
        boundary_(std::move(boundary)),
        size_(before_.back().offset_bytes + before_.back().length_bytes) {}

  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return walk(off.value, out.size(), [&](std::uint64_t at, std::uint64_t pos, std::uint64_t n) {
      return image_->read_at(ByteOffset{at}, out.subspan(pos, n));
    });
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (image_->read_only()) return image_->write_at(off, in);  // kReadOnly, as the image says
    return walk(off.value, in.size(), [&](std::uint64_t at, std::uint64_t pos, std::uint64_t n) {
      return image_->write_at(ByteOffset{at}, in.subspan(pos, n));
    });
  }
  Result<void> sync() override { return image_->sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t len) override {
    return walk(off.value, len, [&](std::uint64_t at, std::uint64_t, std::uint64_t n) {
      return image_->discard(ByteOffset{at}, n);
    });
  }
  std::uint64_t size_bytes() const noexcept override { return size_; }
  bool read_only() const noexcept override { return image_->read_only(); }
  bool splits_large_requests() const noexcept override { return image_->splits_large_requests(); }
  // write_fua is the default (a write and then sync) here: the image's FUA is not used.
  StoreDurability durability() const noexcept override {
    StoreDurability d = image_->durability();
    d.fua = false;
    return d;
  }
  const std::string& name() const noexcept override { return image_->name(); }

 private:
  // Calls fn(image offset, offset in the request, length) for each piece of [off, off + len):
  // cut at the boundary (and a pending range's edges) and at the segments of each side. The
  // caller holds the range, so the boundary does not cross it meanwhile.
  template <typename Fn>
  Result<void> walk(std::uint64_t off, std::uint64_t len, Fn&& fn) const {
    CRYPTMAP_TRY_VOID(check_range("boundary store: range past the end", *image_, off, len, size_));
    std::uint64_t pos = 0;
    while (pos < len) {
      const std::uint64_t at = off + pos;
      const auto& segs = boundary_->before(at) ? before_ : after_;
      const Segment& s = segs[find_segment(segs, at)];
      const std::uint64_t in_seg = at - s.offset_bytes;
      std::uint64_t n = std::min(len - pos, s.length_bytes - in_seg);
      const std::uint64_t change = boundary_->next_change(at);
      if (change != UINT64_MAX) n = std::min(n, change - at);
      CRYPTMAP_TRY_VOID(fn(s.image_offset_bytes + in_seg, pos, n));
      pos += n;
    }
    return ok();
  }

  std::vector<Segment> before_, after_;
  std::unique_ptr<BackingStore> image_;
  std::shared_ptr<const SegmentBoundary> boundary_;
  std::uint64_t size_;
};

}  // namespace

Result<std::unique_ptr<crypto::SectorCipher>> make_boundary_cipher(
    std::unique_ptr<crypto::SectorCipher> before, std::unique_ptr<crypto::SectorCipher> after,
    std::uint32_t sector_size, std::shared_ptr<const SegmentBoundary> boundary) {
  if ((!before && !after) || !boundary || sector_size == 0 ||
      (before && sector_size % before->sector_size() != 0) ||
      (after && sector_size % after->sector_size() != 0))
    return make_error_fmt(Errc::kInvalid, "boundary cipher", sector_size,
                          "sector size %u is not a multiple of both ciphers'", sector_size);
  return std::unique_ptr<crypto::SectorCipher>(
      new BoundaryCipher(std::move(before), std::move(after), sector_size, std::move(boundary)));
}

Result<void> validate_segments(const VolumeLayout& layout, std::uint64_t image_bytes) {
  const auto& segs = layout.segments;
  if (segs.empty()) return make_error(Errc::kCorrupt, "segment map: no segments");
  const std::uint32_t ss = layout.sector_size;
  std::uint64_t next = 0;
  for (std::size_t i = 0; i < segs.size(); ++i) {
    const Segment& s = segs[i];
    if (s.offset_bytes != next) return segment_error(i, "gap or overlap with the previous one");
    if (s.length_bytes == 0 || s.length_bytes % ss != 0 || s.offset_bytes % ss != 0)
      return segment_error(i, "empty or not whole sectors");
    if (s.kind != SegmentKind::kZero &&
        (s.image_offset_bytes % ss != 0 || s.image_offset_bytes > image_bytes ||
         s.length_bytes > image_bytes - s.image_offset_bytes))
      return segment_error(i, "outside the image");
    const std::uint32_t seg_ss = s.cipher.sector_size ? s.cipher.sector_size : ss;
    if (s.kind == SegmentKind::kCrypt &&
        (seg_ss < 512 || seg_ss > ss || ss % seg_ss != 0 || (seg_ss & (seg_ss - 1)) != 0))
      return segment_error(i, "sector size does not divide the volume's");
    if (s.kind == SegmentKind::kCrypt && s.iv_offset % (seg_ss / 512) != 0)
      return segment_error(i, "IV offset not a multiple of the sector size");
    if (s.length_bytes > UINT64_MAX - next) return segment_error(i, "length overflows");
    next += s.length_bytes;
  }
  if (layout.size_bytes != 0 && layout.size_bytes != next)
    return make_error_fmt(
        Errc::kCorrupt, "segment map: size", next, "segments cover %llu bytes, the volume is %llu",
        static_cast<unsigned long long>(next), static_cast<unsigned long long>(layout.size_bytes));
  return ok();
}

Result<std::unique_ptr<BackingStore>> make_boundary_store(
    std::vector<Segment> before, std::vector<Segment> after, std::unique_ptr<BackingStore> image,
    std::shared_ptr<const SegmentBoundary> boundary) {
  if (!boundary || before.empty() || after.empty())
    return make_error(Errc::kInvalid, "boundary store: no boundary or no segments");
  VolumeLayout check;  // each side's image mapping, checked as linear segments
  check.sector_size = 512;
  for (const auto* side : {&before, &after}) {
    check.segments = *side;
    for (Segment& s : check.segments) {
      if (s.kind == SegmentKind::kZero)
        return make_error(Errc::kInvalid, "boundary store: a zero segment");
      s.kind = SegmentKind::kLinear;
    }
    CRYPTMAP_TRY_VOID(validate_segments(check, image->size_bytes()));
  }
  if (before.back().offset_bytes + before.back().length_bytes !=
      after.back().offset_bytes + after.back().length_bytes)
    return make_error(Errc::kCorrupt, "boundary store: the two sides differ in size");
  if (image->zones() != nullptr)
    return make_error(Errc::kUnsupported, "boundary store: zoned images are not supported");
  return std::unique_ptr<BackingStore>(new BoundaryStore(std::move(before), std::move(after),
                                                         std::move(image), std::move(boundary)));
}

Result<std::unique_ptr<BackingStore>> make_segmented_store(const VolumeLayout& layout,
                                                           std::unique_ptr<BackingStore> image) {
  CRYPTMAP_TRY_VOID(validate_segments(layout, image->size_bytes()));
  if (image->zones() != nullptr)
    return make_error(Errc::kUnsupported, "segment map: zoned images are not supported");
  return std::unique_ptr<BackingStore>(new SegmentedStore(layout.segments, std::move(image)));
}

Result<std::unique_ptr<crypto::SectorCipher>> make_segmented_cipher(
    const VolumeLayout& layout, std::span<const std::byte> key) {
  std::vector<std::unique_ptr<crypto::SectorCipher>> ciphers(layout.segments.size());
  for (std::size_t i = 0; i < layout.segments.size(); ++i) {
    const Segment& s = layout.segments[i];
    if (s.kind != SegmentKind::kCrypt) continue;
    crypto::SectorCipherConfig cc;
    cc.spec = layout.cipher;
    if (!s.cipher.encryption.empty()) {
      auto spec = crypto::CipherSpec::parse(s.cipher.encryption);
      if (!spec)
        return make_error_fmt(Errc::kUnsupported, "segment map: cipher", i, "segment %zu: '%s'", i,
                              s.cipher.encryption.c_str());
      cc.spec = *spec;
    }
    cc.sector_size = s.cipher.sector_size ? s.cipher.sector_size : layout.sector_size;
    cc.iv_large_sectors = layout.iv_large_sectors;
    cc.iv_offset = s.iv_offset;
    const SegmentCipher& own = s.cipher;
    if (own.key_bytes != 0 &&
        (own.key_offset > key.size() || own.key_bytes > key.size() - own.key_offset))
      return segment_error(i, "key slice outside the volume key");
    const auto seg_key = own.key_bytes == 0 ? key : key.subspan(own.key_offset, own.key_bytes);
    // A TCRYPT cascade (layout.cascade) keys every cipher of the chain, as open does.
    std::vector<crypto::SectorCipherConfig> chain{cc};
    if (own.encryption.empty())
      for (const auto& name : layout.cascade) {
        chain.push_back(cc);
        chain.back().spec.cipher = name;
      }
    CRYPTMAP_TRY(c, crypto::make_cascade_cipher(chain, seg_key));
    ciphers[i] = std::move(c);
  }
  return std::unique_ptr<crypto::SectorCipher>(
      new SegmentedCipher(layout.segments, std::move(ciphers), layout.sector_size));
}

}  // namespace cryptmap::volume

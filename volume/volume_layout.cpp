#include "volume/volume_layout.h"

namespace cryptmap::volume {

const char* volume_type_name(VolumeType t) noexcept {
  switch (t) {
    case VolumeType::kLuks1:
      return "LUKS1";
    case VolumeType::kLuks2:
      return "LUKS2";
    case VolumeType::kPlain:
      return "PLAIN";
    case VolumeType::kBitlk:
      return "BITLK";
    case VolumeType::kFvault2:
      return "FVAULT2";
    case VolumeType::kTcrypt:
      return "TCRYPT";
    case VolumeType::kLoopaes:
      return "LOOPAES";
  }
  return "?";
}

const char* segment_kind_name(SegmentKind k) noexcept {
  switch (k) {
    case SegmentKind::kCrypt:
      return "crypt";
    case SegmentKind::kZero:
      return "zero";
    case SegmentKind::kLinear:
      return "linear";
  }
  return "?";
}

ActiveOffsets active_offsets(const VolumeLayout& l) noexcept {
  ActiveOffsets out{l.data_offset_bytes / 512, l.iv_offset};
  if (l.segments.empty() || l.type == VolumeType::kTcrypt) return out;
  bool found = false;
  for (const Segment& s : l.segments) {
    if (s.kind == SegmentKind::kZero) continue;
    const std::uint64_t offset = s.image_offset_bytes / 512;
    if (found && offset >= out.offset_sectors) continue;  // the first of equal ones, as cryptsetup
    out = {offset, s.kind == SegmentKind::kCrypt ? s.iv_offset : 0};
    found = true;
  }
  return found ? out : ActiveOffsets{};
}

}  // namespace cryptmap::volume

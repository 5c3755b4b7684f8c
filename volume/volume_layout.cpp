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

}  // namespace cryptmap::volume

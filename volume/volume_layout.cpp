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
  }
  return "?";
}

}  // namespace cryptmap::volume

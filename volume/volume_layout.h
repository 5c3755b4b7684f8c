// VolumeLayout — everything needed to map a volume's plaintext onto its image, as a dm-crypt
// table line would say it. Produced by the format code (LUKS1/LUKS2/plain), consumed by the
// engine; immutable after open (dm-crypt: "read only after initialization"). Value type.
#pragma once

#include <cstdint>
#include <string>

#include "crypto/cipher_spec.h"

namespace cryptmap::volume {

enum class VolumeType : std::uint8_t { kLuks1, kLuks2, kPlain };
const char* volume_type_name(VolumeType t) noexcept;  // "LUKS1", "LUKS2", "PLAIN"

struct VolumeLayout {
  VolumeType type = VolumeType::kLuks2;
  crypto::CipherSpec cipher;
  std::uint32_t key_bytes = 0;
  std::uint32_t sector_size = 512;  // encryption unit
  bool iv_large_sectors = false;
  std::uint64_t iv_offset = 0;          // dm <iv_offset>, 512-byte sectors
  std::uint64_t data_offset_bytes = 0;  // first ciphertext byte in the data image
  // Payload size in bytes; 0 means "dynamic": the image size minus data_offset_bytes, rounded
  // down to sector_size (LUKS2 "size": "dynamic", LUKS1, plain without --size).
  std::uint64_t size_bytes = 0;
  std::string uuid;
  std::string label;
  bool allow_discards = false;  // persistent flag / --allow-discards
};

}  // namespace cryptmap::volume

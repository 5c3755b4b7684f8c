// Shared by volume_integrity_test's sources: the LUKS2 --integrity layout their volumes use.
#pragma once

#include <cstdint>

#include "volume/volume_layout.h"

namespace cryptmap::test {

// LUKS2 with `enc` / `integ` (e.g. "aes-xts-random" / "hmac(sha256)"), `ss`-byte sectors, the
// data area at `data_offset` bytes; journal mode, or no journal.
inline volume::VolumeLayout integrity_layout(const char* enc, const char* integ, std::uint32_t ss,
                                             std::uint64_t data_offset, bool journal) {
  volume::VolumeLayout l;
  l.type = volume::VolumeType::kLuks2;
  l.auth_encryption = enc;
  l.integrity = integ;
  l.sector_size = ss;
  l.data_offset_bytes = data_offset;
  l.integrity_no_journal = !journal;
  return l;
}

}  // namespace cryptmap::test

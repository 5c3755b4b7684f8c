// Internal: the IV modes that are a pure function of the sector number (plain64, plain,
// plain64be, null; docs/formats.md §3.4), written straight into a 16-byte IV. The dedicated
// AES-XTS engines (AES-NI and OpenSSL) take only these; everything else goes through the
// IvGenerator table (iv_generator.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "base/bytes.h"
#include "crypto/internal/cipher_catalog.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto::internal {

enum class SimpleIv : std::uint8_t { kPlain, kPlain64, kPlain64Be, kNull };

// The SimpleIv for a dm-crypt IV mode name, nullopt for any other (generated) mode.
inline std::optional<SimpleIv> parse_simple_iv(std::string_view mode) noexcept {
  if (mode == "plain64") return SimpleIv::kPlain64;
  if (mode == "plain") return SimpleIv::kPlain;
  if (mode == "plain64be") return SimpleIv::kPlain64Be;
  if (mode == "null") return SimpleIv::kNull;
  return std::nullopt;
}

// The configurations the dedicated AES-XTS engines take: one AES-128/256-XTS key, no extra key
// material, a simple IV mode (which is returned); nullopt for anything else.
inline std::optional<SimpleIv> simple_aes_xts(const SectorCipherConfig& config,
                                              const KeyLayout& layout) noexcept {
  if (config.spec.cipher != "aes" || config.spec.chain_mode != "xts" || layout.tfm_count != 1 ||
      layout.extra_bytes != 0 || (layout.subkey_bytes != 32 && layout.subkey_bytes != 64))
    return std::nullopt;
  return parse_simple_iv(config.spec.iv_mode);
}

// Writes the 16-byte IV of `iv_sector`: plain truncates to 32 bits (it wraps above 2^32
// sectors, as the kernel's does), plain64 is little-endian, plain64be big-endian in the upper
// half, null all zeros.
inline void write_simple_iv(SimpleIv mode, std::uint64_t iv_sector, std::byte* iv) noexcept {
  std::memset(iv, 0, 16);
  switch (mode) {
    case SimpleIv::kPlain64:
      store_le64(iv, iv_sector);
      break;
    case SimpleIv::kPlain:
      store_le32(iv, static_cast<std::uint32_t>(iv_sector));
      break;
    case SimpleIv::kPlain64Be:
      store_be64(iv + 8, iv_sector);
      break;
    case SimpleIv::kNull:
      break;
  }
}

}  // namespace cryptmap::crypto::internal

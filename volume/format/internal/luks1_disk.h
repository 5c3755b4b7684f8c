// LUKS1 on-disk header (`struct luks_phdr`, 1024 bytes at byte 0): parse, check, serialize.
// Field names follow cryptsetup's lib/luks1/luks.h; layout in volume/FORMATS.md §1.
// All integers are big-endian on disk. Pure functions over bytes; thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"

namespace cryptmap::volume::luks1 {

inline constexpr std::size_t kPhdrSize = 1024;
inline constexpr std::uint32_t kNumKeys = 8;
inline constexpr std::uint32_t kStripes = 4000;
inline constexpr std::uint32_t kKeyEnabled = 0x00AC71F3;
inline constexpr std::uint32_t kKeyDisabled = 0x0000DEAD;
inline constexpr std::size_t kSaltSize = 32;
inline constexpr std::size_t kDigestSize = 20;
inline constexpr std::uint32_t kAlignKeyslotsBytes = 4096;
inline constexpr std::uint32_t kSlotIterationsMin = 1000;
inline constexpr std::uint32_t kMkdIterationsMin = 1000;
inline constexpr std::uint32_t kMaxKeyBytes = 1024;  // larger keys are refused as absurd

struct KeyBlock {
  std::uint32_t active = kKeyDisabled;
  std::uint32_t password_iterations = 0;
  std::array<std::byte, kSaltSize> password_salt{};
  std::uint32_t key_material_offset = 0;  // 512-byte sectors from the start of the header device
  std::uint32_t stripes = kStripes;
};

struct Phdr {
  std::uint16_t version = 1;
  std::string cipher_name;           // <= 31 chars
  std::string cipher_mode;           // <= 31 chars
  std::string hash_spec;             // <= 31 chars
  std::uint32_t payload_offset = 0;  // 512-byte sectors; 0 only with a detached header
  std::uint32_t key_bytes = 0;
  std::array<std::byte, kDigestSize> mk_digest{};
  std::array<std::byte, kSaltSize> mk_digest_salt{};
  std::uint32_t mk_digest_iterations = 0;
  std::string uuid;  // <= 39 chars
  std::array<KeyBlock, kNumKeys> key_block{};

  std::string cipher_spec() const;  // "aes-xts-plain64"
  // hashSpec in lower case, as the crypto backends look it up (cryptsetup's are case-blind, so
  // "SHA256" works there; hashSpec itself is kept verbatim for dumps and rewrites).
  std::string hash() const;
};

// ceil(key_bytes * stripes / 512): the keyslot area size in sectors (AF_split_sectors).
std::uint64_t af_split_sectors(std::uint64_t key_bytes, std::uint64_t stripes);
// End of the last keyslot area in 512-byte sectors (LUKS_device_sectors).
std::uint64_t device_sectors(const Phdr& h);

// True when `raw` starts with the LUKS magic.
bool has_luks_magic(std::span<const std::byte> raw);

// Parses and checks a phdr as cryptsetup's LUKS_read_phdr does (magic, version, hash with HMAC
// size >= 20, keyslot stripes/offsets/overlap checks, key size), then the device-size check
// against `device_bytes` (the header device: every keyslot area must fit).
// Errors: kInvalid (not LUKS), kUnsupported (version, hash), kCorrupt naming the field.
Result<Phdr> parse_phdr(std::span<const std::byte> raw, std::uint64_t device_bytes,
                        std::string_view device_name);

// Writes the 1024-byte on-disk form (padding zero).
void serialize_phdr(const Phdr& h, std::span<std::byte, kPhdrSize> out);

}  // namespace cryptmap::volume::luks1

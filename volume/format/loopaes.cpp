#include "volume/format/loopaes.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

#include "crypto/cipher_spec.h"
#include "crypto/hash.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint32_t kMaxKeys = 65;  // LOOPAES_KEYS_MAX
constexpr const char* kIncompatible = "Incompatible loop-AES keyfile detected";

bool is_separator(std::byte b) noexcept {
  return b == std::byte{'\n'} || b == std::byte{'\r'} || b == std::byte{0};
}

// cryptsetup's keyfile_is_gpg: "BEGIN PGP MESSAGE" within the first 100 bytes.
bool is_gpg(std::span<const std::byte> keyfile) noexcept {
  constexpr std::string_view kMark = "BEGIN PGP MESSAGE";
  const std::size_t n = std::min<std::size_t>(keyfile.size(), 100);
  const std::string_view head(reinterpret_cast<const char*>(keyfile.data()), n);
  return head.find(kMark) != std::string_view::npos;
}

std::uint8_t tweak_of(std::uint32_t key_count) noexcept {
  return key_count == 64 ? 0x55 : key_count == 65 ? 0xF4 : 0x00;
}

crypto::CipherSpec spec_of(const LoopaesOptions& opts, std::uint32_t key_count) {
  crypto::CipherSpec s;
  s.cipher = opts.cipher;
  s.chain_mode = "cbc";
  if (key_count == 1) {
    s.iv_mode = "plain64";
  } else {
    s.keycount = 64;
    s.iv_mode = "lmk";
  }
  return s;
}

}  // namespace

std::string loopaes_hash(const LoopaesOptions& opts) {
  if (!opts.hash.empty()) return opts.hash;
  switch (opts.key_bits) {
    case 128:
      return "sha256";
    case 192:
      return "sha384";
    case 256:
      return "sha512";
    default:
      return "";
  }
}

Result<void> loopaes_check_options(const LoopaesOptions& opts) {
  if (opts.key_bits != 128 && opts.key_bits != 192 && opts.key_bits != 256)
    return make_error_fmt(Errc::kInvalid, "loop-AES: --key-size", kNoObject,
                          "%u bits; loop-AES keys are 128, 192 or 256 bits", opts.key_bits);
  if (opts.cipher.empty() || opts.cipher.find_first_of("-:") != std::string::npos)
    return make_error_fmt(Errc::kInvalid, "loop-AES: --cipher", kNoObject,
                          "'%.40s' must be a block cipher alone (aes, twofish, serpent)",
                          opts.cipher.c_str());
  const std::string hash = loopaes_hash(opts);
  auto dsize = crypto::hash_digest_size(hash);
  if (!dsize)
    return make_error_fmt(Errc::kUnsupported, "loop-AES: --hash", kNoObject,
                          "'%.32s' is not a known hash", hash.c_str());
  if (*dsize < opts.key_bits / 8)
    return make_error_fmt(Errc::kUnsupported, "loop-AES: --hash", kNoObject,
                          "%.32s gives %zu bytes, less than a %u-bit key", hash.c_str(), *dsize,
                          opts.key_bits);
  for (std::uint32_t count : {1u, 65u}) {
    if (auto r = crypto::check_key_size(spec_of(opts, count), count * opts.key_bits / 8); !r)
      return make_error_fmt(Errc::kUnsupported, "loop-AES: --cipher", kNoObject,
                            "%.40s with %u-bit keys: %.40s", opts.cipher.c_str(), opts.key_bits,
                            r.error().what);
  }
  return ok();
}

Result<LoopaesKey> loopaes_parse_keyfile(std::span<const std::byte> keyfile,
                                         const LoopaesOptions& opts) {
  CRYPTMAP_TRY_VOID(loopaes_check_options(opts));
  if (keyfile.empty())
    return make_error_fmt(Errc::kInvalid, kIncompatible, kNoObject, "the key file is empty");
  if (is_gpg(keyfile))
    return make_error(Errc::kInvalid, "Detected not yet supported GPG encrypted keyfile");
  // Keys: runs of non-separator bytes; a key must be followed by a separator, and the
  // separators after it (blank lines, CR LF) are skipped.
  std::array<std::size_t, kMaxKeys> start{};
  std::array<std::size_t, kMaxKeys> length{};
  std::uint32_t count = 0;
  std::size_t pos = 0;
  while (pos < keyfile.size() && count < kMaxKeys) {
    start[count] = pos;
    while (pos < keyfile.size() && !is_separator(keyfile[pos])) ++pos;
    length[count] = pos - start[count];
    if (pos == keyfile.size())
      return make_error_fmt(Errc::kInvalid, kIncompatible, kNoObject,
                            "key %u is not terminated by a newline", count + 1);
    if (length[count] == 0)
      return make_error_fmt(Errc::kInvalid, kIncompatible, kNoObject,
                            "key %u is empty (the file starts with a line break)", count + 1);
    while (pos < keyfile.size() && is_separator(keyfile[pos])) ++pos;
    ++count;
  }
  if (pos != keyfile.size())
    return make_error_fmt(Errc::kInvalid, kIncompatible, kNoObject,
                          "more than %u keys; a key file holds 1, 64 or 65", kMaxKeys);
  for (std::uint32_t i = 1; i < count; ++i)
    if (length[i] != length[0])
      return make_error_fmt(Errc::kInvalid, kIncompatible, kNoObject,
                            "key %u has %zu characters, key 1 has %zu; all must be equal", i + 1,
                            length[i], length[0]);
  if (count != 1 && count != 64 && count != 65)
    return make_error_fmt(Errc::kInvalid, kIncompatible, kNoObject,
                          "%u keys; a key file holds 1, 64 or 65", count);

  const std::string hash = loopaes_hash(opts);
  CRYPTMAP_TRY(dsize, crypto::hash_digest_size(hash));
  const std::size_t kb = opts.key_bits / 8;
  CRYPTMAP_TRY(vk, SecretBytes::allocate(kb * count));
  CRYPTMAP_TRY(digest, SecretBytes::allocate(dsize));
  const std::byte tweak{tweak_of(count)};
  for (std::uint32_t i = 0; i < count; ++i) {
    CRYPTMAP_TRY_VOID(
        crypto::hash_digest(hash, {keyfile.subspan(start[i], length[i])}, digest.span()));
    std::byte* key = vk.data() + i * kb;
    std::memcpy(key, digest.data(), kb);
    key[0] ^= tweak;
  }
  return LoopaesKey{std::move(vk), count};
}

Result<VolumeLayout> loopaes_layout(const LoopaesOptions& opts, std::uint32_t key_count,
                                    std::uint64_t image_bytes) {
  if (key_count != 1 && key_count != 64 && key_count != 65)
    return make_error(Errc::kInvalid, "loop-AES: key count", key_count);
  if (opts.offset_sectors >= image_bytes / 512)
    return make_error_fmt(Errc::kNoSpace, "loop-AES: --offset", opts.offset_sectors,
                          "the image has %llu sectors",
                          static_cast<unsigned long long>(image_bytes / 512));
  VolumeLayout l;
  l.type = VolumeType::kLoopaes;
  l.cipher = spec_of(opts, key_count);
  l.key_bytes = key_count * opts.key_bits / 8;
  l.sector_size = 512;
  l.iv_offset = opts.skip_sectors.value_or(opts.offset_sectors);
  l.data_offset_bytes = opts.offset_sectors * 512;
  l.size_bytes = 0;  // to the end of the image
  return l;
}

}  // namespace cryptmap::volume

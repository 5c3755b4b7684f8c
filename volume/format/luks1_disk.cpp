#include "volume/format/internal/luks1_disk.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <numeric>

#include "base/bytes.h"
#include "crypto/hash.h"

namespace cryptmap::volume::luks1 {
namespace {

constexpr std::array<std::uint8_t, 6> kMagic = {'L', 'U', 'K', 'S', 0xba, 0xbe};

// Field offsets of struct luks_phdr (see volume/FORMATS.md §1.1).
constexpr std::size_t kOffVersion = 6, kOffCipherName = 8, kOffCipherMode = 40, kOffHashSpec = 72,
                      kOffPayloadOffset = 104, kOffKeyBytes = 108, kOffMkDigest = 112,
                      kOffMkDigestSalt = 132, kOffMkDigestIter = 164, kOffUuid = 168,
                      kOffKeyBlock = 208, kKeyBlockSize = 48;
constexpr std::size_t kNameLen = 32, kUuidLen = 40;

Error slot_invalid(std::uint32_t slot, const char* why) {
  return make_error_fmt(Errc::kCorrupt, "LUKS keyslot is invalid", slot, "%s", why);
}

}  // namespace

std::string Phdr::cipher_spec() const {
  if (cipher_mode.empty()) return cipher_name;
  return cipher_name + "-" + cipher_mode;
}

std::string Phdr::hash() const {
  std::string h = hash_spec;
  for (char& c : h) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return h;
}

std::uint64_t af_split_sectors(std::uint64_t key_bytes, std::uint64_t stripes) {
  return (key_bytes * stripes + 511) / 512;
}

std::uint64_t device_sectors(const Phdr& h) {
  std::uint64_t end = 0;
  for (const auto& kb : h.key_block) end = std::max<std::uint64_t>(end, kb.key_material_offset);
  // cryptsetup: the last area in offset order plus one AF area.
  return end + af_split_sectors(h.key_bytes, kStripes);
}

bool has_luks_magic(std::span<const std::byte> raw) {
  if (raw.size() < kMagic.size()) return false;
  for (std::size_t i = 0; i < kMagic.size(); ++i)
    if (std::to_integer<std::uint8_t>(raw[i]) != kMagic[i]) return false;
  return true;
}

Result<Phdr> parse_phdr(std::span<const std::byte> raw, std::uint64_t device_bytes,
                        std::string_view device_name) {
  const std::string dev(device_name);
  if (!has_luks_magic(raw))
    return fail(make_error_fmt(Errc::kInvalid, "not a valid LUKS device", kNoObject,
                               "Device %s is not a valid LUKS device.", dev.c_str()));
  if (raw.size() < kPhdrSize)
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS1 header truncated", raw.size(),
                               "%s is shorter than the 1024-byte LUKS1 header", dev.c_str()));
  const std::byte* p = raw.data();
  Phdr h;
  h.version = load_be16(p + kOffVersion);
  if (h.version != 1)
    return fail(make_error_fmt(Errc::kUnsupported, "unsupported LUKS version", h.version,
                               "Unsupported LUKS version %u on %s.", h.version, dev.c_str()));
  h.cipher_name = read_cstr_field(p + kOffCipherName, kNameLen);
  h.cipher_mode = read_cstr_field(p + kOffCipherMode, kNameLen);
  h.hash_spec = read_cstr_field(p + kOffHashSpec, kNameLen);
  h.payload_offset = load_be32(p + kOffPayloadOffset);
  h.key_bytes = load_be32(p + kOffKeyBytes);
  std::memcpy(h.mk_digest.data(), p + kOffMkDigest, kDigestSize);
  std::memcpy(h.mk_digest_salt.data(), p + kOffMkDigestSalt, kSaltSize);
  h.mk_digest_iterations = load_be32(p + kOffMkDigestIter);
  h.uuid = read_cstr_field(p + kOffUuid, kUuidLen);
  for (std::uint32_t i = 0; i < kNumKeys; ++i) {
    const std::byte* k = p + kOffKeyBlock + i * kKeyBlockSize;
    KeyBlock& kb = h.key_block[i];
    kb.active = load_be32(k);
    kb.password_iterations = load_be32(k + 4);
    std::memcpy(kb.password_salt.data(), k + 8, kSaltSize);
    kb.key_material_offset = load_be32(k + 40);
    kb.stripes = load_be32(k + 44);
  }

  // Hash: must exist and have an HMAC size of at least 20 bytes.
  auto dsize = crypto::hash_digest_size(h.hash());
  if (!dsize || *dsize < kDigestSize)
    return fail(make_error_fmt(Errc::kUnsupported, "LUKS1 hashSpec", kNoObject,
                               "Requested LUKS hash %s is not supported.", h.hash_spec.c_str()));

  if (h.key_bytes == 0 || h.key_bytes > kMaxKeyBytes)
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS1 keyBytes", h.key_bytes,
                               "volume key size %u bytes is not plausible", h.key_bytes));

  // LUKS_check_keyslots.
  const std::uint64_t secs = af_split_sectors(h.key_bytes, kStripes);
  std::array<std::uint32_t, kNumKeys> order{};
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
    return h.key_block[a].key_material_offset < h.key_block[b].key_material_offset;
  });
  for (std::uint32_t i = 0; i < kNumKeys; ++i) {
    const KeyBlock& kb = h.key_block[i];
    if (kb.stripes != kStripes) return fail(slot_invalid(i, "stripes is not 4000"));
    if (std::uint64_t{kb.key_material_offset} * 512 < kPhdrSize)
      return fail(slot_invalid(i, "keyMaterialOffset points into the header"));
    if (h.payload_offset == 0) continue;  // detached header: no data-offset bound
    if (h.payload_offset <= kb.key_material_offset)
      return fail(slot_invalid(i, "keyMaterialOffset beyond payloadOffset"));
    if (h.payload_offset < kb.key_material_offset + secs)
      return fail(slot_invalid(i, "key material overlaps the payload"));
  }
  for (std::uint32_t i = 1; i < kNumKeys; ++i) {
    const KeyBlock& prev = h.key_block[order[i - 1]];
    const KeyBlock& next = h.key_block[order[i]];
    if (next.key_material_offset < prev.key_material_offset + secs)
      return fail(slot_invalid(order[i - 1], "keyslot areas overlap"));
  }

  // LUKS_check_device_size: the header device must hold every keyslot area.
  const std::uint64_t need = device_sectors(h) * 512;
  if (need > device_bytes)
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS1 header device too small", device_bytes,
                               "%s: LUKS1 requires at least %llu bytes (truncated?)", dev.c_str(),
                               static_cast<unsigned long long>(need)));
  return h;
}

void serialize_phdr(const Phdr& h, std::span<std::byte, kPhdrSize> out) {
  std::byte* p = out.data();
  std::memset(p, 0, kPhdrSize);
  for (std::size_t i = 0; i < kMagic.size(); ++i) p[i] = std::byte{kMagic[i]};
  store_be16(p + kOffVersion, h.version);
  write_cstr_field(p + kOffCipherName, kNameLen, h.cipher_name);
  write_cstr_field(p + kOffCipherMode, kNameLen, h.cipher_mode);
  write_cstr_field(p + kOffHashSpec, kNameLen, h.hash_spec);
  store_be32(p + kOffPayloadOffset, h.payload_offset);
  store_be32(p + kOffKeyBytes, h.key_bytes);
  std::memcpy(p + kOffMkDigest, h.mk_digest.data(), kDigestSize);
  std::memcpy(p + kOffMkDigestSalt, h.mk_digest_salt.data(), kSaltSize);
  store_be32(p + kOffMkDigestIter, h.mk_digest_iterations);
  write_cstr_field(p + kOffUuid, kUuidLen, h.uuid);
  for (std::uint32_t i = 0; i < kNumKeys; ++i) {
    std::byte* k = p + kOffKeyBlock + i * kKeyBlockSize;
    const KeyBlock& kb = h.key_block[i];
    store_be32(k, kb.active);
    store_be32(k + 4, kb.password_iterations);
    std::memcpy(k + 8, kb.password_salt.data(), kSaltSize);
    store_be32(k + 40, kb.key_material_offset);
    store_be32(k + 44, kb.stripes);
  }
}

}  // namespace cryptmap::volume::luks1

// LUKS1 <-> LUKS2 conversion, restating cryptsetup 2.6.1 lib/luks2/luks2_luks1_convert.c
// (LUKS2_luks1_to_luks2, json_luks1_object, LUKS2_luks2_to_luks1, keyslot_LUKS1_compatible,
// move_keyslot_areas) and src/cryptsetup.c action_luksConvert.
#include "volume/format/luks_convert.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "crypto/cipher_spec.h"
#include "crypto/random.h"
#include "crypto/sector_cipher.h"
#include "volume/format/internal/base64.h"
#include "volume/format/internal/luks_admin_impl.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

using Json = nlohmann::ordered_json;

namespace {

constexpr std::uint64_t kLuks2HdrSize = 16384;  // LUKS2_HDR_16K_LEN
constexpr std::uint64_t kShift = 2 * kLuks2HdrSize - luks1::kAlignKeyslotsBytes;  // 28 KiB

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

Error refused(const char* what, const char* sentence) {
  return make_error_fmt(Errc::kInvalid, what, kNoObject, "%s", sentence);
}

// A refusal whose sentence has a number or name in it (printf-checked).
#define CRYPTMAP_REFUSED_FMT(...) make_error_fmt(Errc::kInvalid, "convert", kNoObject, __VA_ARGS__)

// move_keyslot_areas: [from, from + len) to `to`, through one buffer (the ranges overlap).
Result<void> move_area(BackingStore& s, std::uint64_t from, std::uint64_t to, std::uint64_t len) {
  std::vector<std::byte> buf(len);
  CRYPTMAP_TRY_VOID(s.read_at(ByteOffset{from}, buf));
  CRYPTMAP_TRY_VOID(s.write_at(ByteOffset{to}, buf));
  return s.sync();
}

// LUKS2_check_cipher: the data cipher must work as a LUKS2 segment cipher with this key size.
bool usable_for_luks2(const std::string& spec_text, std::size_t key_bytes) {
  auto spec = crypto::CipherSpec::parse(spec_text);
  if (!spec) return false;
  std::vector<std::byte> key(key_bytes);
  if (!crypto::random_bytes(key)) return false;
  crypto::SectorCipherConfig cfg;
  cfg.spec = *spec;
  return static_cast<bool>(crypto::make_sector_cipher(cfg, key));
}

// json_luks1_object: the LUKS2 metadata for a LUKS1 header, keyslot offsets already shifted.
Result<std::string> luks2_json_for(const luks1::Phdr& p, std::uint64_t keyslots_size) {
  try {
    const std::string cipher = p.cipher_spec();
    Json keyslots = Json::object();
    Json digest_slots = Json::array();
    for (std::uint32_t i = 0; i < luks1::kNumKeys; ++i) {
      const luks1::KeyBlock& kb = p.key_block[i];
      if (kb.active != luks1::kKeyEnabled) continue;
      Json k = Json::object();
      k["type"] = "luks2";
      k["key_size"] = p.key_bytes;
      k["kdf"] = Json::object({{"type", "pbkdf2"},
                               {"hash", p.hash_spec},
                               {"iterations", kb.password_iterations},
                               {"salt", format::base64_encode(kb.password_salt)}});
      k["af"] = Json::object({{"type", "luks1"}, {"hash", p.hash_spec}, {"stripes", kb.stripes}});
      const std::uint64_t area =
          round_up(luks1::af_split_sectors(p.key_bytes, kb.stripes) * 512, 4096);
      k["area"] = Json::object(
          {{"type", "raw"},
           {"encryption", cipher},
           {"key_size", p.key_bytes},
           {"offset", std::to_string(std::uint64_t{kb.key_material_offset} * 512 + kShift)},
           {"size", std::to_string(area)}});
      keyslots[std::to_string(i)] = std::move(k);
      digest_slots.push_back(std::to_string(i));
    }
    Json seg = Json::object({{"type", "crypt"},
                             {"offset", std::to_string(std::uint64_t{p.payload_offset} * 512)},
                             {"iv_tweak", "0"},
                             {"size", "dynamic"},
                             {"encryption", cipher},
                             {"sector_size", 512}});
    Json digest = Json::object({{"type", "pbkdf2"},
                                {"keyslots", digest_slots},
                                {"segments", Json::array({"0"})},
                                {"hash", p.hash_spec},
                                {"salt", format::base64_encode(p.mk_digest_salt)},
                                {"digest", format::base64_encode(p.mk_digest)},
                                {"iterations", p.mk_digest_iterations}});
    Json root = Json::object();
    root["keyslots"] = std::move(keyslots);
    root["tokens"] = Json::object();
    root["segments"] = Json::object({{"0", seg}});
    root["digests"] = Json::object({{"0", digest}});
    root["config"] = Json::object({{"json_size", std::to_string(kLuks2HdrSize - luks2::kHdrBinLen)},
                                   {"keyslots_size", std::to_string(keyslots_size)}});
    return root.dump(-1, ' ', false, Json::error_handler_t::strict);
  } catch (const std::exception& e) {
    return fail(make_error_fmt(Errc::kInvalid, "convert", kNoObject,
                               "Cannot convert to LUKS2 format - invalid metadata (%s).",
                               e.what()));
  }
}

Result<void> to_luks2(BackingStore& s, const format::Luks1Header& h1) {
  const luks1::Phdr& p = h1.phdr();
  std::uint64_t max_size = std::uint64_t{p.payload_offset} * 512;
  if (max_size == 0) max_size = s.size_bytes();  // detached header: the header device
  const std::uint64_t luks1_size = round_up(luks1::device_sectors(p) * 512, 4096);
  if (!usable_for_luks2(p.cipher_spec(), p.key_bytes))
    return fail(CRYPTMAP_REFUSED_FMT("Unable to use cipher specification %s-%s for LUKS2.",
                                     p.cipher_name.c_str(), p.cipher_mode.c_str()));
  if (luks1_size + 8 <= s.size_bytes()) {  // luksmeta_header_present
    std::array<std::byte, 8> magic{};
    CRYPTMAP_TRY_VOID(s.read_at(ByteOffset{luks1_size}, magic));
    if (std::equal(magic.begin(), magic.end(), reinterpret_cast<const std::byte*>("LUKSMETA")))
      return fail(
          refused("convert", "Unable to convert header with LUKSMETA additional metadata."));
  }
  if (max_size < luks1_size + kShift)
    return fail(refused("convert", "Unable to move keyslot area. Not enough space."));
  const std::uint64_t keyslots_size = max_size - 2 * kLuks2HdrSize;
  CRYPTMAP_TRY(text, luks2_json_for(p, keyslots_size));
  if (!luks2::parse_luks2_json_text(text, kLuks2HdrSize - luks2::kHdrBinLen))
    return fail(refused("convert", "Cannot convert to LUKS2 format - invalid metadata."));
  luks2::BinHeader bin;
  bin.hdr_size = kLuks2HdrSize;
  bin.seqid = 1;  // written as 2, as cryptsetup
  bin.uuid = p.uuid;
  bin.checksum_alg = "sha256";
  std::array<std::byte, 64> salt1{}, salt2{};
  CRYPTMAP_TRY_VOID(crypto::random_bytes(salt1));
  CRYPTMAP_TRY_VOID(crypto::random_bytes(salt2));
  CRYPTMAP_TRY_VOID(move_area(s, luks1::kAlignKeyslotsBytes, 2 * kLuks2HdrSize,
                              luks1_size - luks1::kAlignKeyslotsBytes));
  CRYPTMAP_TRY_VOID(luks2::write_luks2_header(s, bin, salt1, salt2, text));
  return ok();
}

// keyslot_LUKS1_compatible.
bool luks1_compatible(const luks2::Keyslot& k, const luks2::Segment& seg, std::uint32_t key_size,
                      const std::string& hash) {
  if (k.type != "luks2" || k.kdf.type != "pbkdf2" || k.kdf.hash != hash) return false;
  if (k.af_stripes != luks1::kStripes || k.af_hash != hash) return false;
  if (k.area_encryption != seg.encryption || k.area_key_size != key_size) return false;
  return k.area_size == round_up(luks1::af_split_sectors(key_size, luks1::kStripes) * 512, 4096);
}

Result<void> to_luks1(BackingStore& s, const format::Luks2Header& h2) {
  const luks2::Metadata& m = h2.meta();
  const luks2::Digest* d = nullptr;
  for (const luks2::Digest& x : m.digests)
    if (x.id == 0) d = &x;
  const luks2::Segment* seg = m.segment(0);
  if (!d || !seg)
    return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));
  if (seg->sector_size != 512)
    return fail(refused("convert",
                        "Cannot convert to LUKS1 format - default segment encryption sector size "
                        "is not 512 bytes."));
  if (d->type != "pbkdf2" || m.digests.size() != 1)
    return fail(refused(
        "convert", "Cannot convert to LUKS1 format - key slot digests are not LUKS1 compatible."));
  const std::string& hash = d->hash;
  const std::string& spec = seg->encryption;
  const auto dash = spec.find('-');
  const std::string cipher = spec.substr(0, dash);
  const std::string mode = dash == std::string::npos ? "" : spec.substr(dash + 1);
  if (cipher.rfind("paes", 0) == 0)
    return fail(CRYPTMAP_REFUSED_FMT(
        "Cannot convert to LUKS1 format - device uses wrapped key cipher %s.", cipher.c_str()));
  if (m.segments.size() != 1)
    return fail(refused("convert", "Cannot convert to LUKS1 format - device uses more segments."));
  if (!m.tokens.empty())
    return fail(
        CRYPTMAP_REFUSED_FMT("Cannot convert to LUKS1 format - LUKS2 header contains %u token(s).",
                             static_cast<unsigned>(m.tokens.size())));
  // LUKS2_get_volume_key_size: the key size of a keyslot the segment's digest links.
  std::uint32_t key_size = 0;
  for (const luks2::Keyslot& k : m.keyslots)
    if (!key_size && std::find(d->keyslots.begin(), d->keyslots.end(), k.id) != d->keyslots.end())
      key_size = k.key_size;
  if (!key_size)
    return fail(
        refused("convert", "Cannot convert to LUKS1 format - no keyslot holds the volume key."));
  for (int i = 0; i < luks2::kMaxKeyslots; ++i) {
    const luks2::Keyslot* k = m.keyslot(i);
    if (!k) continue;
    if (std::find(d->keyslots.begin(), d->keyslots.end(), i) == d->keyslots.end())
      return fail(
          CRYPTMAP_REFUSED_FMT("Cannot convert to LUKS1 format - keyslot %u is in invalid state.",
                               static_cast<unsigned>(i)));
    if (i >= static_cast<int>(luks1::kNumKeys))
      return fail(CRYPTMAP_REFUSED_FMT(
          "Cannot convert to LUKS1 format - slot %u (over maximum slots) is still active.",
          static_cast<unsigned>(i)));
    if (!luks1_compatible(*k, *seg, key_size, hash))
      return fail(CRYPTMAP_REFUSED_FMT(
          "Cannot convert to LUKS1 format - keyslot %u is not LUKS1 compatible.",
          static_cast<unsigned>(i)));
  }
  if (dash == std::string::npos || cipher.size() > 31 || mode.size() > 31 || hash.size() > 31)
    return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));

  luks1::Phdr p;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> placeholders;
  const std::uint64_t area_len = round_up(std::uint64_t{key_size} * luks1::kStripes, 4096);
  for (std::uint32_t i = 0; i < luks1::kNumKeys; ++i) {
    luks1::KeyBlock& kb = p.key_block[i];
    kb.active = luks1::kKeyDisabled;
    kb.stripes = luks1::kStripes;
    const luks2::Keyslot* k = m.keyslot(static_cast<int>(i));
    std::uint64_t offset = 0;
    if (k) {
      offset = k->area_offset;
    } else {  // a placeholder, so that inactive LUKS1 slots do not share one area
      auto gap = admin::luks2_find_gap(m, area_len, placeholders);
      if (!gap)
        return fail(refused("convert",
                            "Cannot convert to LUKS1 format - no room for the "
                            "inactive keyslots' areas."));
      offset = *gap;
      placeholders.emplace_back(offset, area_len);
    }
    if (offset / 512 > 0xffffffffu || offset < 2 * kLuks2HdrSize)
      return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));
    kb.key_material_offset = static_cast<std::uint32_t>(offset / 512 - kShift / 512);
    if (!k) continue;
    kb.active = luks1::kKeyEnabled;
    kb.password_iterations = k->kdf.iterations;
    if (k->kdf.salt.size() != luks1::kSaltSize)
      return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));
    std::copy(k->kdf.salt.begin(), k->kdf.salt.end(), kb.password_salt.begin());
  }
  p.cipher_name = cipher;
  p.cipher_mode = mode;
  p.hash_spec = hash;
  p.key_bytes = key_size;
  if (d->iterations < 0 || d->iterations > 0xffffffffll)
    return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));
  p.mk_digest_iterations = static_cast<std::uint32_t>(d->iterations);
  const auto digest = format::base64_decode(d->digest_b64);
  const auto salt = format::base64_decode(d->salt_b64);
  if (!digest || digest->size() < luks1::kDigestSize || !salt || salt->size() != luks1::kSaltSize)
    return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));
  std::copy_n(digest->begin(), luks1::kDigestSize, p.mk_digest.begin());
  std::copy(salt->begin(), salt->end(), p.mk_digest_salt.begin());
  if (seg->offset / 512 > 0xffffffffu)
    return fail(refused("convert", "Cannot convert to LUKS1 format - invalid metadata."));
  p.payload_offset = static_cast<std::uint32_t>(seg->offset / 512);
  p.uuid = h2.disk().bin.uuid;

  CRYPTMAP_TRY_VOID(
      move_area(s, 2 * kLuks2HdrSize, luks1::kAlignKeyslotsBytes, m.config.keyslots_size));
  std::array<std::byte, luks1::kAlignKeyslotsBytes> first{};  // the LUKS2 binary header goes
  luks1::serialize_phdr(p, std::span(first).first<luks1::kPhdrSize>());
  CRYPTMAP_TRY_VOID(s.write_at(ByteOffset{0}, first));
  return s.sync();
}

}  // namespace

Result<void> luks_convert(BackingStore& header, VolumeType to) {
  if (to != VolumeType::kLuks1 && to != VolumeType::kLuks2)
    return fail(refused("convert", "Invalid LUKS type, only luks1 and luks2 are supported."));
  CRYPTMAP_TRY(hs, admin::load_any(header));
  if (hs.first) {
    if (to == VolumeType::kLuks1) return fail(refused("convert", "Device is already LUKS1 type."));
    return to_luks2(header, *hs.first);
  }
  if (to == VolumeType::kLuks2) return fail(refused("convert", "Device is already LUKS2 type."));
  return to_luks1(header, *hs.second);
}

}  // namespace cryptmap::volume

// LUKS2 offline reencryption, restating cryptsetup 2.6.1 lib/luks2/luks2_reencrypt.c
// (reencrypt_init, reencrypt_make_hot/post_segments_forward and _backward,
// reencrypt_assign_segments and _simple,
// reencrypt_step, reencrypt_recover_segment, reencrypt_teardown_ok), luks2_keyslot_reenc.c
// (the reencrypt keyslot) and luks2_reencrypt_digest.c (the reencryption digest). The rules as
// cryptmap relies on them: docs/reencrypt.md.
#include "volume/format/luks2_reencrypt.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "crypto/cipher_spec.h"
#include "crypto/hash.h"
#include "crypto/kdf.h"
#include "crypto/random.h"
#include "crypto/sector_cipher.h"
#include "volume/format/internal/base64.h"
#include "volume/format/internal/luks2_edit.h"
#include "volume/format/internal/luks_impl.h"
#include "volume/format/luks.h"
#include "volume/segment/segment_map.h"
#include "volume/store/backing_store.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {

using Json = nlohmann::ordered_json;
using format::guarded;
using format::Luks2Header;
using format::Luks2State;

namespace {

constexpr const char* kRequirement = "online-reencrypt-v2";
constexpr std::uint8_t kReencryptVersion = 2;  // LUKS2_REENCRYPT_REQ_VERSION
// cryptsetup 2.6's decryption with a data shift (LUKS2_DECRYPT_DATASHIFT_REQ_VERSION).
constexpr const char* kRequirementV3 = "online-reencrypt-v3";
constexpr std::uint8_t kDecryptShiftVersion = 3;
constexpr std::uint64_t kMaxHotzone = 64ull << 20;  // cryptmap's memory cap
constexpr std::uint64_t kNoneHotzone = 0x1400000;   // 20 MiB, cryptsetup's default
constexpr std::uint32_t kChecksumMinBlock = 4096;   // file block size

Error unsupported(const char* what) { return make_error(Errc::kUnsupported, what); }

// What every init of a run checks of the header it starts from, in cryptsetup's words: no
// unknown requirement, not already in reencryption, one crypt segment without integrity, and
// that segment's digest.
struct InitSource {
  const luks2::Segment* seg;
  const luks2::Digest* digest;
};
Result<InitSource> init_source(const luks2::Metadata& m) {
  std::string unknown;
  const auto req = luks2::requirement_state(m, &unknown);
  if (req == luks2::RequirementState::kUnknown)
    return fail(make_error_fmt(Errc::kUnsupported, "Unmet LUKS2 requirements detected.", kNoObject,
                               "unknown mandatory requirement '%s'", unknown.c_str()));
  if (req == luks2::RequirementState::kReencryption ||
      std::any_of(m.keyslots.begin(), m.keyslots.end(),
                  [](const auto& k) { return k.type == "reencrypt"; }))
    return fail(make_error(Errc::kBusy, "LUKS2 reencryption already initialized in metadata."));
  const luks2::Segment* seg = m.segment(0);
  if (m.segments.size() != 1 || !seg || seg->type != "crypt")
    return fail(unsupported("cryptmap reencrypt: the header must have one crypt segment"));
  if (seg->has_integrity)
    return fail(unsupported(
        "Reencryption of a volume with integrity protection (--integrity) is not supported."));
  const luks2::Digest* dold = m.digest_for_segment(0);
  if (!dold) return fail(make_error(Errc::kCorrupt, "LUKS2 segment 0 has no digest", 0));
  return InitSource{seg, dold};
}

// --- JSON helpers ------------------------------------------------------------------------------

std::string u64s(std::uint64_t v) { return std::to_string(v); }

std::uint64_t json_u64(const Json& j) {
  if (!j.is_string()) return 0;
  const auto& s = j.get_ref<const std::string&>();
  return std::strtoull(s.c_str(), nullptr, 10);
}

bool has_flag(const Json& seg, std::string_view flag) {
  auto it = seg.find("flags");
  if (it == seg.end() || !it->is_array()) return false;
  for (const auto& f : *it)
    if (f.is_string() && f.get_ref<const std::string&>() == flag) return true;
  return false;
}

bool is_backup(const Json& seg) {
  auto it = seg.find("flags");
  if (it == seg.end() || !it->is_array()) return false;
  for (const auto& f : *it)
    if (f.is_string() && f.get_ref<const std::string&>().rfind("backup-", 0) == 0) return true;
  return false;
}

// json_segment_create_crypt: members in cryptsetup's order.
Json crypt_segment(std::uint64_t offset, std::optional<std::uint64_t> size, std::uint64_t iv_tweak,
                   const std::string& enc, std::uint32_t sector_size, bool in_reencryption) {
  Json s = Json::object();
  s["type"] = "crypt";
  s["offset"] = u64s(offset);
  s["size"] = size ? u64s(*size) : std::string("dynamic");
  s["iv_tweak"] = u64s(iv_tweak);
  s["encryption"] = enc;
  s["sector_size"] = sector_size;
  if (in_reencryption) s["flags"] = Json::array({"in-reencryption"});
  return s;
}

// json_segment_create_linear: plaintext, members in cryptsetup's order.
Json linear_segment(std::uint64_t offset, std::optional<std::uint64_t> size, bool in_reencryption) {
  Json s = Json::object();
  s["type"] = "linear";
  s["offset"] = u64s(offset);
  s["size"] = size ? u64s(*size) : std::string("dynamic");
  if (in_reencryption) s["flags"] = Json::array({"in-reencryption"});
  return s;
}

int first_free_id(const Json& section) {
  for (int i = 0;; ++i)
    if (!section.contains(std::to_string(i))) return i;
}

// The reencrypt keyslot (its resilience `area`, mode and direction) in the first free id, and
// the online-reencrypt-v2 requirement: what every init (reencrypt_init, the data shift's) adds.
void add_reencrypt_keyslot(Json& root, Json area, const std::string& mode, const char* direction,
                           const char* requirement = kRequirement) {
  Json ks = Json::object();
  ks["area"] = std::move(area);
  ks["type"] = "reencrypt";
  ks["key_size"] = 1;
  ks["mode"] = mode;
  ks["direction"] = direction;
  ks["priority"] = 0;
  root["keyslots"][std::to_string(first_free_id(root["keyslots"]))] = ks;
  Json& config = root["config"];
  if (!config.contains("requirements")) config["requirements"] = Json::object();
  if (!config["requirements"].contains("mandatory"))
    config["requirements"]["mandatory"] = Json::array();
  config["requirements"]["mandatory"].push_back(requirement);
}

const Json* segment_by_flag(const Json& root, std::string_view flag, int* id = nullptr) {
  for (const auto& [k, v] : root["segments"].items())
    if (has_flag(v, flag)) {
      if (id) *id = std::stoi(k);
      return &v;
    }
  return nullptr;
}

int digest_of_segment(const Json& root, int seg) {
  const std::string s = std::to_string(seg);
  for (const auto& [k, d] : root["digests"].items())
    for (const auto& e : d["segments"])
      if (e.is_string() && e.get_ref<const std::string&>() == s) return std::stoi(k);
  return -1;
}

int reencrypt_keyslot(const Json& root) {
  for (const auto& [k, v] : root["keyslots"].items())
    if (v.value("type", "") == "reencrypt") return std::stoi(k);
  return -1;
}

// LUKS2_digest_segment_assign(..., assign = 1): appended unless present.
void assign(Json& root, int digest, int seg) {
  if (digest < 0) return;
  Json& arr = root["digests"][std::to_string(digest)]["segments"];
  const std::string s = std::to_string(seg);
  for (const auto& e : arr)
    if (e == s) return;
  arr.push_back(s);
}

void unassign_all_segments(Json& root) {
  for (auto& [k, d] : root["digests"].items()) {
    (void)k;
    d["segments"] = Json::array();
  }
}

// --- the reencryption digest (luks2_reencrypt_digest.c) ---------------------------------------

void put_be(std::vector<std::byte>& out, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<std::byte>(v >> (8 * i)));
}
bool put_str(std::vector<std::byte>& out, const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return false;
  const auto& s = it->get_ref<const std::string&>();
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) out.push_back(static_cast<std::byte>(c));
  return true;
}
bool put_u64s(std::vector<std::byte>& out, const Json& obj, const char* key, bool allow_dynamic) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return false;
  if (allow_dynamic && it->get_ref<const std::string&>() == "dynamic")
    return put_str(out, obj, key);
  put_be(out, json_u64(*it), 8);
  return true;
}
bool put_u32(std::vector<std::byte>& out, const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer()) return false;
  put_be(out, it->get<std::uint32_t>(), 4);
  return true;
}
bool put_segment(std::vector<std::byte>& out, const Json& seg) {
  const std::string type = seg.value("type", "");
  if (type != "crypt" && type != "linear") return false;
  if (!put_str(out, seg, "type") || !put_u64s(out, seg, "offset", false) ||
      !put_u64s(out, seg, "size", true))
    return false;
  if (type == "linear") return true;
  return put_u64s(out, seg, "iv_tweak", false) && put_str(out, seg, "encryption") &&
         put_u32(out, seg, "sector_size");
}

// The version the header's requirement names (LUKS2_config_get_reencrypt_version): 3 for
// online-reencrypt-v3, else 2.
std::uint8_t reencrypt_version(const Json& root) {
  auto config = root.find("config");
  if (config == root.end() || !config->contains("requirements")) return kReencryptVersion;
  auto mand = (*config)["requirements"].find("mandatory");
  if (mand == (*config)["requirements"].end() || !mand->is_array()) return kReencryptVersion;
  for (const auto& r : *mand)
    if (r == kRequirementV3) return kDecryptShiftVersion;
  return kReencryptVersion;
}

// 'v', '0' + version, the old key (empty for encrypt), the new key (empty for decrypt, or when
// it has the old key's digest), keyslot fields, backup segments.
Result<SecretBytes> digest_data(const Json& root, std::span<const std::byte> vk_old,
                                std::span<const std::byte> vk_new) {
  std::vector<std::byte> meta;
  const int ks = reencrypt_keyslot(root);
  if (ks < 0) return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt keyslot missing"));
  const Json& k = root["keyslots"][std::to_string(ks)];
  const Json& area = k["area"];
  const std::string type = area.value("type", "");
  bool okay = put_str(meta, k, "mode") && put_str(meta, k, "direction") &&
              put_str(meta, area, "type") && put_u64s(meta, area, "offset", false) &&
              put_u64s(meta, area, "size", false);
  if (okay && (type == "checksum" || type == "datashift-checksum"))
    okay = put_str(meta, area, "hash") && put_u32(meta, area, "sector_size");
  if (okay && type.rfind("datashift", 0) == 0) okay = put_u64s(meta, area, "shift_size", false);
  const Json* prev = segment_by_flag(root, "backup-previous");
  const Json* fin = segment_by_flag(root, "backup-final");
  const Json* moved = segment_by_flag(root, "backup-moved-segment");
  okay = okay && prev && fin && put_segment(meta, *prev) && put_segment(meta, *fin) &&
         (!moved || put_segment(meta, *moved));
  if (!okay) return fail(make_error(Errc::kCorrupt, "Reencryption metadata is invalid."));
  const std::size_t len = 2 + vk_old.size() + vk_new.size() + meta.size();
  CRYPTMAP_TRY(data, SecretBytes::allocate(len));
  std::byte* p = data.data();
  *p++ = std::byte{0x76};
  *p++ = static_cast<std::byte>(0x30 + reencrypt_version(root));
  if (!vk_old.empty()) std::memcpy(p, vk_old.data(), vk_old.size());
  p += vk_old.size();
  if (!vk_new.empty()) std::memcpy(p, vk_new.data(), vk_new.size());
  p += vk_new.size();
  std::memcpy(p, meta.data(), meta.size());
  return data;
}

// A new pbkdf2 digest object over `secret` (PBKDF2_digest_store), members in cryptsetup's order.
Result<Json> make_digest(std::span<const std::byte> secret, const PbkdfOptions& pbkdf,
                         const Json& keyslots) {
  const std::string hash = "sha256";
  CRYPTMAP_TRY(hs, crypto::hash_digest_size(hash));
  std::vector<std::byte> salt(32), digest(hs);
  CRYPTMAP_TRY_VOID(crypto::random_bytes(salt));
  PbkdfOptions o = pbkdf;
  o.hash = hash;
  CRYPTMAP_TRY(iters, format::digest_iterations(o, secret.size()));
  CRYPTMAP_TRY_VOID(crypto::pbkdf2(hash, secret, salt, iters, digest));
  return guarded([&]() -> Result<Json> {
    Json d = Json::object();
    d["type"] = "pbkdf2";
    d["keyslots"] = keyslots;
    d["segments"] = Json::array();
    d["hash"] = hash;
    d["iterations"] = iters;
    d["salt"] = format::base64_encode(salt);
    d["digest"] = format::base64_encode(digest);
    return d;
  });
}

// --- reading a header in reencryption ---------------------------------------------------------

struct SegmentInfo {
  std::uint64_t offset = 0;
  std::optional<std::uint64_t> size;
  std::uint64_t iv_tweak = 0;
  std::string encryption;
  std::uint32_t sector_size = 512;
  bool linear = false;  // plaintext (decrypt's new segment, encrypt's old one)
};

SegmentInfo segment_info(const Json& s) {
  auto member = [&](const char* key) -> Json {
    auto it = s.find(key);
    return it == s.end() ? Json() : *it;
  };
  SegmentInfo i;
  i.offset = json_u64(member("offset"));
  if (member("size") != "dynamic") i.size = json_u64(member("size"));
  i.iv_tweak = json_u64(member("iv_tweak"));
  i.encryption = s.value("encryption", "");
  i.sector_size = s.value("sector_size", 512u);
  i.linear = s.value("type", "") == "linear";
  return i;
}

// Everything a run needs from the header (reencrypt_context_init).
struct Context {
  int reenc_keyslot = -1;
  std::string mode, direction, resilience, hash;
  std::uint32_t checksum_block = 0;
  std::uint64_t area_offset = 0, area_size = 0;
  int digest_old = -1, digest_new = -1;
  SegmentInfo old_seg, new_seg;
  // Encryption with a data shift (cryptsetup's --encrypt --reduce-device-size, resilience
  // datashift, direction backward): the shift, and where the data's first `shift` bytes were
  // moved at init (backup-moved-segment). The old (plain) data is read from old_seg.offset.
  std::uint64_t shift = 0;
  std::optional<SegmentInfo> moved;
  bool datashift() const { return shift != 0; }
  // Decryption with a data shift (cryptsetup 2.6's --decrypt --header NEW-FILE of an image whose
  // header was inside it, docs/reencrypt.md §11): forward hotzones [M + k*shift, ...) read at
  // shift + off and written plain at off, then the moved first M bytes at [0, M) in place
  // (resilience checksum or journal: the area type after "datashift-"). moved_done: all of it.
  bool decrypt_shift() const { return datashift() && mode == "decrypt"; }
  bool moved_done = false;
  std::uint64_t data_offset = 0;
  std::uint64_t device_size = 0;  // bytes of data (from data_offset)
  bool fixed_size = false;
  // Progress: the hotzone in the header when crashed, else the next offset.
  // Forward: [0, offset) is converted; backward: [offset, device_size) is.
  bool crashed = false;
  std::uint64_t offset = 0, hot_length = 0;
  bool forward() const { return direction == "forward"; }
  std::uint64_t done() const {
    if (decrypt_shift()) {
      const std::uint64_t m = moved && moved->size ? *moved->size : 0;
      if (moved_done) return device_size;
      return offset == 0 || offset < m ? device_size - m : offset - m;
    }
    return forward() ? offset : device_size - offset;
  }
};

Result<Context> read_context(const Json& root) {
  Context c;
  c.reenc_keyslot = reencrypt_keyslot(root);
  if (c.reenc_keyslot < 0)
    return fail(make_error(Errc::kNotFound, "Device is not in reencryption."));
  const Json& k = root["keyslots"][std::to_string(c.reenc_keyslot)];
  c.mode = k.value("mode", "");
  c.direction = k.value("direction", "");
  const Json& area = k["area"];
  c.resilience = area.value("type", "");
  c.hash = area.value("hash", "");
  c.checksum_block = area.value("sector_size", 0u);
  c.area_offset = json_u64(area["offset"]);
  c.area_size = json_u64(area["size"]);
  if (area.contains("shift_size")) c.shift = json_u64(area["shift_size"]);
  int prev_id = -1, fin_id = -1;
  const Json* prev = segment_by_flag(root, "backup-previous", &prev_id);
  const Json* fin = segment_by_flag(root, "backup-final", &fin_id);
  if (!prev || !fin)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: backup segments missing"));
  c.digest_old = digest_of_segment(root, prev_id);
  c.digest_new = digest_of_segment(root, fin_id);
  return c;
}

// Refuses what cryptmap does not implement yet, naming it.
Result<void> check_supported(const Context& c, const Json& root) {
  const bool moved = segment_by_flag(root, "backup-moved-segment") != nullptr;
  if (c.resilience == "datashift" && c.mode == "encrypt" && c.direction == "backward" && moved) {
    if (c.shift == 0 || c.shift % 512)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt keyslot shift_size"));
    if (c.digest_new < 0)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: backup segment without digest"));
    return ok();
  }
  if ((c.resilience == "datashift-checksum" || c.resilience == "datashift-journal") &&
      c.mode == "decrypt" && c.direction == "forward" && moved) {
    if (c.shift == 0 || c.shift % 512)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt keyslot shift_size"));
    if (c.digest_old < 0)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: backup segment without digest"));
    return ok();
  }
  if (c.resilience == "datashift-checksum" || c.resilience == "datashift-journal" ||
      (c.resilience == "datashift" && c.mode == "decrypt"))
    return fail(unsupported(
        "cryptmap reencrypt: a decryption with a data shift other than cryptsetup 2.6's (direction "
        "forward, a moved first segment, resilience datashift-checksum/-journal) is not "
        "implemented; finish it with cryptsetup reencrypt"));
  if (c.mode == "encrypt" && c.direction != "forward")
    return fail(unsupported(
        "cryptmap reencrypt: encryption in direction \"backward\" (cryptsetup's encryption with "
        "a data shift, --reduce-device-size) is not implemented yet; finish it with cryptsetup "
        "reencrypt"));
  if (c.mode != "reencrypt" && c.mode != "decrypt" && c.mode != "encrypt")
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt keyslot mode"));
  if (c.direction != "forward" && c.direction != "backward")
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt keyslot direction"));
  if (c.mode == "reencrypt" && c.direction != "forward")
    return fail(unsupported(
        "cryptmap reencrypt: direction \"backward\" of mode reencrypt is not implemented yet; "
        "finish it with cryptsetup reencrypt"));
  if (c.mode == "decrypt" && c.direction != "backward")
    return fail(unsupported(
        "cryptmap reencrypt: decryption in direction \"forward\" (cryptsetup's decryption with "
        "a data shift) is not implemented yet; finish it with cryptsetup reencrypt"));
  if (c.resilience != "checksum" && c.resilience != "journal" && c.resilience != "none")
    return fail(make_error_fmt(Errc::kUnsupported,
                               "cryptmap reencrypt: resilience mode not implemented", kNoObject,
                               "'%s' (cryptmap: checksum, journal, none; datashift for "
                               "encryption with --reduce-device-size)",
                               c.resilience.c_str()));
  if (moved)
    return fail(unsupported("cryptmap reencrypt: a moved first segment is not implemented yet"));
  if ((c.mode != "encrypt" && c.digest_old < 0) || (c.mode != "decrypt" && c.digest_new < 0))
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: backup segment without digest"));
  return ok();
}

std::vector<const Json*> regular_segments(const Json& root) {
  std::vector<const Json*> regs;
  for (int i = 0;; ++i) {
    auto it = root["segments"].find(std::to_string(i));
    if (it == root["segments"].end()) break;
    if (!is_backup(*it)) regs.push_back(&*it);
  }
  return regs;
}

// Encryption with a data shift (docs/reencrypt.md §13): the data size is backup-previous's
// (fixed); the converted part is [offset, device_size). With no hotzone in the header, offset
// is the length of the linear (still plain) segments (reencrypt_offset_backward_moved: the
// moved first `shift` bytes plus what is left in place), 0 once one crypt segment remains.
// Decryption with a data shift (docs/reencrypt.md §11, reencrypt_offset_forward_moved): the
// data is image size - shift bytes; with no hotzone in the header, the next forward hotzone
// starts where the last crypt segment (the part still in place) starts, less the shift; when
// only the moved first segment is left encrypted, the moved part is next; one linear segment:
// done.
Result<void> fill_geometry_decrypt_shift(Context& c, const Json& root, std::uint64_t image_size) {
  if (c.old_seg.linear || !c.new_seg.linear || c.moved->linear || !c.moved->size ||
      *c.moved->size == 0 || *c.moved->size > c.shift || c.new_seg.offset != 0 ||
      c.old_seg.offset != c.shift || c.moved->offset != 0)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: data shift backup segments"));
  if (image_size <= c.shift || image_size - c.shift < *c.moved->size)
    return fail(make_error_fmt(Errc::kNoSpace, "Device is too small.", image_size,
                               "(%llu bytes) for the data shift of its decryption",
                               static_cast<unsigned long long>(image_size)));
  c.device_size = image_size - c.shift;
  const auto regs = regular_segments(root);
  if (regs.empty()) return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: no segment"));
  int last_crypt = -1;
  for (std::size_t i = 0; i < regs.size(); ++i) {
    const SegmentInfo s = segment_info(*regs[i]);
    if (has_flag(*regs[i], "in-reencryption")) {
      if (!s.size || !s.linear || s.offset >= c.device_size || *s.size == 0)
        return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption hotzone segment"));
      c.crashed = true;
      c.offset = s.offset;
      c.hot_length = *s.size;
      return ok();
    }
    if (!s.linear) last_crypt = static_cast<int>(i);
  }
  if (last_crypt < 0) {  // the moved part is plain too: nothing left
    c.moved_done = true;
    c.offset = c.device_size;
  } else if (last_crypt == 0) {
    c.offset = c.device_size;  // only the moved part is left
  } else {
    const SegmentInfo s = segment_info(*regs[static_cast<std::size_t>(last_crypt)]);
    if (s.offset < c.shift + *c.moved->size || s.offset - c.shift > c.device_size)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption offset beyond the device"));
    c.offset = s.offset - c.shift;
  }
  return ok();
}

Result<void> fill_geometry_shift(Context& c, const Json& root, std::uint64_t image_size) {
  const Json* moved = segment_by_flag(root, "backup-moved-segment");
  if (moved && c.decrypt_shift() && c.forward()) {
    c.moved = segment_info(*moved);
    return fill_geometry_decrypt_shift(c, root, image_size);
  }
  if (!moved || c.mode != "encrypt" || c.forward())
    return fail(unsupported(
        "cryptmap reencrypt: a data shift other than encryption with a moved first segment "
        "(--encrypt --reduce-device-size) is not implemented yet"));
  c.moved = segment_info(*moved);
  if (!c.old_seg.linear || c.new_seg.linear || !c.moved->linear || !c.old_seg.size ||
      !c.moved->size || c.old_seg.offset != 0 || c.new_seg.offset == 0)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: data shift backup segments"));
  c.device_size = *c.old_seg.size;
  c.fixed_size = true;
  // The image holds the header, the data in place, the shift and the moved part.
  if (image_size < c.data_offset + c.shift || image_size < *c.moved->size + c.moved->offset ||
      c.device_size == 0 || c.device_size > image_size - c.data_offset)
    return fail(make_error_fmt(Errc::kNoSpace, "Device is too small.", image_size,
                               "(%llu bytes) for the data shift in its header",
                               static_cast<unsigned long long>(image_size)));
  const auto regs = regular_segments(root);
  std::uint64_t linear = 0;
  for (const Json* r : regs) {
    const SegmentInfo i = segment_info(*r);
    if (has_flag(*r, "in-reencryption")) {
      if (!i.size || i.offset < c.data_offset || i.linear)
        return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption hotzone segment"));
      c.crashed = true;
      c.offset = i.offset - c.data_offset;
      c.hot_length = *i.size;
      return ok();
    }
    if (i.linear) {
      if (!i.size)
        return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption linear segment size"));
      linear += *i.size;
    }
  }
  if (regs.empty()) return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: no segment"));
  c.offset = linear;
  if (c.offset > c.device_size)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption offset beyond the device"));
  return ok();
}

Result<void> fill_geometry(Context& c, const Json& root, std::uint64_t image_size) {
  const Json* prev = segment_by_flag(root, "backup-previous");
  const Json* fin = segment_by_flag(root, "backup-final");
  const bool decrypt = c.mode == "decrypt", encrypt = c.mode == "encrypt";
  if (prev->value("type", "") != (encrypt ? "linear" : "crypt") ||
      fin->value("type", "") != (decrypt ? "linear" : "crypt"))
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS2 reencryption backup segment types", kNoObject,
                               "for mode %s", c.mode.c_str()));
  c.old_seg = segment_info(*prev);
  c.new_seg = segment_info(*fin);
  c.data_offset = c.new_seg.offset;
  if (c.datashift()) return fill_geometry_shift(c, root, image_size);
  if (c.old_seg.offset != c.new_seg.offset)
    return fail(unsupported("cryptmap reencrypt: a data shift (segments at different offsets)"));
  if (image_size <= c.data_offset)
    return fail(make_error_fmt(Errc::kNoSpace, "Device is too small.", c.data_offset,
                               "data starts at byte %llu",
                               static_cast<unsigned long long>(c.data_offset)));
  c.device_size = image_size - c.data_offset;
  if (c.old_seg.size) {
    if (*c.old_seg.size > c.device_size)
      return fail(make_error(Errc::kNoSpace, "Device is too small.", *c.old_seg.size));
    c.device_size = *c.old_seg.size;
    c.fixed_size = true;
  }
  // Regular segments, in id order.
  std::vector<const Json*> regs;
  for (int i = 0;; ++i) {
    auto it = root["segments"].find(std::to_string(i));
    if (it == root["segments"].end()) break;
    if (!is_backup(*it)) regs.push_back(&*it);
  }
  for (std::size_t i = 0; i < regs.size(); ++i)
    if (has_flag(*regs[i], "in-reencryption")) {
      c.crashed = true;
      const SegmentInfo h = segment_info(*regs[i]);
      if (!h.size || h.offset < c.data_offset)
        return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption hotzone segment"));
      c.offset = h.offset - c.data_offset;
      c.hot_length = *h.size;
      return ok();
    }
  if (regs.size() == 1) {
    // Right after init the one regular segment is the old one; after the last hotzone it is the
    // new one (a crash before the finish's commit): nothing is left to convert then.
    const bool done = c.new_seg.linear ? regs[0]->value("type", "") == "linear"
                                       : c.digest_new != c.digest_old &&
                                             digest_of_segment(root, 0) == c.digest_new;
    c.offset = done == c.forward() ? c.device_size : 0;
  } else if (regs.size() == 2) {
    // Forward: segment 0 is the new part; backward: the old one (reencrypt_offset).
    const SegmentInfo s0 = segment_info(*regs[0]);
    if (!s0.size) return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption segment 0 size"));
    c.offset = *s0.size;
  } else {
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: unexpected segment count"));
  }
  if (c.offset > c.device_size)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption offset beyond the device"));
  return ok();
}

// The segment of the new (old) key over [off, off + size) of the data: crypt with its IV tweak
// moved by off, or linear for plaintext (reencrypt_make_segment_new/_old/_reencrypt).
Json new_segment(const Context& c, std::uint64_t off, std::optional<std::uint64_t> size, bool hot) {
  if (c.new_seg.linear) return linear_segment(c.data_offset + off, size, hot);
  return crypt_segment(c.data_offset + off, size, c.new_seg.iv_tweak + (off >> 9),
                       c.new_seg.encryption, c.new_seg.sector_size, hot);
}
Json old_segment(const Context& c, std::uint64_t off, std::optional<std::uint64_t> size) {
  if (c.old_seg.linear) return linear_segment(c.data_offset + off, size, false);
  return crypt_segment(c.data_offset + off, size, c.old_seg.iv_tweak + (off >> 9),
                       c.old_seg.encryption, c.old_seg.sector_size, false);
}

// Forward (reencrypt_make_hot/post_segments_forward): [new 0..off) [hot] [old rest].
Json segments_forward(const Context& c, std::uint64_t off, std::uint64_t len, bool hot) {
  Json segs = Json::object();
  int sg = 0;
  const std::uint64_t end = off + len;
  const bool old_after = end < c.device_size;
  auto old_rest = [&]() {
    std::optional<std::uint64_t> sz;
    if (c.fixed_size) sz = c.device_size - end;
    return old_segment(c, end, sz);
  };
  if (hot) {
    if (off) segs[std::to_string(sg++)] = new_segment(c, 0, off, false);
    segs[std::to_string(sg++)] = new_segment(c, off, len, true);
  } else {
    std::optional<std::uint64_t> sz;
    if (old_after || c.fixed_size) sz = c.fixed_size && !old_after ? c.device_size : end;
    segs[std::to_string(sg++)] = new_segment(c, 0, sz, false);
  }
  if (old_after) segs[std::to_string(sg++)] = old_rest();
  return segs;
}

// Backward (reencrypt_make_hot/post_segments_backward): [old 0..off) [hot] [new rest]; the old
// part is a copy of the current segment 0 with its size cut to off.
Json segments_backward(const Json& root, const Context& c, std::uint64_t off, std::uint64_t len,
                       bool hot) {
  Json segs = Json::object();
  int sg = 0;
  if (off) {
    Json old = root["segments"]["0"];
    old["size"] = u64s(off);
    segs[std::to_string(sg++)] = old;
  }
  if (hot) {
    segs[std::to_string(sg++)] = new_segment(c, off, len, true);
    const std::uint64_t end = off + len;
    if (end < c.device_size) {
      std::optional<std::uint64_t> sz;
      if (c.fixed_size) sz = c.device_size - end;
      segs[std::to_string(sg++)] = new_segment(c, end, sz, false);
    }
  } else {
    std::optional<std::uint64_t> sz;
    if (c.fixed_size && off) sz = c.device_size - off;
    segs[std::to_string(sg++)] = new_segment(c, off, sz, false);
  }
  return segs;
}

// Encryption with a data shift, the hot segments from the header's current regular ones
// (reencrypt_make_hot_segments_encrypt_shift): the regular segments before the last linear one,
// that one cut by the hotzone's length (dropped when nothing is left of it), the hotzone (new
// cipher at data offset + off, iv_tweak off / 512, in-reencryption), then the first crypt
// segment when there is one already.
Result<Json> segments_shift_hot(const Json& root, const Context& c, std::uint64_t off,
                                std::uint64_t len) {
  const Json& cur = root["segments"];
  const auto regs = regular_segments(root);
  int first_crypt = -1, last_linear = -1;
  for (std::size_t i = 0; i < regs.size(); ++i) {
    const std::string type = regs[i]->value("type", "");
    if (type == "crypt" && first_crypt < 0) first_crypt = static_cast<int>(i);
    if (type == "linear") last_linear = static_cast<int>(i);
  }
  if (last_linear < 0)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: no plain segment left to shift"));
  Json segs = Json::object();
  int sg = 0;
  for (; sg < last_linear; ++sg) segs[std::to_string(sg)] = cur[std::to_string(sg)];
  const SegmentInfo last = segment_info(*regs[static_cast<std::size_t>(last_linear)]);
  if (last.size && *last.size > len) {
    Json shrunk = cur[std::to_string(last_linear)];
    shrunk["size"] = u64s(*last.size - len);
    segs[std::to_string(sg++)] = shrunk;
  }
  segs[std::to_string(sg++)] = crypt_segment(c.data_offset + off, len, off >> 9,
                                             c.new_seg.encryption, c.new_seg.sector_size, true);
  if (first_crypt >= 0) segs[std::to_string(sg)] = cur[std::to_string(first_crypt)];
  return segs;
}

// The post segments from the hot ones (_enc_create_segments_shift_after): the segments before
// the hotzone, then the hotzone joined with the crypt segment after it (offset and iv_tweak
// moved to the hotzone's start) or, for the first hotzone, the hotzone without its flag; its
// size "dynamic" when it starts the data (the run is done).
Result<Json> segments_shift_post(const Json& root, std::uint64_t off, std::uint64_t len,
                                 std::uint64_t data_offset) {
  const Json& hot = root["segments"];
  const auto regs = regular_segments(root);
  int rseg = -1;
  for (std::size_t i = 0; i < regs.size(); ++i)
    if (has_flag(*regs[i], "in-reencryption")) rseg = static_cast<int>(i);
  if (rseg < 0) return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption hotzone segment"));
  Json segs = Json::object();
  for (int i = 0; i < rseg; ++i) segs[std::to_string(i)] = hot[std::to_string(i)];
  Json joined;
  std::uint64_t size = len;
  if (static_cast<std::size_t>(rseg) + 1 < regs.size()) {
    joined = *regs[static_cast<std::size_t>(rseg) + 1];
    joined["offset"] = u64s(off + data_offset);
    joined["iv_tweak"] = u64s(off >> 9);
    size += json_u64(joined["size"]);
  } else {
    joined = *regs[static_cast<std::size_t>(rseg)];
    joined.erase("flags");
  }
  joined["size"] = rseg > 0 ? u64s(size) : std::string("dynamic");
  segs[std::to_string(rseg)] = joined;
  return segs;
}

// Decryption with a data shift, the hot segments (reencrypt_make_hot_segments_decrypt_shift): for
// a forward hotzone the moved segment (the header's segment 0), the plain part done so far (at
// M, if any), the hotzone (linear, in-reencryption), the old crypt rest (at shift + off + len);
// for the moved part (off 0) the hotzone, then the header's plain segment 1 after it.
Result<Json> segments_dshift_hot(const Json& root, const Context& c, std::uint64_t off,
                                 std::uint64_t len) {
  const Json& cur = root["segments"];
  const std::uint64_t m = *c.moved->size;
  const std::uint64_t progress = off == 0 ? c.device_size - m : off - m;
  Json segs = Json::object();
  int sg = 0;
  if (off) {
    if (!cur.contains("0") || is_backup(cur["0"]))
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption: moved segment 0 missing"));
    segs[std::to_string(sg++)] = cur["0"];
    if (progress) segs[std::to_string(sg++)] = linear_segment(c.data_offset + m, progress, false);
  }
  segs[std::to_string(sg++)] = linear_segment(c.data_offset + off, len, true);
  const std::uint64_t end = off + len;
  if (!off && cur.contains("1") && !is_backup(cur["1"]))
    segs[std::to_string(sg)] = cur["1"];
  else if (end < c.device_size)
    segs[std::to_string(sg)] =
        crypt_segment(c.data_offset + c.shift + end, std::nullopt, c.old_seg.iv_tweak + (end >> 9),
                      c.old_seg.encryption, c.old_seg.sector_size, false);
  return segs;
}

// The post segments (_dec_create_segments_shift_after): after the moved part one linear segment
// over all the data; else the moved segment, the plain part [M, off + len) ("dynamic" when
// nothing old follows) and the old rest.
Result<Json> segments_dshift_post(const Json& root, const Context& c, std::uint64_t off,
                                  std::uint64_t len) {
  const Json& hot = root["segments"];
  const auto regs = regular_segments(root);
  int rseg = -1;
  for (std::size_t i = 0; i < regs.size(); ++i)
    if (has_flag(*regs[i], "in-reencryption")) rseg = static_cast<int>(i);
  if (rseg < 0) return fail(make_error(Errc::kCorrupt, "LUKS2 reencryption hotzone segment"));
  Json segs = Json::object();
  if (rseg == 0) {
    segs["0"] = linear_segment(c.data_offset, std::nullopt, false);
    return segs;
  }
  const std::uint64_t m = *c.moved->size;
  const std::uint64_t progress = off == 0 ? c.device_size - m : off - m;
  const bool old_after = static_cast<std::size_t>(rseg) + 1 < regs.size();
  segs["0"] = hot["0"];
  segs["1"] = linear_segment(
      c.data_offset + m, old_after ? std::optional<std::uint64_t>(progress + len) : std::nullopt,
      false);
  if (old_after) segs["2"] = *regs[static_cast<std::size_t>(rseg) + 1];
  return segs;
}

// The segments while [off, off + len) is the hotzone (hot), or after it (post), with the backups
// appended and the digests bound as reencrypt_assign_segments does.
Result<void> set_segments(Json& root, const Context& c, const Json& prev, const Json& fin,
                          std::uint64_t off, std::uint64_t len, bool hot) {
  return guarded([&]() -> Result<void> {
    Json segs;
    if (c.decrypt_shift()) {
      CRYPTMAP_TRY(s, hot ? segments_dshift_hot(root, c, off, len)
                          : segments_dshift_post(root, c, off, len));
      segs = std::move(s);
    } else if (c.datashift()) {
      CRYPTMAP_TRY(s, hot ? segments_shift_hot(root, c, off, len)
                          : segments_shift_post(root, off, len, c.data_offset));
      segs = std::move(s);
    } else {
      segs = c.forward() ? segments_forward(c, off, len, hot)
                         : segments_backward(root, c, off, len, hot);
    }
    const Json* moved_now = segment_by_flag(root, "backup-moved-segment");
    const Json moved = moved_now ? *moved_now : Json();
    int sg = static_cast<int>(segs.size());
    unassign_all_segments(root);
    root["segments"] = segs;
    root["segments"][std::to_string(sg)] = prev;
    root["segments"][std::to_string(sg + 1)] = fin;
    // reencrypt_add_moved_segment: after the other two backups (init wrote it before them).
    if (!moved.is_null()) root["segments"][std::to_string(sg + 2)] = moved;
    if (c.mode != "reencrypt") {
      // reencrypt_assign_segments_simple: the backups first (a crypt one to its digest), then
      // every crypt segment in id order to the one key there is.
      if (!c.old_seg.linear) assign(root, c.digest_old, sg);
      if (!c.new_seg.linear) assign(root, c.digest_new, sg + 1);
      // reencrypt_add_moved_segment: a crypt moved segment (decryption's) to the old digest.
      if (!moved.is_null() && moved.value("type", "") == "crypt")
        assign(root, c.digest_old, sg + 2);
      const int key = c.old_seg.linear ? c.digest_new : c.digest_old;
      for (int i = 0; i < sg + 3; ++i)
        if (root["segments"].contains(std::to_string(i)) &&
            root["segments"][std::to_string(i)].value("type", "") == "crypt")
          assign(root, key, i);
      return ok();
    }
    if (hot) {
      const int rseg = off ? 1 : 0;
      assign(root, c.digest_new, rseg);
      assign(root, c.digest_old, rseg);
      if (rseg > 0) assign(root, c.digest_new, 0);
      if (sg > rseg + 1) assign(root, c.digest_old, rseg + 1);
    } else {
      assign(root, c.digest_new, 0);
      if (sg > 1) assign(root, c.digest_old, 1);
    }
    assign(root, c.digest_old, sg);
    assign(root, c.digest_new, sg + 1);
    return ok();
  });
}

// --- keys --------------------------------------------------------------------------------------

// Unlocks the key of digest `digest` with any luks2 keyslot bound to it (priority order).
Result<SecretBytes> unlock_digest(const Luks2Header& h, std::span<const std::byte> pass,
                                  int digest) {
  bool tried = false;
  for (int priority : {2, 1})
    for (const auto& k : h.meta().keyslots) {
      if (k.type != "luks2" || k.priority != priority) continue;
      const luks2::Digest* d = h.meta().digest_for_keyslot(k.id);
      if (!d || d->id != digest) continue;
      auto vk = h.open_slot(k.id, pass, digest);
      if (vk) return vk;
      if (vk.error().code == Errc::kBadKey) {
        tried = true;
        continue;
      }
      if (vk.error().code == Errc::kNotFound) continue;
      return fail(vk.error());
    }
  if (tried) return fail(make_error(Errc::kBadKey, "No key available with this passphrase."));
  return fail(make_error(Errc::kNotFound, "No usable keyslot is available."));
}

Result<std::unique_ptr<crypto::SectorCipher>> cipher_for(const SegmentInfo& s,
                                                         std::span<const std::byte> vk) {
  auto spec = crypto::CipherSpec::parse(s.encryption);
  if (!spec)
    return fail(make_error_fmt(Errc::kUnsupported, "LUKS2 segment encryption", kNoObject, "'%s'",
                               s.encryption.c_str()));
  crypto::SectorCipherConfig cfg;
  cfg.spec = *spec;
  cfg.sector_size = s.sector_size;
  cfg.iv_offset = s.iv_tweak;
  return crypto::make_sector_cipher(cfg, vk);
}

// Runs f(begin, length) over [0, len) cut into one piece per core (at most 4; piece borders
// aligned to `align`), the calling thread taking the first piece. The first error wins; a thread
// that cannot be started leaves its piece to the calling thread.
template <class F>
Result<void> on_cores(std::uint64_t len, std::uint64_t align, F&& f) {
  unsigned n = std::max(1u, std::min(4u, std::thread::hardware_concurrency()));
  const std::uint64_t units = len / align;
  if (len < (1u << 20) || units < n) n = 1;
  std::vector<std::optional<Error>> errs(n);
  auto piece = [&](unsigned i) {
    const std::uint64_t begin = units * i / n * align;
    const std::uint64_t end = i + 1 == n ? len : units * (i + 1) / n * align;
    auto r = f(begin, end - begin);
    if (!r) errs[i] = r.error();
  };
  std::vector<std::thread> threads;
  std::vector<unsigned> inline_pieces = {0};
  for (unsigned i = 1; i < n; ++i) {
    try {
      threads.emplace_back(piece, i);
    } catch (const std::exception&) {
      inline_pieces.push_back(i);
    }
  }
  for (unsigned i : inline_pieces) piece(i);
  for (auto& t : threads) t.join();
  for (const auto& e : errs)
    if (e) return fail(*e);
  return ok();
}

// on_cores, each core's piece taken a chunk (about 1 MiB, aligned to `align`) at a time: the
// steps f runs on a chunk (read, hash; convert, write) find it in the CPU cache, not in memory.
template <class F>
Result<void> on_cores_chunked(std::uint64_t len, std::uint64_t align, F&& f) {
  const std::uint64_t chunk = std::max<std::uint64_t>(align, (1u << 20) / align * align);
  return on_cores(len, align, [&](std::uint64_t b, std::uint64_t n) -> Result<void> {
    for (std::uint64_t at = b; at < b + n; at += chunk)
      CRYPTMAP_TRY_VOID(f(at, std::min(chunk, b + n - at)));
    return ok();
  });
}

// --- the data path of one hotzone ----------------------------------------------------------------

struct Engine {
  BackingStore& store;   // the data
  BackingStore* header;  // the metadata and the resilience area (the data's store unless detached)
  Context& c;
  // Null for a linear (plaintext) side: decrypt's new segment, encrypt's old one.
  std::unique_ptr<crypto::SectorCipher> old_cipher, new_cipher;
  std::vector<std::byte> buf;

  Result<void> read(std::uint64_t off, std::span<std::byte> out) {
    return store.read_at(ByteOffset{c.data_offset + off}, out);
  }
  // The old data of [off, ...): in place, except with a data shift (plain data from the old
  // segment's offset; the first `shift` bytes from where init moved them).
  Result<void> read_old(std::uint64_t off, std::span<std::byte> out) {
    if (!c.datashift()) return read(off, out);
    const std::uint64_t at = off == 0 ? c.moved->offset : c.old_seg.offset + off;
    return store.read_at(ByteOffset{at}, out);
  }
  Result<void> write(std::uint64_t off, std::span<const std::byte> in) {
    return store.write_at(ByteOffset{c.data_offset + off}, in);
  }
  std::uint64_t sector_align() const {
    return std::max(c.old_seg.sector_size, c.new_seg.sector_size);
  }
  // Decrypts `part` (old ciphertext at data offset `off`) and encrypts it with the new key in
  // place.
  Result<void> convert_part(std::uint64_t off, std::span<std::byte> part) {
    if (old_cipher)
      CRYPTMAP_TRY_VOID(old_cipher->decrypt({part, {}, SectorIndex{off / c.old_seg.sector_size}}));
    if (!new_cipher) return ok();
    return new_cipher->encrypt({part, {}, SectorIndex{off / c.new_seg.sector_size}});
  }
  // convert_part of the whole of `data`, on every core.
  Result<void> convert(std::uint64_t off, std::span<std::byte> data) {
    return on_cores(data.size(), sector_align(), [&](std::uint64_t b, std::uint64_t n) {
      return convert_part(off + b, data.subspan(b, n));
    });
  }
  // convert, each chunk written as soon as it is converted (the hotzone's data phase).
  Result<void> convert_write(std::uint64_t off, std::span<std::byte> data) {
    return on_cores_chunked(data.size(), sector_align(),
                            [&](std::uint64_t b, std::uint64_t n) -> Result<void> {
                              auto part = data.subspan(b, n);
                              CRYPTMAP_TRY_VOID(convert_part(off + b, part));
                              return write(off + b, part);
                            });
  }
};

// What protects the hotzone at `off` (reencrypt_hotzone_protect_ready's rp): the area type, or
// "datashift" with a data shift -- except the moved part of a decryption with a data shift (off
// 0, converted in place), protected by the area type after "datashift-" (checksum or journal).
std::string protection(const Context& c, std::uint64_t off) {
  if (c.decrypt_shift()) return off == 0 ? c.resilience.substr(10) : "datashift";
  return c.datashift() ? "datashift" : c.resilience;
}

// Where the run stands after the hotzone [off, off + len) is converted (reencrypt_context_update):
// forward its end, backward its start; a decryption with a data shift goes on with the moved
// part once the forward hotzones reach the end, and is done after it.
void advance(Context& c, std::uint64_t off, std::uint64_t len) {
  if (c.decrypt_shift() && off == 0) {
    c.moved_done = true;
    c.offset = c.device_size;
  } else {
    c.offset = c.forward() ? off + len : off;
  }
}

// Reads the hotzone [off, +buf.size()) into buf on every core, a chunk at a time (a data shift's
// hotzone in one read, from where its source is); for resilience
// checksum it also returns the checksum of each block (reencrypt_hotzone_protect_ready's data),
// each computed as soon as its chunk is read.
Result<std::vector<std::byte>> read_hotzone(Engine& e, std::uint64_t off,
                                            std::span<std::byte> buf) {
  const Context& c = e.c;
  const std::string prot = protection(c, off);
  if (prot == "datashift") {  // one read from where the hotzone's source is now (read_old)
    CRYPTMAP_TRY_VOID(e.read_old(off, buf));
    return std::vector<std::byte>{};
  }
  if (prot != "checksum") {
    CRYPTMAP_TRY_VOID(on_cores_chunked(
        buf.size(), e.sector_align(),
        [&](std::uint64_t b, std::uint64_t n) { return e.read(off + b, buf.subspan(b, n)); }));
    return std::vector<std::byte>{};
  }
  CRYPTMAP_TRY(hs, crypto::hash_digest_size(c.hash));
  const std::uint64_t bs = c.checksum_block;
  if (bs == 0 || buf.size() % bs)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt hotzone not checksum-aligned"));
  const std::size_t blocks = buf.size() / bs;
  if (blocks * hs > c.area_size)
    return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt checksum area too small"));
  std::vector<std::byte> sums(blocks * hs);
  auto read_and_sum = [&](std::uint64_t b, std::uint64_t n) -> Result<void> {
    CRYPTMAP_TRY_VOID(e.read(off + b, buf.subspan(b, n)));
    for (std::uint64_t at = b; at < b + n; at += bs)
      CRYPTMAP_TRY_VOID(crypto::hash_digest(c.hash, {buf.subspan(at, bs)},
                                            std::span(sums).subspan(at / bs * hs, hs)));
    return ok();
  };
  CRYPTMAP_TRY_VOID(on_cores_chunked(buf.size(), bs, read_and_sum));
  return sums;
}

// reencrypt_recover_segment: brings the crashed hotzone [c.offset, +c.hot_length) to the new key.
Result<void> recover_hotzone(Engine& e) {
  Context& c = e.c;
  const std::uint64_t len = c.hot_length;
  std::vector<std::byte> data(len);
  const std::string prot = protection(c, c.offset);
  if (prot == "checksum") {
    CRYPTMAP_TRY(hs, crypto::hash_digest_size(c.hash));
    if (c.checksum_block == 0 || len % c.checksum_block)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt hotzone not checksum-aligned"));
    const std::size_t blocks = len / c.checksum_block;
    if (blocks * hs > c.area_size)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt checksum area too small"));
    std::vector<std::byte> stored(blocks * hs);
    CRYPTMAP_TRY_VOID(e.header->read_at(ByteOffset{c.area_offset}, stored));
    CRYPTMAP_TRY_VOID(e.read(c.offset, data));
    std::vector<std::byte> now(hs);
    for (std::size_t b = 0; b < blocks; ++b) {
      auto block = std::span(data).subspan(b * c.checksum_block, c.checksum_block);
      CRYPTMAP_TRY_VOID(crypto::hash_digest(c.hash, {block}, now));
      if (std::memcmp(now.data(), stored.data() + b * hs, hs) != 0) continue;  // already new
      const std::uint64_t off = c.offset + b * c.checksum_block;
      CRYPTMAP_TRY_VOID(e.convert(off, block));
      CRYPTMAP_TRY_VOID(e.write(off, block));
    }
  } else if (prot == "datashift") {
    // The source was not overwritten (only the next hotzone writes over it): convert again.
    CRYPTMAP_TRY_VOID(e.read_old(c.offset, data));
    CRYPTMAP_TRY_VOID(e.convert(c.offset, data));
    CRYPTMAP_TRY_VOID(e.write(c.offset, data));
    std::fill(data.begin(), data.end(), std::byte{0});
  } else if (prot == "journal") {
    if (len > c.area_size)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt journal smaller than the hotzone"));
    CRYPTMAP_TRY_VOID(e.header->read_at(ByteOffset{c.area_offset}, data));
    CRYPTMAP_TRY_VOID(e.convert(c.offset, data));
    CRYPTMAP_TRY_VOID(e.write(c.offset, data));
    std::fill(data.begin(), data.end(), std::byte{0});
  } else {
    return fail(make_error(Errc::kCorrupt,
                           "LUKS2 reencryption: interrupted hotzone without resilience data"));
  }
  return e.store.sync();
}

std::uint64_t hotzone_length(const Context& c, std::uint64_t user_max) {
  if (c.datashift()) return c.shift;  // reencrypt_length: the shift, whatever --hotzone-size
  std::uint64_t align = std::max(c.old_seg.sector_size, c.new_seg.sector_size);
  std::uint64_t len = 0;
  if (c.resilience == "checksum") {
    align = std::max<std::uint64_t>(align, c.checksum_block);
    auto hs = crypto::hash_digest_size(c.hash);
    len = hs ? (c.area_size / *hs) * c.checksum_block : 0;
  } else if (c.resilience == "journal") {
    len = c.area_size;
  } else {
    len = user_max ? user_max : kNoneHotzone;
  }
  len = std::min(len, kMaxHotzone);
  if (user_max) len = std::min(len, user_max);
  return len - len % align;
}

// reencrypt_teardown_ok when finished: old keyslots, backup segments, requirement, reencrypt
// keyslot and the digests nothing uses any more go. Unlike cryptsetup (one commit per destroyed
// keyslot, then one for the rest), everything leaves the metadata in one commit and the areas
// are wiped after it: a crash in between must not leave a header in reencryption whose old
// keyslots are gone (it could not be unlocked to verify the reencryption digest again).
Result<void> finish(BackingStore& store, BackingStore& data, Luks2State& st, const Context& c) {
  CRYPTMAP_TRY(m, st.doc.validate(st.json_area));
  std::vector<std::string> gone = {std::to_string(c.reenc_keyslot)};
  std::vector<std::pair<std::uint64_t, std::uint64_t>> wipe = {{c.area_offset, c.area_size}};
  // reencrypt_wipe_unused_device_area: the moved copy of the data's start goes too.
  if (c.moved && c.moved->size && !c.decrypt_shift())
    wipe.emplace_back(c.moved->offset, *c.moved->size);
  if (c.digest_old != c.digest_new)
    for (const auto& k : m.keyslots) {
      const luks2::Digest* d = m.digest_for_keyslot(k.id);
      if (k.type == "luks2" && d && d->id == c.digest_old) {
        gone.push_back(std::to_string(k.id));
        wipe.emplace_back(k.area_offset, k.area_size);
      }
    }
  auto is_gone = [&](const Json& e) {
    return e.is_string() && std::find(gone.begin(), gone.end(), e.get<std::string>()) != gone.end();
  };
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& root = st.doc.root();
    Json segs = Json::object();
    for (auto& [k, v] : root["segments"].items())
      if (!is_backup(v)) segs[k] = v;
    root["segments"] = segs;
    for (const auto& id : gone) root["keyslots"].erase(id);
    for (auto& [id, t] : root["tokens"].items()) {
      (void)id;
      if (!t.contains("keyslots")) continue;
      Json kept = Json::array();
      for (const auto& e : t["keyslots"])
        if (!is_gone(e)) kept.push_back(e);
      t["keyslots"] = kept;
    }
    Json digests = Json::object();
    for (auto& [id, d] : root["digests"].items()) {
      Json ks = Json::array(), sg = Json::array();
      for (const auto& e : d["keyslots"])
        if (!is_gone(e)) ks.push_back(e);
      for (const auto& e : d["segments"])
        if (segs.contains(e.get<std::string>())) sg.push_back(e);
      if (ks.empty() && sg.empty()) continue;
      d["keyslots"] = ks;
      d["segments"] = sg;
      digests[id] = d;
    }
    root["digests"] = digests;
    Json& config = root["config"];
    if (config.contains("requirements")) {
      Json& req = config["requirements"];
      Json kept = Json::array();
      for (const auto& r : req["mandatory"])
        if (r != kRequirement && r != kRequirementV3 && r != "online-reencrypt") kept.push_back(r);
      if (kept.empty())
        config.erase("requirements");
      else
        req["mandatory"] = kept;
    }
    return ok();
  }));
  CRYPTMAP_TRY_VOID(format::luks2_commit(store, st));
  CRYPTMAP_TRY_VOID(store.sync());
  for (const auto& [off, len] : wipe) CRYPTMAP_TRY_VOID(format::write_random(store, off, len));
  // A decryption with a data shift leaves the data's last `shift` bytes unused (the old
  // ciphertext of its end): random, as reencrypt_wipe_unused_device_area writes.
  if (c.decrypt_shift()) {
    CRYPTMAP_TRY_VOID(format::write_random(data, c.device_size, c.shift));
    CRYPTMAP_TRY_VOID(data.sync());
  }
  return ok();
}

Result<void> commit_synced(BackingStore& store, Luks2State& st) {
  CRYPTMAP_TRY_VOID(format::luks2_commit(store, st));
  return store.sync();
}

// The largest free gap of the keyslots area (LUKS2_find_area_max_gap): {offset, length}.
std::pair<std::uint64_t, std::uint64_t> largest_gap(const luks2::Metadata& m) {
  std::uint64_t gap_off = 0, gap_len = 0;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
  for (const auto& k : m.keyslots) used.emplace_back(k.area_offset, k.area_size);
  std::sort(used.begin(), used.end());
  std::uint64_t at = 2 * (m.config.json_size + luks2::kHdrBinLen);
  auto consider = [&](std::uint64_t end) {
    if (end > at && end - at > gap_len) {
      gap_off = at;
      gap_len = end - at;
    }
  };
  for (const auto& [off, len] : used) {
    consider(off);
    at = std::max(at, off + len);
  }
  consider(m.hdr_and_areas_size());
  return {gap_off, gap_len};
}

Result<std::unique_ptr<Luks2Header>> load_v2(const BackingStore& image) {
  auto prefix = format::read_prefix(image, 8);
  if (prefix && prefix->size() >= 8 && luks1::has_luks_magic(*prefix) &&
      load_be16(prefix->data() + 6) == 1)
    return fail(unsupported(
        "Reencryption of LUKS1 is not implemented in cryptmap; convert the image to LUKS2 first "
        "(cryptsetup convert --type luks2)"));
  return Luks2Header::load(image, /*for_inspection=*/true);
}

}  // namespace

Result<ReencryptStatus> reencrypt_status(const BackingStore& image, const BackingStore* data) {
  CRYPTMAP_TRY(h, load_v2(image));
  CRYPTMAP_TRY(doc, luks2::JsonDoc::parse(h->meta().json_text));
  ReencryptStatus s;
  if (reencrypt_keyslot(doc.root()) < 0) return s;
  return guarded([&]() -> Result<ReencryptStatus> {
    CRYPTMAP_TRY(c, read_context(doc.root()));
    s.in_reencryption = true;
    s.mode = c.mode;
    s.direction = c.direction;
    s.resilience = c.resilience;
    if (fill_geometry(c, doc.root(), (data ? *data : image).size_bytes())) {
      s.crashed = c.crashed;
      s.done_bytes = c.done();
      s.total_bytes = c.device_size;
    }
    return s;
  });
}

Result<void> reencrypt_init(BackingStore& image, std::span<const std::byte> passphrase,
                            const ReencryptInitOptions& o) {
  if (o.mode != "reencrypt" && o.mode != "decrypt" && o.mode != "encrypt")
    return fail(make_error_fmt(Errc::kUnsupported, "cryptmap reencrypt: mode not implemented",
                               kNoObject, "'%s' (cryptmap: reencrypt, decrypt, encrypt)",
                               o.mode.c_str()));
  const bool decrypt = o.mode == "decrypt";
  // Encrypt: `image` is the header luksFormat has just written for the plain data; its key
  // becomes the new key, its segment the final one, and the data is plaintext until converted.
  const bool encrypt = o.mode == "encrypt";
  const BackingStore& data_dev = o.data ? *o.data : image;
  CRYPTMAP_TRY(h, load_v2(image));
  const luks2::Metadata& m = h->meta();
  CRYPTMAP_TRY(src, init_source(m));
  const luks2::Segment* seg = src.seg;
  const luks2::Digest* dold = src.digest;
  // cryptsetup's decrypt_luks2_init: in place only under a detached header, data at offset 0
  // (with the header in the image cryptsetup 2.6 moves the data instead: not implemented here).
  if (decrypt && (!o.data || seg->offset != 0))
    return fail(make_error(Errc::kUnsupported,
                           "LUKS2 decryption is supported with detached header device only (with "
                           "data offset set to 0)."));
  if (encrypt && (!o.data || seg->offset != 0))
    return fail(
        make_error(Errc::kUnsupported,
                   "cryptmap reencrypt --encrypt: only with a detached header and data "
                   "offset 0 (a data shift, --reduce-device-size, is not implemented yet)."));

  // Unlock first: a wrong passphrase changes nothing.
  auto unlocked = h->unlock(passphrase, o.key_slot);
  if (!unlocked) return fail(unlocked.error());
  const SecretBytes& vk_old = unlocked->volume_key;

  const std::string cipher = o.cipher.empty() ? seg->encryption : o.cipher;
  const std::uint32_t key_bits =
      o.key_bits ? o.key_bits : static_cast<std::uint32_t>(vk_old.size() * 8);
  // Decryption checks the data against the old sector size (the new side has none).
  const std::uint32_t ss = o.sector_size && !decrypt && !encrypt ? o.sector_size : seg->sector_size;
  if (ss < 512 || ss > 4096 || (ss & (ss - 1)))
    return fail(make_error(Errc::kInvalid, "Unsupported encryption sector size.", ss));
  if (key_bits == 0 || key_bits % 8 || key_bits > 8 * luks2::kMaxKeySize)
    return fail(make_error(Errc::kInvalid, "Key size must be a multiple of 8 bits", key_bits));
  if (data_dev.size_bytes() <= seg->offset)
    return fail(make_error(Errc::kNoSpace, "Device is too small.", data_dev.size_bytes()));
  const std::uint64_t dev_size = seg->dynamic ? data_dev.size_bytes() - seg->offset : seg->size;
  if (dev_size % ss)
    return fail(make_error_fmt(Errc::kInvalid,
                               "Data device is not aligned to requested encryption sector size.",
                               ss, "(%u bytes)", ss));
  if (o.resilience != "checksum" && o.resilience != "journal" && o.resilience != "none") {
    if (o.resilience == "datashift")
      return fail(unsupported(
          "cryptmap reencrypt: resilience datashift (--encrypt --reduce-device-size) is not "
          "implemented yet"));
    return fail(make_error_fmt(Errc::kInvalid, "Unsupported resilience mode", kNoObject, "%s",
                               o.resilience.c_str()));
  }
  std::size_t hash_size = 0;
  if (o.resilience == "checksum") {
    auto hs = crypto::hash_digest_size(o.hash);
    if (!hs || o.hash.size() > 31)
      return fail(make_error_fmt(Errc::kInvalid, "Hash algorithm is not available.", kNoObject,
                                 "%s", o.hash.c_str()));
    hash_size = *hs;
  }
  (void)hash_size;

  // The new volume key, checked against the cipher before anything is written (none for
  // decrypt: the data becomes plaintext).
  SecretBytes vk_new;
  if (!decrypt && !encrypt) {
    CRYPTMAP_TRY(vk, SecretBytes::allocate(key_bits / 8));
    CRYPTMAP_TRY_VOID(crypto::random_bytes(vk.span()));
    vk_new = std::move(vk);
    SegmentInfo new_seg{seg->offset, std::nullopt, seg->iv_tweak, cipher, ss};
    if (auto c = cipher_for(new_seg, vk_new.span()); !c) return fail(c.error());
  }

  // 1. The new keyslot, bound to a new digest that no segment uses yet (crypt_keyslot_add_by_key
  //    with CRYPT_VOLUME_KEY_NO_SEGMENT).
  CRYPTMAP_TRY(st, format::luks2_state(*h));
  const int digest_new = decrypt   ? -1
                         : encrypt ? dold->id
                                   : first_free_id(st.doc.root()["digests"]);
  if (!decrypt && !encrypt) {
    CRYPTMAP_TRY(dnew, make_digest(vk_new.span(), o.pbkdf, Json::array()));
    CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
      st.doc.root()["digests"][std::to_string(digest_new)] = dnew;
      return ok();
    }));
    CRYPTMAP_TRY(slot_new,
                 format::luks2_store_keyslot(image, st, std::nullopt, vk_new.span(), passphrase,
                                             o.pbkdf, std::nullopt, digest_new));
    (void)slot_new;
  }

  // 2. Backup segments, reencrypt keyslot, reencryption digest, requirement: one commit
  //    (reencrypt_init + reencrypt_make_backup_segments + LUKS2_keyslot_reencrypt_allocate).
  CRYPTMAP_TRY(m2, st.doc.validate(st.json_area));
  const auto gap = largest_gap(m2);
  const std::uint64_t gap_off = gap.first, gap_len = gap.second;
  if (gap_len == 0)
    return fail(make_error(Errc::kNoSpace, "Not enough space in header keyslot area."));
  const std::uint32_t block = std::max({ss, seg->sector_size, kChecksumMinBlock});
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& root = st.doc.root();
    Json& segs = root["segments"];
    Json prev = segs["0"];
    if (encrypt) {
      // reencrypt_set_encrypt_segments: the data is one linear segment, bound to no digest.
      unassign_all_segments(root);
      segs["0"] = linear_segment(seg->offset, std::nullopt, false);
      prev = segs["0"];
    }
    prev["flags"] = Json::array({"backup-previous"});
    segs["1"] = prev;
    if (!encrypt) assign(root, dold->id, 1);
    Json fin = decrypt ? linear_segment(seg->offset, std::nullopt, false)
                       : crypt_segment(seg->offset, std::nullopt, seg->iv_tweak, cipher, ss, false);
    fin["flags"] = Json::array({"backup-final"});
    segs["2"] = fin;
    assign(root, digest_new, 2);
    Json area = Json::object();
    area["offset"] = u64s(gap_off);
    area["size"] = u64s(gap_len);
    area["type"] = o.resilience;
    if (o.resilience == "checksum") {
      area["hash"] = o.hash;
      area["sector_size"] = block;
    }
    // cryptsetup's decrypt_luks2_init: decryption goes backward.
    add_reencrypt_keyslot(root, std::move(area), o.mode, decrypt ? "backward" : "forward");
    return ok();
  }));
  CRYPTMAP_TRY(data, encrypt ? digest_data(st.doc.root(), {}, vk_old.span())
                             : digest_data(st.doc.root(), vk_old.span(), vk_new.span()));
  const int rks = reencrypt_keyslot(st.doc.root());
  CRYPTMAP_TRY(dre, make_digest(data.span(), o.pbkdf, Json::array({std::to_string(rks)})));
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& digests = st.doc.root()["digests"];
    digests[std::to_string(first_free_id(digests))] = dre;
    return ok();
  }));
  return commit_synced(image, st);
}

Result<void> reencrypt_encrypt_shift_init(BackingStore& image,
                                          std::span<const std::byte> passphrase,
                                          const EncryptShiftOptions& o) {
  // encrypt_luks2_init (src/utils_reencrypt.c): the data offset is half the reduction, or
  // --offset when smaller (the shift becomes twice it); shift and data offset are equal.
  if (o.reduce_bytes == 0 || o.reduce_bytes % 512)
    return fail(make_error(Errc::kInvalid, "Reduce size must be multiple of 512 bytes sector."));
  std::uint64_t shift = o.reduce_bytes / 1024 * 512;
  if (o.format.offset_sectors && *o.format.offset_sectors) {
    const std::uint64_t want = *o.format.offset_sectors * 512;
    if (want > shift)
      return fail(make_error(Errc::kInvalid,
                             "Requested data offset must be less than or equal to half of "
                             "--reduce-device-size parameter."));
    shift = want;
  }
  if (shift == 0)
    return fail(make_error(Errc::kInvalid, "Reduce size must be multiple of 512 bytes sector."));
  const std::uint64_t image_size = image.size_bytes();
  if (image_size <= shift)
    return fail(make_error_fmt(Errc::kNoSpace,
                               "Device is too small for activation, there is no remaining space "
                               "for data.",
                               image_size, "%s", image.name().c_str()));
  // reencrypt_set_encrypt_segments: `dev` bytes after the header; the data is `dev - shift`;
  // its first min(shift, data) bytes move to the image's end (offset `dev`).
  const std::uint64_t dev = image_size - shift;
  if (dev <= shift)
    return fail(make_error_fmt(Errc::kNoSpace, "Device is too small.", image_size,
                               "%s: %llu bytes leave no data after a %llu-byte header and shift",
                               image.name().c_str(), static_cast<unsigned long long>(image_size),
                               static_cast<unsigned long long>(shift)));
  const std::uint64_t data = dev - shift, moved_len = std::min(shift, data);
  LuksFormatOptions f = o.format;
  f.type = VolumeType::kLuks2;
  f.offset_sectors = shift / 512;
  f.detached_header = false;
  f.data_device_bytes = image_size;
  if (f.sector_size == 0) f.sector_size = 512;  // encrypt_luks2_init: 512 unless --sector-size
  if (data % f.sector_size)
    return fail(make_error_fmt(Errc::kInvalid,
                               "Data device is not aligned to requested encryption sector size.",
                               f.sector_size, "(%u bytes)", f.sector_size));

  // The new header in memory first (cryptsetup formats a temporary header file), then the
  // moved data, then the header into the image's first `shift` bytes (crypt_header_restore).
  MemBackingStore hdr(shift, "mem:new-header");
  auto formatted = luks_format(hdr, f, passphrase);
  if (!formatted && formatted.error().code == Errc::kNoSpace)
    // The detail is the whole sentence the CLI prints (cli/luks_common.cpp report()):
    // cryptsetup's words first, then why.
    return fail(make_error_fmt(Errc::kNoSpace, "No space for new keyslot.", shift,
                               "No space for new keyslot: a %llu-byte header (half of "
                               "--reduce-device-size) has no room for it: %s",
                               static_cast<unsigned long long>(shift),
                               formatted.error().message().c_str()));
  if (!formatted) return fail(formatted.error());
  CRYPTMAP_TRY(h, load_v2(hdr));
  CRYPTMAP_TRY(st, format::luks2_state(*h));
  const luks2::Metadata& m = h->meta();
  const luks2::Digest* dnew = m.digest_for_segment(0);
  const luks2::Segment* seg = m.segment(0);
  if (!dnew || !seg) return fail(make_error(Errc::kCorrupt, "LUKS2 format: no segment digest"));
  // LUKS2_find_area_gap for a 1-byte "key": the first free 4096 bytes of the keyslots area.
  constexpr std::uint64_t kAreaLen = 4096;
  std::uint64_t area = 2 * (m.config.json_size + luks2::kHdrBinLen);
  {
    std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
    for (const auto& k : m.keyslots) used.emplace_back(k.area_offset, k.area_size);
    std::sort(used.begin(), used.end());
    for (const auto& [off, len] : used) {
      if (area + kAreaLen <= off) break;
      area = std::max(area, off + len);
    }
    if (area + kAreaLen > m.hdr_and_areas_size())
      return fail(make_error(Errc::kNoSpace, "No space for new keyslot."));
  }
  const int digest = dnew->id;
  const std::string cipher = seg->encryption;
  const std::uint32_t ss = seg->sector_size;
  const std::uint64_t iv = seg->iv_tweak;
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& root = st.doc.root();
    unassign_all_segments(root);
    Json segs = Json::object();
    segs["0"] = linear_segment(dev, moved_len, false);
    if (data > shift) segs["1"] = linear_segment(shift, data - shift, false);
    int id = static_cast<int>(segs.size());
    Json moved = segs["0"];
    moved["flags"] = Json::array({"backup-moved-segment"});
    segs[std::to_string(id++)] = moved;
    Json prev = linear_segment(0, data, false);
    prev["flags"] = Json::array({"backup-previous"});
    segs[std::to_string(id++)] = prev;
    Json fin = crypt_segment(shift, std::nullopt, iv, cipher, ss, false);
    fin["flags"] = Json::array({"backup-final"});
    segs[std::to_string(id)] = fin;
    root["segments"] = segs;
    assign(root, digest, id);
    Json a = Json::object();
    a["offset"] = u64s(area);
    a["size"] = u64s(kAreaLen);
    a["type"] = "datashift";
    a["shift_size"] = u64s(shift);
    add_reencrypt_keyslot(root, std::move(a), "encrypt", "backward");
    return ok();
  }));
  CRYPTMAP_TRY(vdata, digest_data(st.doc.root(), {}, formatted->volume_key.span()));
  const int rks = reencrypt_keyslot(st.doc.root());
  CRYPTMAP_TRY(dre, make_digest(vdata.span(), f.pbkdf, Json::array({std::to_string(rks)})));
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& digests = st.doc.root()["digests"];
    digests[std::to_string(first_free_id(digests))] = dre;
    return ok();
  }));
  CRYPTMAP_TRY_VOID(format::luks2_commit(hdr, st));

  // reencrypt_move_data: the data's start to the image's end, synced before the header lands.
  {
    CRYPTMAP_TRY(buf, SecretBytes::allocate(moved_len));
    CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{0}, buf.span()));
    CRYPTMAP_TRY_VOID(image.write_at(ByteOffset{dev}, buf.span()));
    CRYPTMAP_TRY_VOID(image.sync());
  }
  std::vector<std::byte> chunk(std::min<std::uint64_t>(shift, 1u << 20));
  for (std::uint64_t at = 0; at < shift; at += chunk.size()) {
    auto part = std::span(chunk).first(std::min<std::uint64_t>(chunk.size(), shift - at));
    CRYPTMAP_TRY_VOID(hdr.read_at(ByteOffset{at}, part));
    CRYPTMAP_TRY_VOID(image.write_at(ByteOffset{at}, part));
  }
  return image.sync();
}

namespace {

// cryptsetup 2.6's datashift decryption of the header in `header` (IMAGE's own, or its copy
// exported to NEW-FILE) over the data of `image`, planned: checked, the passphrase tried, the
// reencryption metadata built in memory (not committed). Nothing is written.
struct DecryptShiftPlan {
  Luks2State st;                // the header in reencryption, to commit
  std::uint64_t shift = 0;      // the old data offset
  std::uint64_t moved = 0;      // the moved first part
  std::uint64_t hdr_bytes = 0;  // the header and its keyslots area
};

Result<DecryptShiftPlan> plan_decrypt_shift(const BackingStore& header, std::uint64_t image_size,
                                            std::span<const std::byte> passphrase,
                                            const DecryptShiftOptions& o) {
  // decrypt_verify_and_set_params: checksum and journal become their datashift- forms.
  if (o.resilience == "none" || o.resilience == "datashift")
    return fail(make_error(Errc::kInvalid,
                           "Requested --resilience option cannot be applied to current "
                           "reencryption operation."));
  const std::string area_type =
      o.resilience.rfind("datashift-", 0) == 0 ? o.resilience : "datashift-" + o.resilience;
  if (area_type != "datashift-checksum" && area_type != "datashift-journal")
    return fail(make_error_fmt(Errc::kInvalid, "Unsupported resilience mode", kNoObject, "%s",
                               o.resilience.c_str()));
  const bool checksum = area_type == "datashift-checksum";
  std::size_t hash_size = 0;
  if (checksum) {
    auto hs = crypto::hash_digest_size(o.hash);
    if (!hs || o.hash.size() > 31)
      return fail(make_error_fmt(Errc::kInvalid, "Hash algorithm is not available.", kNoObject,
                                 "%s", o.hash.c_str()));
    hash_size = *hs;
  }
  CRYPTMAP_TRY(h, load_v2(header));
  const luks2::Metadata& m = h->meta();
  CRYPTMAP_TRY(src, init_source(m));
  const luks2::Segment* seg = src.seg;
  const luks2::Digest* dold = src.digest;
  // The shift is the data offset (the header and its keyslots area move out of the image).
  const std::uint64_t shift = seg->offset;
  if (shift == 0 || shift % 512)
    return fail(make_error(Errc::kInvalid,
                           "LUKS2 decryption with a data shift needs the header inside the image "
                           "(a data offset above 0).",
                           shift));
  if (!seg->dynamic)
    return fail(unsupported(
        "cryptmap reencrypt: decryption with a data shift of a segment with a fixed size is not "
        "implemented yet"));
  if (image_size <= shift)
    return fail(make_error(Errc::kNoSpace, "Device is too small.", image_size));
  const std::uint64_t data_size = image_size - shift;
  // The moved first part: the shift, at most cryptsetup's default hotzone (20 MiB).
  const std::uint64_t moved = std::min(shift, kNoneHotzone);
  if (data_size < moved)
    return fail(unsupported(
        "cryptmap reencrypt: decryption with a data shift of an image whose data is smaller than "
        "its data offset is not implemented yet"));
  if (data_size % seg->sector_size)
    return fail(make_error_fmt(Errc::kInvalid,
                               "Data device is not aligned to requested encryption sector size.",
                               seg->sector_size, "(%u bytes)", seg->sector_size));

  // Unlock first: a wrong passphrase writes and creates nothing.
  auto unlocked = h->unlock(passphrase, o.key_slot);
  if (!unlocked) return fail(unlocked.error());
  const SecretBytes& vk_old = unlocked->volume_key;

  CRYPTMAP_TRY(st, format::luks2_state(*h));
  CRYPTMAP_TRY(m2, st.doc.validate(st.json_area));
  const std::uint64_t hdr_bytes = m2.hdr_and_areas_size();
  if (hdr_bytes == 0 || hdr_bytes > shift)
    return fail(make_error(Errc::kCorrupt, "LUKS2 header larger than its data offset", hdr_bytes));
  const auto gap = largest_gap(m2);
  const std::uint64_t gap_off = gap.first, gap_len = gap.second;
  const std::uint32_t block = std::max(seg->sector_size, kChecksumMinBlock);
  // LUKS2_reencrypt_max_hotzone_size of the moved part's protection.
  const std::uint64_t room = checksum ? gap_len / hash_size * block : gap_len;
  if (gap_len == 0 || room < moved)
    return fail(make_error_fmt(
        Errc::kNoSpace, "Moved segment too large.", moved,
        "Moved segment too large. Requested size %llu, available space for: %llu.",
        static_cast<unsigned long long>(moved), static_cast<unsigned long long>(room)));

  // reencrypt_set_decrypt_shift_segments + reencrypt_make_backup_segments +
  // LUKS2_keyslot_reencrypt_allocate (docs/reencrypt.md §11.1).
  const int d = dold->id;
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& root = st.doc.root();
    unassign_all_segments(root);
    Json segs = Json::object();
    segs["0"] = crypt_segment(0, moved, seg->iv_tweak, seg->encryption, seg->sector_size, false);
    if (data_size > moved)
      segs["1"] = crypt_segment(shift + moved, std::nullopt, seg->iv_tweak + (moved >> 9),
                                seg->encryption, seg->sector_size, false);
    const int regular = static_cast<int>(segs.size());
    Json copy = segs["0"];
    copy["flags"] = Json::array({"backup-moved-segment"});
    segs[std::to_string(regular)] = copy;
    Json prev =
        crypt_segment(shift, std::nullopt, seg->iv_tweak, seg->encryption, seg->sector_size, false);
    prev["flags"] = Json::array({"backup-previous"});
    segs[std::to_string(regular + 1)] = prev;
    Json fin = linear_segment(0, std::nullopt, false);
    fin["flags"] = Json::array({"backup-final"});
    segs[std::to_string(regular + 2)] = fin;
    root["segments"] = segs;
    for (int i = 0; i < regular + 2; ++i) assign(root, d, i);
    Json area = Json::object();
    area["offset"] = u64s(gap_off);
    area["size"] = u64s(gap_len);
    area["type"] = area_type;
    if (checksum) {
      area["hash"] = o.hash;
      area["sector_size"] = block;
    }
    area["shift_size"] = u64s(shift);
    add_reencrypt_keyslot(root, std::move(area), "decrypt", "forward", kRequirementV3);
    return ok();
  }));
  CRYPTMAP_TRY(vdata, digest_data(st.doc.root(), vk_old.span(), {}));
  const int rks = reencrypt_keyslot(st.doc.root());
  CRYPTMAP_TRY(dre, make_digest(vdata.span(), o.pbkdf, Json::array({std::to_string(rks)})));
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    Json& digests = st.doc.root()["digests"];
    digests[std::to_string(first_free_id(digests))] = dre;
    return ok();
  }));
  return DecryptShiftPlan{std::move(st), shift, moved, hdr_bytes};
}

// `len` bytes from `from` at 0 to `to` at 0, a MiB at a time.
Result<void> copy_bytes(const BackingStore& from, BackingStore& to, std::uint64_t len) {
  std::vector<std::byte> chunk(std::min<std::uint64_t>(len, 1u << 20));
  for (std::uint64_t at = 0; at < len; at += chunk.size()) {
    auto part = std::span(chunk).first(std::min<std::uint64_t>(chunk.size(), len - at));
    CRYPTMAP_TRY_VOID(from.read_at(ByteOffset{at}, part));
    CRYPTMAP_TRY_VOID(to.write_at(ByteOffset{at}, part));
  }
  return ok();
}

// reencrypt_move_data: the data's first `moved` bytes (at the shift) over the image's header,
// synced before the header in reencryption may land.
Result<void> move_first_part(BackingStore& image, std::uint64_t shift, std::uint64_t moved) {
  CRYPTMAP_TRY(buf, SecretBytes::allocate(moved));
  CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{shift}, buf.span()));
  CRYPTMAP_TRY_VOID(image.write_at(ByteOffset{0}, buf.span()));
  return image.sync();
}

// crypt_header_backup: the header and its keyslots area, as they are, into a new store (synced).
Result<std::unique_ptr<BackingStore>> export_header(const BackingStore& image,
                                                    const DecryptShiftPlan& plan,
                                                    const HeaderFactory& make_header) {
  CRYPTMAP_TRY(hdr, make_header(plan.hdr_bytes));
  CRYPTMAP_TRY_VOID(copy_bytes(image, *hdr, plan.hdr_bytes));
  CRYPTMAP_TRY_VOID(hdr->sync());
  return hdr;
}

}  // namespace

Result<void> reencrypt_decrypt_shift_init(BackingStore& image,
                                          std::span<const std::byte> passphrase,
                                          const DecryptShiftOptions& o,
                                          const HeaderFactory& make_header) {
  CRYPTMAP_TRY(plan, plan_decrypt_shift(image, image.size_bytes(), passphrase, o));
  CRYPTMAP_TRY(hdr, export_header(image, plan, make_header));
  CRYPTMAP_TRY_VOID(move_first_part(image, plan.shift, plan.moved));
  return commit_synced(*hdr, plan.st);
}

Result<std::uint64_t> reencrypt_decrypt_shift_export(BackingStore& image,
                                                     std::span<const std::byte> passphrase,
                                                     const DecryptShiftOptions& o,
                                                     const HeaderFactory& make_header) {
  CRYPTMAP_TRY(plan, plan_decrypt_shift(image, image.size_bytes(), passphrase, o));
  CRYPTMAP_TRY_VOID(export_header(image, plan, make_header));
  return plan.hdr_bytes;
}

struct DecryptShiftStart::State {
  State(BackingStore& h, BackingStore& i) : header(h), image(i) {}
  BackingStore& header;
  BackingStore& image;
  std::unique_ptr<MemBackingStore> plain;  // the export as it is (the image's header)
  std::unique_ptr<MemBackingStore> copy;   // the header as switch_header() leaves it
  std::unique_ptr<ReencryptSession> session;
  std::uint64_t shift = 0, moved = 0, hdr_bytes = 0, hdr_copy_bytes = 0;
  bool switched = false;
  // The image's own header written back from the export after a failed switch (the image then
  // is as before, its data at the shift untouched).
  void restore_image_header() {
    if (copy_bytes(*plain, image, hdr_bytes)) (void)image.sync();
  }
};

DecryptShiftStart::DecryptShiftStart(std::unique_ptr<State> s) : s_(std::move(s)) {}
DecryptShiftStart::~DecryptShiftStart() = default;

Result<std::unique_ptr<DecryptShiftStart>> DecryptShiftStart::prepare(
    BackingStore& header, BackingStore& image, std::span<const std::byte> passphrase,
    const DecryptShiftOptions& o, std::uint64_t max_hotzone_bytes) {
  // The plan over `header` as a detached header of `image`: the same checks and JSON as
  // IMAGE's own header gives (the export is a byte copy of it, checked below).
  CRYPTMAP_TRY(plan, plan_decrypt_shift(header, image.size_bytes(), passphrase, o));
  if (header.size_bytes() < plan.hdr_bytes)
    return fail(make_error_fmt(Errc::kInvalid, "exported LUKS2 header", header.size_bytes(),
                               "%s is smaller than the header it should hold",
                               header.name().c_str()));
  auto s = std::make_unique<State>(header, image);
  s->shift = plan.shift;
  s->moved = plan.moved;
  s->hdr_bytes = plan.hdr_bytes;
  s->hdr_copy_bytes = 2 * (plan.st.json_area + luks2::kHdrBinLen);
  s->plain = std::make_unique<MemBackingStore>(plan.hdr_bytes, "mem:" + header.name());
  CRYPTMAP_TRY_VOID(copy_bytes(header, *s->plain, plan.hdr_bytes));
  // The export must still be IMAGE's header: nothing may have changed it since.
  {
    std::vector<std::byte> a(std::min<std::uint64_t>(plan.hdr_bytes, 1u << 20)), b(a.size());
    for (std::uint64_t at = 0; at < plan.hdr_bytes; at += a.size()) {
      const std::uint64_t n = std::min<std::uint64_t>(a.size(), plan.hdr_bytes - at);
      CRYPTMAP_TRY_VOID(s->plain->read_at(ByteOffset{at}, std::span(a).first(n)));
      CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{at}, std::span(b).first(n)));
      if (std::memcmp(a.data(), b.data(), n) != 0)
        return fail(make_error_fmt(Errc::kBusy, "exported LUKS2 header", at,
                                   "%s no longer holds the header of %s (it changed since the "
                                   "export); start again",
                                   header.name().c_str(), image.name().c_str()));
    }
  }
  // The header as the switch leaves it, in memory: the export with the reencryption committed.
  // The session starts on it (keys unlocked, digest verified), so that the switch itself only
  // moves data and writes the header.
  s->copy = std::make_unique<MemBackingStore>(plan.hdr_bytes, "mem:" + header.name());
  CRYPTMAP_TRY_VOID(copy_bytes(*s->plain, *s->copy, plan.hdr_bytes));
  CRYPTMAP_TRY_VOID(format::luks2_commit(*s->copy, plan.st));
  CRYPTMAP_TRY(session, ReencryptSession::start(*s->copy, passphrase, max_hotzone_bytes, &image));
  s->session = std::move(session);
  return std::unique_ptr<DecryptShiftStart>(new DecryptShiftStart(std::move(s)));
}

ReencryptSession& DecryptShiftStart::session() noexcept { return *s_->session; }
bool DecryptShiftStart::switched() const noexcept { return s_->switched; }

Result<void> DecryptShiftStart::switch_header() {
  State& s = *s_;
  if (s.switched) return ok();
  if (auto moved = move_first_part(s.image, s.shift, s.moved); !moved) {
    s.restore_image_header();
    return moved;
  }
  // The commit point: the two header copies, each synced before the next (the keyslots area is
  // the export's). A crash leaves at least one whole copy, and either header (the export, data
  // at the shift; or the one in reencryption, the first part moved) describes the image now.
  const std::uint64_t one = s.hdr_copy_bytes / 2;
  auto committed = [&]() -> Result<void> {
    std::vector<std::byte> buf(one);
    for (std::uint64_t at : {std::uint64_t{0}, one}) {
      CRYPTMAP_TRY_VOID(s.copy->read_at(ByteOffset{at}, buf));
      CRYPTMAP_TRY_VOID(s.header.write_at(ByteOffset{at}, buf));
      CRYPTMAP_TRY_VOID(s.header.sync());
    }
    return ok();
  }();
  if (!committed) {
    auto now = reencrypt_status(s.header, &s.image);
    if (!now || !now->in_reencryption) {
      s.restore_image_header();
      return committed;
    }
    // A copy of the header in reencryption landed: that is the header now.
  }
  s.session->move_header(s.header);
  s.switched = true;
  return ok();
}

namespace {

// A header in reencryption, checked and unlocked: what a run and an open both start from
// (reencrypt_load_and_verify + reencrypt_context_init).
struct Loaded {
  std::unique_ptr<Luks2Header> h;
  Luks2State st;
  Context c;
  SecretBytes vk_old, vk_new;
  Json prev, fin;  // the backup segments
};

// `data_size`: bytes of the data device (the image's unless the header is detached).
Result<Loaded> load_verified(BackingStore& image, std::uint64_t data_size,
                             std::span<const std::byte> passphrase) {
  Loaded l;
  CRYPTMAP_TRY(h, load_v2(image));
  l.h = std::move(h);
  std::string unknown;
  if (luks2::requirement_state(l.h->meta(), &unknown) == luks2::RequirementState::kUnknown)
    return fail(make_error_fmt(Errc::kUnsupported, "Unmet LUKS2 requirements detected.", kNoObject,
                               "unknown mandatory requirement '%s'", unknown.c_str()));
  CRYPTMAP_TRY(st, format::luks2_state(*l.h));
  l.st = std::move(st);
  CRYPTMAP_TRY(c, guarded([&]() -> Result<Context> {
                 CRYPTMAP_TRY(ctx, read_context(l.st.doc.root()));
                 return ctx;
               }));
  l.c = std::move(c);
  const auto& mand = l.h->meta().config.mandatory_requirements;
  // cryptsetup 2.6 marks its decryption with a data shift (the header exported to a new file,
  // the data moved to the device's start) with version 3 (docs/reencrypt.md §13).
  const bool v3 = std::find(mand.begin(), mand.end(), kRequirementV3) != mand.end();
  if (!v3 && std::find(mand.begin(), mand.end(), kRequirement) == mand.end())
    return fail(unsupported(
        "LUKS2 reencryption metadata of an older version (requirement online-reencrypt); "
        "repair it with cryptsetup reencrypt --repair"));
  auto geometry = guarded([&]() -> Result<void> {
    CRYPTMAP_TRY_VOID(check_supported(l.c, l.st.doc.root()));
    // online-reencrypt-v3 marks exactly cryptsetup 2.6's decryption with a data shift.
    if (v3 != l.c.decrypt_shift())
      return fail(make_error_fmt(Errc::kCorrupt, "LUKS2 reencryption requirement", kNoObject,
                                 "%s does not match mode %s, resilience %s",
                                 v3 ? kRequirementV3 : kRequirement, l.c.mode.c_str(),
                                 l.c.resilience.c_str()));
    return fill_geometry(l.c, l.st.doc.root(), data_size);
  });
  if (!geometry) return fail(geometry.error());

  // Both keys, then the reencryption digest over them and the metadata.
  if (l.c.digest_old >= 0) {  // none for encrypt: the old side is plaintext
    CRYPTMAP_TRY(vk_old, unlock_digest(*l.h, passphrase, l.c.digest_old));
    l.vk_old = std::move(vk_old);
  }
  // The new key: none for decrypt; the old one again when both segments share a digest.
  if (l.c.digest_new >= 0) {
    CRYPTMAP_TRY(vk_new, l.c.digest_new == l.c.digest_old
                             ? SecretBytes::copy_of(l.vk_old.span())
                             : unlock_digest(*l.h, passphrase, l.c.digest_new));
    l.vk_new = std::move(vk_new);
  }
  {
    const bool new_in_digest = l.c.digest_new >= 0 && l.c.digest_new != l.c.digest_old;
    CRYPTMAP_TRY(data, guarded([&]() {
                   return digest_data(l.st.doc.root(), l.vk_old.span(),
                                      new_in_digest ? std::span<const std::byte>(l.vk_new.span())
                                                    : std::span<const std::byte>());
                 }));
    const luks2::Digest* rd = l.h->meta().digest_for_keyslot(l.c.reenc_keyslot);
    if (!rd) return fail(make_error(Errc::kCorrupt, "Reencryption metadata is invalid."));
    auto v = l.h->verify_volume_key(data.span(), rd->id);
    if (!v)
      return fail(make_error(Errc::kCorrupt, "Reencryption metadata is invalid.",
                             static_cast<std::uint64_t>(rd->id)));
  }
  CRYPTMAP_TRY_VOID(guarded([&]() -> Result<void> {
    l.prev = *segment_by_flag(l.st.doc.root(), "backup-previous");
    l.fin = *segment_by_flag(l.st.doc.root(), "backup-final");
    return ok();
  }));
  return l;
}

// Keys the data path of a run with both volume keys.
Result<void> key_engine(Engine& e, const Loaded& l) {
  if (!l.c.old_seg.linear) {
    CRYPTMAP_TRY(oc, cipher_for(l.c.old_seg, l.vk_old.span()));
    e.old_cipher = std::move(oc);
  }
  if (!l.c.new_seg.linear) {
    CRYPTMAP_TRY(nc, cipher_for(l.c.new_seg, l.vk_new.span()));
    e.new_cipher = std::move(nc);
  }
  return ok();
}

// reencrypt_recovery: a hotzone flagged in-reencryption is brought to the new key from the
// resilience data and the post segments are committed; the run (or the open) goes on after it.
Result<void> recover_if_crashed(BackingStore& image, Loaded& l, Engine& e) {
  Context& c = l.c;
  if (!c.crashed) return ok();
  CRYPTMAP_TRY_VOID(recover_hotzone(e));
  CRYPTMAP_TRY_VOID(set_segments(l.st.doc.root(), c, l.prev, l.fin, c.offset, c.hot_length, false));
  CRYPTMAP_TRY_VOID(commit_synced(image, l.st));
  advance(c, c.offset, c.hot_length);  // backward: the boundary is the hotzone's start
  c.crashed = false;
  return ok();
}

// What is served while in reencryption (open, online runs): the two sides of one boundary,
// crypt or linear (docs/reencrypt.md §9, §10), at their places in the image -- with a data shift
// (§11.1, §13) each side at its own offset, as cryptsetup maps the header's segments. Not a
// reencryption backward (cryptsetup refuses to start one with cryptmap's tools: --direction).
Result<void> check_servable(const Context& c) {
  if (c.mode == "reencrypt" && !c.forward())
    return fail(make_error_fmt(
        Errc::kUnsupported, "cryptmap: serving an image in reencryption of this kind", kNoObject,
        "mode %s, direction %s is not implemented yet; finish it offline with reencrypt "
        "--resume-only",
        c.mode.c_str(), c.direction.c_str()));
  return ok();
}

// The image mapping of the two sides of a data shift's boundary, each over [0, device_size)
// (docs/reencrypt.md §10): `before` what is converted (encryption, backward: plaintext where it
// was; decryption, forward: plaintext at the data's new place), `after` what is not yet
// (encryption: ciphertext at the data offset; decryption: the moved part at the image's start,
// the rest at the shift). Offsets are the image's.
struct ShiftSides {
  std::vector<Segment> before, after;
};
ShiftSides shift_sides(const Context& c) {
  auto seg = [](std::uint64_t start, std::uint64_t len, std::uint64_t at) {
    Segment s;
    s.kind = SegmentKind::kLinear;
    s.offset_bytes = start;
    s.length_bytes = len;
    s.image_offset_bytes = at;
    return s;
  };
  ShiftSides out;
  const std::uint64_t n = c.device_size, m = std::min(*c.moved->size, n);
  if (c.decrypt_shift()) {
    out.before.push_back(seg(0, n, c.new_seg.offset));
    out.after.push_back(seg(0, m, c.moved->offset));
    if (n > m) out.after.push_back(seg(m, n - m, c.old_seg.offset + m));
  } else {
    out.before.push_back(seg(0, m, c.moved->offset));
    if (n > m) out.before.push_back(seg(m, n - m, c.old_seg.offset + m));
    out.after.push_back(seg(0, n, c.data_offset));
  }
  return out;
}

// The served volume's sector size: the larger of the crypt sides' (a linear side has none).
std::uint32_t served_sector_size(const Context& c) {
  return std::max(c.old_seg.linear ? 512u : c.old_seg.sector_size,
                  c.new_seg.linear ? 512u : c.new_seg.sector_size);
}

}  // namespace

// One run's state: the verified header, both keys' ciphers, where the run stands.
struct ReencryptSession::State {
  State(BackingStore& img, BackingStore& dat, Loaded loaded)
      : image(&img), data(dat), l(std::move(loaded)), e{dat, &img, l.c, nullptr, nullptr, {}} {}
  BackingStore* image;  // the header (and the data unless detached); move_header() changes it
  BackingStore& data;
  Loaded l;
  Engine e;
  std::uint64_t max_len = 0;
  std::vector<std::byte> buf;
  bool dirty_none = false;  // resilience none: segments changed in memory only
  std::uint64_t bytes = 0;
  std::shared_ptr<SegmentBoundary> boundary;  // the served volume's, online
  bool finished = false;                      // stop() finished the run
  // Where the step in progress stands: the header names its hotzone (the commit point passed),
  // its data is being written. A failed step is recovered or fenced by what they say.
  bool hot_committed = false, hot_writing = false;
  Hotzone fenced;  // online: a hotzone left unreadable (length 0: none)
};

ReencryptSession::ReencryptSession(std::unique_ptr<State> s) : s_(std::move(s)) {}
ReencryptSession::~ReencryptSession() {
  if (s_) std::fill(s_->buf.begin(), s_->buf.end(), std::byte{0});
}

Result<std::unique_ptr<ReencryptSession>> ReencryptSession::start(
    BackingStore& image, std::span<const std::byte> passphrase, std::uint64_t max_hotzone_bytes,
    BackingStore* data) {
  BackingStore& dat = data ? *data : image;
  CRYPTMAP_TRY(l, load_verified(image, dat.size_bytes(), passphrase));
  auto s = std::make_unique<State>(image, dat, std::move(l));
  CRYPTMAP_TRY_VOID(key_engine(s->e, s->l));
  CRYPTMAP_TRY_VOID(recover_if_crashed(image, s->l, s->e));
  s->max_len = hotzone_length(s->l.c, max_hotzone_bytes);
  if (s->max_len < 512)
    return fail(
        make_error(Errc::kInvalid, "Invalid reencryption length (hotzone size).", s->max_len));
  return std::unique_ptr<ReencryptSession>(new ReencryptSession(std::move(s)));
}

std::uint64_t ReencryptSession::done_bytes() const noexcept { return s_->l.c.done(); }
std::uint64_t ReencryptSession::total_bytes() const noexcept { return s_->l.c.device_size; }
std::uint64_t ReencryptSession::converted_bytes() const noexcept { return s_->bytes; }

ReencryptSession::Hotzone ReencryptSession::next_hotzone() const noexcept {
  const Context& c = s_->l.c;
  if (c.decrypt_shift()) {  // reencrypt_offset_forward_moved, reencrypt_context_update
    if (c.moved_done) return {c.device_size, 0};
    if (c.offset >= c.device_size) return {0, *c.moved->size};
    return {c.offset, std::min(c.shift, c.device_size - c.offset)};
  }
  if (c.datashift()) {  // reencrypt_offset_backward_moved, reencrypt_context_update
    const std::uint64_t b = c.offset, sh = c.shift;
    if (b == 0) return {0, 0};
    if (b <= sh) return {0, sh};  // the moved first part
    if (b - sh < sh) return {sh, b - sh};
    return {b - sh, sh};
  }
  if (!c.forward()) {  // from the end towards the start (reencrypt_offset, _offset_backward)
    const std::uint64_t len = std::min(s_->max_len, c.offset);
    return {c.offset - len, len};
  }
  if (c.offset >= c.device_size) return {c.device_size, 0};
  return {c.offset, std::min(s_->max_len, c.device_size - c.offset)};
}

Result<std::unique_ptr<Volume>> ReencryptSession::open_served_volume(
    std::unique_ptr<BackingStore> store, const VolumeOptions& options,
    std::shared_ptr<spdlog::logger> logger) {
  State& s = *s_;
  const Context& c = s.l.c;
  CRYPTMAP_TRY_VOID(check_servable(c));
  // Forward: the new side below the boundary; backward (decryption): the old one. A linear
  // side has no cipher (plaintext).
  std::unique_ptr<crypto::SectorCipher> newc, oldc;
  if (!c.new_seg.linear) {
    CRYPTMAP_TRY(nc, cipher_for(c.new_seg, s.l.vk_new.span()));
    newc = std::move(nc);
  }
  if (!c.old_seg.linear) {
    CRYPTMAP_TRY(oc, cipher_for(c.old_seg, s.l.vk_old.span()));
    oldc = std::move(oc);
  }
  const SegmentInfo& crypt_seg = c.new_seg.linear ? c.old_seg : c.new_seg;
  const std::uint32_t ss = served_sector_size(c);
  auto boundary = std::make_shared<SegmentBoundary>(c.offset);
  // A decryption with a data shift converts its moved first part last: until then it stays on
  // the old side below the boundary.
  if (c.decrypt_shift() && !c.moved_done) boundary->set_pending(0, *c.moved->size);
  CRYPTMAP_TRY(cipher, c.forward()
                           ? make_boundary_cipher(std::move(newc), std::move(oldc), ss, boundary)
                           : make_boundary_cipher(std::move(oldc), std::move(newc), ss, boundary));
  auto spec = crypto::CipherSpec::parse(crypt_seg.encryption);
  if (!spec) return fail(make_error(Errc::kUnsupported, "LUKS2 reencryption segment encryption"));
  VolumeLayout v;
  v.type = VolumeType::kLuks2;
  v.cipher = *spec;
  v.key_bytes = static_cast<std::uint32_t>((c.new_seg.linear ? s.l.vk_old : s.l.vk_new).size());
  v.sector_size = ss;
  v.data_offset_bytes = c.data_offset;
  v.size_bytes = c.device_size;
  v.uuid = s.l.h->disk().bin.uuid;
  v.label = s.l.h->disk().bin.label;
  if (c.datashift()) {
    // The data moves: each side is read and written at its own place (docs/reencrypt.md §10).
    ShiftSides sides = shift_sides(c);
    CRYPTMAP_TRY(moving, make_boundary_store(std::move(sides.before), std::move(sides.after),
                                             std::move(store), boundary));
    store = std::move(moving);
    v.data_offset_bytes = 0;
  }
  CRYPTMAP_TRY(vol, open_volume(std::move(v), std::move(cipher), std::move(store), options,
                                std::move(logger)));
  s.boundary = std::move(boundary);
  return vol;
}

Result<void> ReencryptSession::step(Volume* served) {
  const auto [off, len] = next_hotzone();
  if (len == 0) return ok();
  if (!served != !s_->boundary)
    return fail(make_error(Errc::kInvalid,
                           served ? "online reencryption step: not this session's served volume"
                                  : "reencryption step: the session serves a volume; step it"));
  if (!served) return convert_hotzone();
  const std::uint64_t at = off, end = off + len;  // structured bindings are not captured (clang 14)
  return served->hold_range(ByteOffset{off}, len, [&]() -> Result<void> {
    auto converted = convert_hotzone();
    if (converted) {
      settle_boundary();  // past the hotzone: its end, or backward its start
      return ok();
    }
    // Still under the hold: a hotzone the failure may have left half converted is recovered
    // here as open would (docs/reencrypt.md §9 step 2), the boundary then moves past it; if that
    // fails too (or resilience none left nothing to recover from), its I/O fails with EIO
    // until the volume is closed and opened again.
    if (!s_->hot_committed && !s_->hot_writing) return converted;  // the data is untouched
    if (!s_->hot_committed || !recover_failed_step(at, end - at)) {
      s_->boundary->fence(at, end);
      s_->fenced = {at, end - at};
    } else {
      settle_boundary();
    }
    return converted;
  });
}

void ReencryptSession::settle_boundary() {
  const Context& c = s_->l.c;
  // The moved part of a decryption with a data shift, once converted, joins the plain side.
  if (c.decrypt_shift() && c.moved_done) s_->boundary->set_pending(0, 0);
  s_->boundary->move_to(c.offset);
}

bool ReencryptSession::recover_failed_step(std::uint64_t at, std::uint64_t len) {
  State& s = *s_;
  Context& c = s.l.c;
  const std::uint64_t before = c.offset;
  c.crashed = true;  // as the header says: the hotzone at `at` is in reencryption
  c.offset = at;
  c.hot_length = len;
  if (auto r = recover_if_crashed(*s.image, s.l, s.e); !r) {
    c.crashed = false;
    c.offset = before;
    return false;
  }
  s.bytes += len;
  return true;
}

ReencryptSession::Hotzone ReencryptSession::fenced_hotzone() const noexcept { return s_->fenced; }

void ReencryptSession::move_header(BackingStore& header) noexcept {
  s_->image = &header;
  s_->e.header = &header;
}

Result<void> ReencryptSession::convert_hotzone() {
  State& s = *s_;
  Context& c = s.l.c;
  Luks2State& st = s.l.st;
  BackingStore& image = *s.image;
  const auto [off, len] = next_hotzone();
  if (len == 0) return ok();
  const bool protect = c.resilience != "none";
  const std::string prot = protection(c, off);
  s.hot_committed = s.hot_writing = false;
  s.buf.resize(len);
  CRYPTMAP_TRY_VOID(set_segments(st.doc.root(), c, s.l.prev, s.l.fin, off, len, true));
  CRYPTMAP_TRY(sums, read_hotzone(s.e, off, s.buf));
  // Metadata commit point: the resilience data, then the header naming the hotzone.
  if (prot == "checksum") {
    CRYPTMAP_TRY_VOID(image.write_at(ByteOffset{c.area_offset}, sums));
    CRYPTMAP_TRY_VOID(image.sync());
    s.hot_committed = true;  // from the header write on (it may land before it fails)
    CRYPTMAP_TRY_VOID(commit_synced(image, st));
  } else if (prot == "journal") {
    if (len > c.area_size)
      return fail(make_error(Errc::kCorrupt, "LUKS2 reencrypt journal smaller than hotzone"));
    CRYPTMAP_TRY_VOID(image.write_at(ByteOffset{c.area_offset}, s.buf));
    CRYPTMAP_TRY_VOID(image.sync());
    s.hot_committed = true;
    CRYPTMAP_TRY_VOID(commit_synced(image, st));
  } else if (prot == "datashift") {
    // reencrypt_hotzone_protect_final: only the header (the source is not overwritten).
    s.hot_committed = true;
    CRYPTMAP_TRY_VOID(commit_synced(image, st));
  }
  s.hot_writing = true;
  CRYPTMAP_TRY_VOID(s.e.convert_write(off, s.buf));
  if (protect) CRYPTMAP_TRY_VOID(s.data.sync());
  CRYPTMAP_TRY_VOID(set_segments(st.doc.root(), c, s.l.prev, s.l.fin, off, len, false));
  // After the last hotzone the finish is the next commit: no header ever shows one regular
  // segment that might be the old one (init) or the new one (done).
  const bool last = c.decrypt_shift() ? off == 0
                    : c.forward()     ? off + len >= c.device_size
                                      : off == 0;
  if (protect && !last)
    CRYPTMAP_TRY_VOID(commit_synced(image, st));
  else
    s.dirty_none = !last;
  advance(c, off, len);
  s.bytes += len;
  s.hot_committed = s.hot_writing = false;
  return ok();
}

Result<ReencryptRunResult> ReencryptSession::stop() {
  State& s = *s_;
  std::fill(s.buf.begin(), s.buf.end(), std::byte{0});
  if (s.dirty_none) {
    CRYPTMAP_TRY_VOID(s.data.sync());
    CRYPTMAP_TRY_VOID(commit_synced(*s.image, s.l.st));
    s.dirty_none = false;
  }
  ReencryptRunResult result;
  result.bytes = s.bytes;
  if (s.l.c.done() >= s.l.c.device_size) {
    CRYPTMAP_TRY_VOID(s.data.sync());
    CRYPTMAP_TRY_VOID(finish(*s.image, s.data, s.l.st, s.l.c));
    CRYPTMAP_TRY_VOID(s.image->sync());
    result.finished = s.finished = true;
  }
  return result;
}

Result<ReencryptRunResult> reencrypt_run(BackingStore& image, std::span<const std::byte> passphrase,
                                         const ReencryptRunOptions& o) {
  CRYPTMAP_TRY(session, ReencryptSession::start(image, passphrase, o.max_hotzone_bytes, o.data));
  bool stop = o.progress && !o.progress(session->done_bytes(), session->total_bytes());
  while (!stop && session->next_hotzone().length > 0) {
    CRYPTMAP_TRY_VOID(session->step());
    if (o.progress && !o.progress(session->done_bytes(), session->total_bytes())) stop = true;
  }
  return session->stop();
}

namespace {

// The volume of a header in reencryption as it stands (docs/reencrypt.md §9): up to two crypt
// segments either side of the boundary, the old key followed by the new one.
Result<UnlockedVolume> paused_volume(const Loaded& l) {
  const Context& c = l.c;
  CRYPTMAP_TRY_VOID(check_servable(c));
  const auto old_bytes = static_cast<std::uint32_t>(l.vk_old.size());  // 0: encryption
  const auto new_bytes = static_cast<std::uint32_t>(l.vk_new.size());  // 0: decryption
  UnlockedVolume u;
  CRYPTMAP_TRY(key, SecretBytes::allocate(std::size_t{old_bytes} + new_bytes));
  if (old_bytes) std::memcpy(key.data(), l.vk_old.data(), old_bytes);
  if (new_bytes) std::memcpy(key.data() + old_bytes, l.vk_new.data(), new_bytes);
  u.volume_key = std::move(key);
  VolumeLayout& v = u.layout;
  v.type = VolumeType::kLuks2;
  // The cipher the volume ends up with: a decryption's is none (cipher_null, 0 bits).
  auto spec = crypto::CipherSpec::parse(c.new_seg.linear ? "cipher_null-ecb"
                                                         : c.new_seg.encryption.c_str());
  if (!spec) return fail(make_error(Errc::kUnsupported, "LUKS2 reencryption segment encryption"));
  v.cipher = *spec;
  v.key_bytes = old_bytes + new_bytes;
  v.sector_size = served_sector_size(c);
  v.size_bytes = c.device_size;
  v.uuid = l.h->disk().bin.uuid;
  v.label = l.h->disk().bin.label;
  format::set_persistent_flags(l.h->meta(), v);
  // [start, start + len) under `seg`: crypt with its slice of the key, or linear (plaintext).
  auto add = [&](const SegmentInfo& seg, std::uint32_t key_offset, std::uint32_t key_bytes,
                 std::uint64_t start, std::uint64_t len) -> Result<void> {
    if (len == 0) return ok();
    Segment s;
    s.offset_bytes = start;
    s.length_bytes = len;
    s.image_offset_bytes = c.data_offset + start;
    if (seg.linear) {
      s.kind = SegmentKind::kLinear;
    } else {
      if (!crypto::CipherSpec::parse(seg.encryption))
        return fail(make_error(Errc::kUnsupported, "LUKS2 reencryption segment encryption"));
      s.iv_offset = seg.iv_tweak + start / 512;
      s.cipher.encryption = seg.encryption;
      s.cipher.sector_size = seg.sector_size;
      s.cipher.key_offset = key_offset;
      s.cipher.key_bytes = key_bytes;
    }
    v.segments.push_back(std::move(s));
    return ok();
  };
  if (c.datashift()) {
    // A data shift: the header's regular segments as they are, each at its own offset (what
    // cryptsetup's LUKS2_assembly_multisegment_dmd maps; a "dynamic" last one to the end).
    const Json& root = l.st.doc.root();
    std::uint64_t start = 0;
    for (int id = 0;; ++id) {
      auto it = root["segments"].find(std::to_string(id));
      if (it == root["segments"].end()) break;
      if (is_backup(*it)) continue;
      const SegmentInfo i = segment_info(*it);
      if (start >= c.device_size) break;
      const std::uint64_t len =
          i.size ? std::min(*i.size, c.device_size - start) : c.device_size - start;
      if (len == 0) continue;
      Segment s;
      s.offset_bytes = start;
      s.length_bytes = len;
      s.image_offset_bytes = i.offset;
      if (i.linear) {
        s.kind = SegmentKind::kLinear;
      } else {
        if (!crypto::CipherSpec::parse(i.encryption))
          return fail(make_error(Errc::kUnsupported, "LUKS2 reencryption segment encryption"));
        const bool old_key = c.digest_old >= 0 && digest_of_segment(root, id) == c.digest_old;
        s.iv_offset = i.iv_tweak;
        s.cipher.encryption = i.encryption;
        s.cipher.sector_size = i.sector_size;
        s.cipher.key_offset = old_key ? 0 : old_bytes;
        s.cipher.key_bytes = old_key ? old_bytes : new_bytes;
      }
      v.segments.push_back(std::move(s));
      start += len;
    }
    if (start != c.device_size)
      return fail(make_error_fmt(
          Errc::kCorrupt, "LUKS2 reencryption segments", start, "cover %llu of %llu bytes of data",
          static_cast<unsigned long long>(start), static_cast<unsigned long long>(c.device_size)));
    u.keyslot = -1;
    return u;
  }
  // Forward: the new side before the boundary, the old one from it to the end; backward
  // (decryption) the other way round.
  const std::uint64_t b = c.offset, n = c.device_size;
  if (c.forward()) {
    CRYPTMAP_TRY_VOID(add(c.new_seg, old_bytes, new_bytes, 0, b));
    CRYPTMAP_TRY_VOID(add(c.old_seg, 0, old_bytes, b, n - b));
  } else {
    CRYPTMAP_TRY_VOID(add(c.old_seg, 0, old_bytes, 0, b));
    CRYPTMAP_TRY_VOID(add(c.new_seg, old_bytes, new_bytes, b, n - b));
  }
  u.keyslot = -1;
  return u;
}

}  // namespace

Result<UnlockedVolume> reencrypt_open(BackingStore& image, std::span<const std::byte> passphrase,
                                      BackingStore* data) {
  BackingStore& dat = data ? *data : image;
  CRYPTMAP_TRY(l, load_verified(image, dat.size_bytes(), passphrase));
  // What cannot be served is refused before a crashed hotzone is recovered: nothing written.
  CRYPTMAP_TRY_VOID(check_servable(l.c));
  Engine e{dat, &image, l.c, nullptr, nullptr, {}};
  CRYPTMAP_TRY_VOID(key_engine(e, l));
  CRYPTMAP_TRY_VOID(recover_if_crashed(image, l, e));
  return paused_volume(l);
}

Result<VolumeLayout> ReencryptSession::layout_now() const {
  // Not finished, or a finished decryption (the header has no key left: the volume is one
  // linear segment, as cryptsetup reloads an active device after it).
  if (!s_->finished || s_->l.c.new_seg.linear) {
    CRYPTMAP_TRY(u, paused_volume(s_->l));
    return std::move(u.layout);
  }
  CRYPTMAP_TRY(h, load_luks_header(*s_->image, std::nullopt));
  return h->layout();
}

}  // namespace cryptmap::volume

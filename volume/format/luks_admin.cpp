// LUKS header management, restating cryptsetup 2.6.1 (lib/setup.c
// crypt_format/_crypt_format_luks1/2, crypt_keyslot_add_by_*, crypt_keyslot_destroy,
// lib/luks1/keymanage.c LUKS_generate_phdr / LUKS_set_key / LUKS_del_key,
// lib/luks2/luks2_json_format.c LUKS2_generate_hdr / LUKS2_find_area_gap, luks2_keyslot_luks2.c
// luks2_keyslot_store, LUKS2_hdr_backup/restore).
#include "volume/format/luks_admin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/posix_io.h"
#include "base/unique_fd.h"
#include "crypto/auth_cipher.h"
#include "crypto/cipher_spec.h"
#include "crypto/hash.h"
#include "crypto/kdf.h"
#include "crypto/random.h"
#include "crypto/sector_cipher.h"
#include "volume/format/internal/base64.h"
#include "volume/format/internal/keyslot_crypt.h"
#include "volume/format/internal/luks2_edit.h"
#include "volume/format/internal/luks2_json_doc.h"
#include "volume/format/internal/luks_admin_impl.h"
#include "volume/format/internal/luks_impl.h"
#include "volume/format/internal/span_store.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

using Json = nlohmann::ordered_json;
using format::digest_iterations;
using format::guarded;
using format::KdfParams;
using format::luks2_kill;
using format::luks2_store_keyslot;
using format::write_random;

namespace {

constexpr std::uint64_t kLuks2HdrSize = 16384;
constexpr std::uint64_t kLuks2DefaultAreas = 16u << 20;  // LUKS2_DEFAULT_HDR_SIZE
constexpr std::uint64_t kAlignment = 1u << 20;           // default data alignment
constexpr std::uint32_t kDigestBenchMs = 125;            // LUKS_MKD_ITERATIONS_MS

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

Result<std::vector<std::byte>> random_vec(std::size_t n) {
  std::vector<std::byte> v(n);
  CRYPTMAP_TRY_VOID(crypto::random_bytes(v));
  return v;
}

std::uint32_t online_cpus() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<std::uint32_t>(n) : 1;
}

// Keyslot KDF parameters for a new keyslot (crypt_benchmark_pbkdf_internal).
Result<KdfParams> new_kdf(const PbkdfOptions& o, VolumeType type, std::size_t dk_len) {
  KdfParams k;
  k.type = o.type.empty() ? (type == VolumeType::kLuks1 ? "pbkdf2" : "argon2id") : o.type;
  if (type == VolumeType::kLuks1 && k.type != "pbkdf2")
    return fail(make_error(Errc::kInvalid, "Only PBKDF2 is supported in LUKS1."));
  CRYPTMAP_TRY(salt, random_vec(32));
  k.salt = std::move(salt);
  if (k.type == "pbkdf2") {
    k.hash = o.hash;
    if (!crypto::hash_digest_size(o.hash))
      return fail(make_error_fmt(Errc::kUnsupported, "Requested hash is not supported.", kNoObject,
                                 "%s", o.hash.c_str()));
    if (o.force_iterations) {
      if (*o.force_iterations < 1000)
        return fail(make_error(Errc::kInvalid,
                               "Forced iteration count is too low for PBKDF2 (minimum is 1000).",
                               *o.force_iterations));
      k.iterations = *o.force_iterations;
    } else {
      CRYPTMAP_TRY(it, crypto::pbkdf2_iterations_for(o.hash, dk_len, o.iter_time_ms));
      k.iterations = std::max<std::uint32_t>(it, 1000);
    }
  } else if (k.type == "argon2i" || k.type == "argon2id") {
    const auto t =
        k.type == "argon2i" ? crypto::Argon2Type::kArgon2i : crypto::Argon2Type::kArgon2id;
    const std::uint32_t par = std::max<std::uint32_t>(1, std::min(o.parallel, online_cpus()));
    if (o.force_iterations) {
      if (*o.force_iterations < 4)
        return fail(make_error(Errc::kInvalid,
                               "Forced iteration count is too low for Argon2 (minimum is 4).",
                               *o.force_iterations));
      k.time = *o.force_iterations;
      k.memory_kib = o.memory_kib;
      k.cpus = par;
      if (k.memory_kib < 8 * par || k.memory_kib > (4u << 20))
        return fail(make_error(Errc::kInvalid, "Argon2 --pbkdf-memory out of range", k.memory_kib));
    } else {
      CRYPTMAP_TRY(c, crypto::argon2_cost_for(t, o.iter_time_ms, o.memory_kib, par));
      k.time = c.time_cost;
      k.memory_kib = c.memory_kib;
      k.cpus = c.parallel;
    }
  } else {
    return fail(
        make_error_fmt(Errc::kInvalid, "Unknown PBKDF type", kNoObject, "'%s'", k.type.c_str()));
  }
  return k;
}

// Checks that the data cipher works with this key (LUKS_check_cipher).
Result<crypto::CipherSpec> check_cipher(const std::string& spec_text,
                                        std::span<const std::byte> vk) {
  auto spec = crypto::CipherSpec::parse(spec_text);
  if (!spec)
    return fail(make_error_fmt(Errc::kInvalid, "No known cipher specification pattern detected.",
                               kNoObject, "'%s'", spec_text.c_str()));
  crypto::SectorCipherConfig cfg;
  cfg.spec = *spec;
  auto c = crypto::make_sector_cipher(cfg, vk);
  if (!c) return fail(c.error());
  return spec;
}

Result<void> write_zero(BackingStore& s, std::uint64_t off, std::uint64_t len) {
  std::vector<std::byte> buf(std::min<std::uint64_t>(len, 1u << 20));
  while (len) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, buf.size()));
    CRYPTMAP_TRY_VOID(s.write_at(ByteOffset{off}, std::span(buf).first(n)));
    off += n;
    len -= n;
  }
  return ok();
}

std::pair<std::string, std::string> split_cipher(const std::string& spec) {
  auto dash = spec.find('-');
  if (dash == std::string::npos) return {spec, "cbc-plain"};
  return {spec.substr(0, dash), spec.substr(dash + 1)};
}

Result<SecretBytes> make_vk(std::uint32_t key_bits, std::span<const std::byte> given) {
  if (key_bits == 0 || key_bits % 8 || key_bits > 8 * 1024)
    return fail(make_error(Errc::kInvalid, "Key size must be a multiple of 8 bits", key_bits));
  if (!given.empty()) {
    if (given.size() != key_bits / 8)
      return fail(make_error(Errc::kInvalid, "Volume key does not match the requested key size",
                             given.size()));
    return SecretBytes::copy_of(given);
  }
  CRYPTMAP_TRY(vk, SecretBytes::allocate(key_bits / 8));
  CRYPTMAP_TRY_VOID(crypto::random_bytes(vk.span()));
  return vk;
}

bool is_zero(std::span<const std::byte> s) {
  return std::all_of(s.begin(), s.end(), [](std::byte b) { return b == std::byte{0}; });
}

// ---------------------------------------------------------------------------------------------
// LUKS1

Result<void> luks1_write_phdr(BackingStore& s, const luks1::Phdr& h) {
  std::array<std::byte, luks1::kPhdrSize> raw{};
  luks1::serialize_phdr(h, raw);
  CRYPTMAP_TRY_VOID(s.write_at(ByteOffset{0}, raw));
  return s.sync();
}

Result<int> luks1_set_key(BackingStore& s, luks1::Phdr& h, std::optional<int> slot,
                          std::span<const std::byte> vk, std::span<const std::byte> pass,
                          const PbkdfOptions& o) {
  int idx = -1;
  if (slot) {
    if (*slot < 0 || *slot >= static_cast<int>(luks1::kNumKeys))
      return fail(make_error_fmt(Errc::kInvalid, "keyslot out of range",
                                 static_cast<std::uint64_t>(*slot),
                                 "Key slot %d is invalid, please select between 0 and 7.", *slot));
    if (h.key_block[static_cast<std::size_t>(*slot)].active != luks1::kKeyDisabled)
      return fail(make_error_fmt(Errc::kBusy, "Key slot is active, purge first.",
                                 static_cast<std::uint64_t>(*slot),
                                 "Key slot %d is full, please select another one.", *slot));
    idx = *slot;
  } else {
    for (int i = 0; i < static_cast<int>(luks1::kNumKeys); ++i)
      if (h.key_block[static_cast<std::size_t>(i)].active == luks1::kKeyDisabled) {
        idx = i;
        break;
      }
    if (idx < 0) return fail(make_error(Errc::kNoSpace, "All key slots full."));
  }
  auto& kb = h.key_block[static_cast<std::size_t>(idx)];
  PbkdfOptions lo = o;
  lo.hash = h.hash();
  CRYPTMAP_TRY(kdf, new_kdf(lo, VolumeType::kLuks1, h.key_bytes));
  CRYPTMAP_TRY(dk, format::derive_key(kdf, pass, h.key_bytes));
  CRYPTMAP_TRY_VOID(format::store_keyslot_area(s, std::uint64_t{kb.key_material_offset} * 512,
                                               h.cipher_spec(), dk.span(), vk, luks1::kStripes,
                                               h.hash()));
  kb.password_iterations = kdf.iterations;
  std::copy(kdf.salt.begin(), kdf.salt.end(), kb.password_salt.begin());
  kb.active = luks1::kKeyEnabled;
  CRYPTMAP_TRY_VOID(luks1_write_phdr(s, h));
  return idx;
}

Result<void> luks1_kill(BackingStore& s, luks1::Phdr& h, int slot) {
  auto& kb = h.key_block[static_cast<std::size_t>(slot)];
  if (kb.active != luks1::kKeyEnabled)
    return fail(make_error_fmt(Errc::kNotFound, "Keyslot is not active.",
                               static_cast<std::uint64_t>(slot), "Keyslot %d is not active.",
                               slot));
  kb.active = luks1::kKeyDisabled;
  CRYPTMAP_TRY_VOID(write_random(s, std::uint64_t{kb.key_material_offset} * 512,
                                 format::keyslot_area_bytes(h.key_bytes, luks1::kStripes)));
  kb.password_salt.fill(std::byte{0});
  kb.password_iterations = 0;
  return luks1_write_phdr(s, h);
}

// The data alignment luksFormat rounds the data offset up to (LuksFormatOptions::
// align_payload_sectors), from the store's topology as cryptsetup's device_topology_alignment:
// the default unless the store's optimal I/O size does not divide it.
std::uint64_t payload_alignment(const LuksFormatOptions& o, const BackingStore& header) {
  if (o.align_payload_sectors && *o.align_payload_sectors) return *o.align_payload_sectors * 512;
  const std::uint64_t io = o.detached_header ? 0 : header.optimal_io_bytes();
  return io != 0 && kAlignment % io != 0 ? io : kAlignment;
}

// The data offset in bytes the options fix: --offset, or --align-payload with a detached header
// (cryptsetup's man page: "for a detached LUKS header, this option specifies the offset on the
// data device"; cryptsetup 2.6.1 then sizes the LUKS2 keyslots area as for --offset).
std::optional<std::uint64_t> fixed_data_offset(const LuksFormatOptions& o) {
  if (o.offset_sectors) return *o.offset_sectors * 512;
  if (o.detached_header && o.align_payload_sectors && *o.align_payload_sectors)
    return *o.align_payload_sectors * 512;
  return std::nullopt;
}

Result<luks1::Phdr> luks1_generate(const LuksFormatOptions& o, std::span<const std::byte> vk,
                                   const std::string& uuid, std::uint64_t alignment,
                                   std::uint64_t& header_sectors) {
  luks1::Phdr h;
  auto [name, mode] = split_cipher(o.cipher);
  if (name.size() > 31 || mode.size() > 31)
    return fail(make_error(Errc::kInvalid, "cipher name too long for LUKS1"));
  h.cipher_name = name;
  h.cipher_mode = mode;
  h.hash_spec = o.pbkdf.hash;
  std::transform(h.hash_spec.begin(), h.hash_spec.end(), h.hash_spec.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto hs = crypto::hash_digest_size(h.hash_spec);
  if (!hs || *hs < luks1::kDigestSize)
    return fail(make_error_fmt(Errc::kUnsupported, "Requested LUKS hash is not supported.",
                               kNoObject, "%s", h.hash_spec.c_str()));
  h.key_bytes = static_cast<std::uint32_t>(vk.size());
  const std::uint64_t afs = luks1::af_split_sectors(h.key_bytes, luks1::kStripes);
  std::uint64_t sec = luks1::kAlignKeyslotsBytes / 512;
  for (auto& kb : h.key_block) {
    kb.active = luks1::kKeyDisabled;
    kb.key_material_offset = static_cast<std::uint32_t>(sec);
    kb.stripes = luks1::kStripes;
    sec = round_up(sec + afs, luks1::kAlignKeyslotsBytes / 512);
  }
  header_sectors = sec;
  std::uint64_t payload = 0;
  if (auto fixed = fixed_data_offset(o))
    payload = *fixed / 512;
  else if (!o.detached_header)
    payload = round_up(sec, alignment / 512);
  if (payload && payload < sec)
    return fail(make_error(
        Errc::kInvalid, "Data offset for LUKS header must be either 0 or higher than header size.",
        payload));
  if (payload > 0xffffffffu)
    return fail(make_error(Errc::kInvalid, "LUKS1 data offset too large", payload));
  h.payload_offset = static_cast<std::uint32_t>(payload);
  CRYPTMAP_TRY(salt, random_vec(luks1::kSaltSize));
  std::copy(salt.begin(), salt.end(), h.mk_digest_salt.begin());
  CRYPTMAP_TRY(iters, digest_iterations(o.pbkdf, vk.size()));
  h.mk_digest_iterations = iters;
  CRYPTMAP_TRY_VOID(
      crypto::pbkdf2(h.hash(), vk, h.mk_digest_salt, h.mk_digest_iterations, h.mk_digest));
  h.uuid = uuid;
  return h;
}

// ---------------------------------------------------------------------------------------------
// LUKS2

}  // namespace

namespace admin {

Result<Luks2State> luks2_state(const format::Luks2Header& h) {
  Luks2State st;
  st.bin = h.disk().bin;
  const auto& mine = h.disk().bin.salt;
  const auto& other = h.disk().other_salt;
  st.salt1 = h.disk().using_primary ? mine : other;
  st.salt2 = h.disk().using_primary ? other : mine;
  if (is_zero(st.salt1)) CRYPTMAP_TRY_VOID(crypto::random_bytes(st.salt1));
  if (is_zero(st.salt2)) CRYPTMAP_TRY_VOID(crypto::random_bytes(st.salt2));
  CRYPTMAP_TRY(doc, luks2::JsonDoc::parse(h.meta().json_text));
  st.doc = std::move(doc);
  st.json_area = h.disk().bin.hdr_size - luks2::kHdrBinLen;
  return st;
}

Result<void> luks2_commit(BackingStore& s, Luks2State& st) {
  CRYPTMAP_TRY(text, st.doc.dump());
  CRYPTMAP_TRY(seq, luks2::write_luks2_header(s, st.bin, st.salt1, st.salt2, text));
  st.bin.seqid = seq;
  return ok();
}

Result<AnyHeader> load_any(const BackingStore& s, bool inspection) {
  auto prefix = format::read_prefix(s, 8);
  if (prefix && luks1::has_luks_magic(*prefix) && prefix->size() >= 8 &&
      load_be16(prefix->data() + 6) == 1) {
    CRYPTMAP_TRY(h, format::Luks1Header::load(s));
    return std::make_pair(std::move(h), std::unique_ptr<format::Luks2Header>());
  }
  CRYPTMAP_TRY(h, format::Luks2Header::load(s, inspection));
  return std::make_pair(std::unique_ptr<format::Luks1Header>(), std::move(h));
}

Result<std::uint64_t> luks2_find_gap(
    const luks2::Metadata& m, std::uint64_t len,
    std::span<const std::pair<std::uint64_t, std::uint64_t>> extra) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> used(extra.begin(), extra.end());
  for (const auto& k : m.keyslots) used.emplace_back(k.area_offset, k.area_size);
  std::sort(used.begin(), used.end());
  std::uint64_t off = 2 * (m.config.json_size + luks2::kHdrBinLen);
  for (const auto& [o, l] : used) {
    if (off < o && off + len <= o) break;
    off = std::max(off, o + l);
  }
  if (off + len > m.hdr_and_areas_size())
    return fail(make_error(Errc::kNoSpace, "Not enough space in header keyslot area."));
  return off;
}

}  // namespace admin

namespace {

using admin::load_any;
using admin::luks2_commit;
using admin::luks2_find_gap;
using admin::luks2_state;
using admin::Luks2State;

// Keyslot cipher: the data cipher unless it cannot encrypt keyslots (AEAD, random IV).
std::pair<std::string, std::uint32_t> keyslot_cipher(const luks2::Metadata& m,
                                                     std::uint32_t vk_len) {
  const luks2::Segment* seg = m.segment(0);
  if (seg) {
    auto spec = crypto::CipherSpec::parse(seg->encryption);
    if (spec && !spec->capi && spec->iv_mode != "random" && !seg->has_integrity)
      return {seg->encryption, vk_len};
  }
  return {"aes-xts-plain64", 64};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LUKS2 editing shared with reencryption (volume/format/internal/luks2_edit.h)

namespace format {

Error json_edit_error(const std::exception& e) {
  return make_error_fmt(Errc::kCorrupt, "LUKS2 JSON edit failed", kNoObject, "%s", e.what());
}

// Volume-key digest iterations: 125 ms worth, at least 1000 (1000 when benchmarks are off).
Result<std::uint32_t> digest_iterations(const PbkdfOptions& o, std::size_t vk_len) {
  if (o.force_iterations) return std::uint32_t{1000};
  CRYPTMAP_TRY(it, crypto::pbkdf2_iterations_for(o.hash, vk_len, kDigestBenchMs));
  return std::max<std::uint32_t>(it, 1000);
}

Result<void> write_random(BackingStore& s, std::uint64_t off, std::uint64_t len) {
  std::vector<std::byte> buf(std::min<std::uint64_t>(len, 1u << 20));
  while (len) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, buf.size()));
    CRYPTMAP_TRY_VOID(crypto::random_bytes(std::span(buf).first(n)));
    CRYPTMAP_TRY_VOID(s.write_at(ByteOffset{off}, std::span(buf).first(n)));
    off += n;
    len -= n;
  }
  return ok();
}

Result<int> luks2_store_keyslot(BackingStore& s, Luks2State& st, std::optional<int> slot,
                                std::span<const std::byte> vk, std::span<const std::byte> pass,
                                const PbkdfOptions& o, std::optional<int> replace_id,
                                std::optional<int> digest_id) {
  CRYPTMAP_TRY(m, st.doc.validate(st.json_area));
  int id = -1;
  if (replace_id) {
    id = *replace_id;
  } else if (slot) {
    if (*slot < 0 || *slot >= luks2::kMaxKeyslots)
      return fail(make_error_fmt(Errc::kInvalid, "keyslot out of range",
                                 static_cast<std::uint64_t>(*slot),
                                 "Key slot %d is invalid, please select between 0 and 31.", *slot));
    if (m.keyslot(*slot))
      return fail(make_error_fmt(Errc::kBusy, "Key slot is full", static_cast<std::uint64_t>(*slot),
                                 "Key slot %d is full, please select another one.", *slot));
    id = *slot;
  } else {
    for (int i = 0; i < luks2::kMaxKeyslots && id < 0; ++i)
      if (!m.keyslot(i)) id = i;
    if (id < 0) return fail(make_error(Errc::kNoSpace, "All key slots full."));
  }
  const luks2::Digest* dig = nullptr;
  if (digest_id) {
    for (const auto& d : m.digests)
      if (d.id == *digest_id) dig = &d;
  } else {
    dig = m.digest_for_segment(0);
  }
  if (!dig) return fail(make_error(Errc::kCorrupt, "LUKS2 segment 0 has no digest"));
  const std::uint64_t area_len = round_up(std::uint64_t{vk.size()} * luks2::kStripes, 4096);
  std::uint64_t area_off = 0;
  auto gap = luks2_find_gap(m, area_len);
  const luks2::Keyslot* old = replace_id ? m.keyslot(*replace_id) : nullptr;
  if (gap)
    area_off = *gap;
  else if (old && old->area_size >= area_len)
    area_off = old->area_offset;  // overwrite in place
  else
    return fail(gap.error());
  const auto cipher_choice = keyslot_cipher(m, static_cast<std::uint32_t>(vk.size()));
  const std::string enc = cipher_choice.first;  // (not a structured binding: lambdas capture it)
  const std::uint32_t enc_key = cipher_choice.second;
  CRYPTMAP_TRY(kdf, new_kdf(o, VolumeType::kLuks2, enc_key));
  CRYPTMAP_TRY(dk, format::derive_key(kdf, pass, enc_key));
  const std::string af_hash = o.hash;
  CRYPTMAP_TRY_VOID(
      format::store_keyslot_area(s, area_off, enc, dk.span(), vk, luks2::kStripes, af_hash));
  CRYPTMAP_TRY_VOID((guarded([&]() -> Result<void> {
    Json ks = Json::object();
    ks["type"] = "luks2";
    ks["key_size"] = vk.size();
    ks["af"] = {{"type", "luks1"}, {"stripes", luks2::kStripes}, {"hash", af_hash}};
    ks["area"] = {{"type", "raw"},
                  {"offset", std::to_string(area_off)},
                  {"size", std::to_string(area_len)},
                  {"encryption", enc},
                  {"key_size", enc_key}};
    Json k = Json::object();
    k["type"] = kdf.type;
    if (kdf.type == "pbkdf2") {
      k["hash"] = kdf.hash;
      k["iterations"] = kdf.iterations;
    } else {
      k["time"] = kdf.time;
      k["memory"] = kdf.memory_kib;
      k["cpus"] = kdf.cpus;
    }
    k["salt"] = format::base64_encode(kdf.salt);
    ks["kdf"] = k;
    Json& keyslots = st.doc.root()["keyslots"];
    const std::string key = std::to_string(id);
    if (old && keyslots[key].contains("priority")) ks["priority"] = keyslots[key]["priority"];
    keyslots[key] = ks;
    if (!old) st.doc.root()["digests"][std::to_string(dig->id)]["keyslots"].push_back(key);
    return ok();
  })));
  CRYPTMAP_TRY_VOID(luks2_commit(s, st));
  if (old && old->area_offset != area_off)
    CRYPTMAP_TRY_VOID(write_random(s, old->area_offset, old->area_size));
  return id;
}

Result<void> luks2_kill(BackingStore& s, Luks2State& st, int slot) {
  CRYPTMAP_TRY(m, st.doc.validate(st.json_area));
  const luks2::Keyslot* k = m.keyslot(slot);
  if (!k)
    return fail(make_error_fmt(Errc::kNotFound, "Keyslot is not active.",
                               static_cast<std::uint64_t>(slot), "Keyslot %d is not active.",
                               slot));
  const std::uint64_t off = k->area_offset, len = k->area_size;
  CRYPTMAP_TRY_VOID((guarded([&]() -> Result<void> {
    const std::string key = std::to_string(slot);
    st.doc.root()["keyslots"].erase(key);
    for (const char* section : {"digests", "tokens"})
      for (auto& [id, obj] : st.doc.root()[section].items()) {
        (void)id;
        if (!obj.contains("keyslots")) continue;
        Json& arr = obj["keyslots"];
        Json kept = Json::array();
        for (const auto& e : arr)
          if (!(e.is_string() && e.get<std::string>() == key)) kept.push_back(e);
        arr = kept;
      }
    return ok();
  })));
  // Wipe the material first (cryptsetup LUKS2_keyslot_wipe), then drop it from the metadata.
  CRYPTMAP_TRY_VOID(write_random(s, off, len));
  return luks2_commit(s, st);
}

}  // namespace format

Result<std::string> random_uuid() {
  std::array<std::byte, 16> r{};
  CRYPTMAP_TRY_VOID(crypto::random_bytes(r));
  r[6] = (r[6] & std::byte{0x0f}) | std::byte{0x40};
  r[8] = (r[8] & std::byte{0x3f}) | std::byte{0x80};
  const std::string h = to_hex(r);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20);
}

namespace {
bool valid_uuid(const std::string& u) {
  if (u.size() != 36) return false;
  for (std::size_t i = 0; i < u.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (u[i] != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(u[i]))) {
      return false;
    }
  }
  return true;
}

Result<std::uint64_t> luks2_keyslots_size(const LuksFormatOptions& o) {
  std::uint64_t ks = kLuks2DefaultAreas - 2 * kLuks2HdrSize;
  if (auto fixed = fixed_data_offset(o)) {
    const std::uint64_t data_off = *fixed;
    if (data_off < 2 * kLuks2HdrSize && data_off != 0)
      return fail(
          make_error(Errc::kInvalid, "Requested data offset is too small.", data_off / 512));
    if (data_off)
      ks = std::min<std::uint64_t>(data_off - 2 * kLuks2HdrSize, luks2::kMaxKeyslotsSize);
    ks -= ks % 4096;
  }
  return ks;
}
}  // namespace

Result<std::uint64_t> luks_header_bytes(const LuksFormatOptions& o) {
  if (o.type == VolumeType::kLuks1) {
    const std::uint64_t afs = luks1::af_split_sectors(o.key_bits / 8, luks1::kStripes);
    std::uint64_t sec = 8;
    for (std::uint32_t i = 0; i < luks1::kNumKeys; ++i) sec = round_up(sec + afs, 8);
    return sec * 512;
  }
  CRYPTMAP_TRY(ks, luks2_keyslots_size(o));
  return 2 * kLuks2HdrSize + ks;
}

Result<FormatResult> luks_format(BackingStore& header, const LuksFormatOptions& o,
                                 std::span<const std::byte> passphrase,
                                 std::span<const std::byte> volume_key) {
  if (o.type == VolumeType::kPlain)
    return fail(make_error(Errc::kInvalid, "luksFormat: plain has no header"));
  std::optional<crypto::AuthComposition> auth;
  if (!o.integrity.empty()) {
    if (o.type != VolumeType::kLuks2)
      return fail(
          make_error(Errc::kInvalid, "Integrity option can be used only for LUKS2 device."));
    CRYPTMAP_TRY(c, crypto::auth_composition(o.cipher, o.integrity));
    auth = c;
  }
  const std::uint32_t vk_bits =
      o.key_bits + (auth ? static_cast<std::uint32_t>(auth->mac_key_size * 8) : 0);
  CRYPTMAP_TRY(vk, make_vk(vk_bits, volume_key));
  crypto::CipherSpec spec;
  if (auth) {
    // Validates the key split (cipher key ‖ MAC key) with the real cipher.
    CRYPTMAP_TRY(ac, crypto::make_auth_sector_cipher(o.cipher, o.integrity, 4096, vk.span()));
    (void)ac;
  } else {
    CRYPTMAP_TRY(sp, check_cipher(o.cipher, vk.span()));
    spec = sp;
  }
  std::string uuid = o.uuid;
  if (uuid.empty()) {
    CRYPTMAP_TRY(u, random_uuid());
    uuid = u;
  } else if (!valid_uuid(uuid)) {
    return fail(make_error_fmt(Errc::kInvalid, "Wrong LUKS UUID format provided.", kNoObject, "%s",
                               uuid.c_str()));
  }
  CRYPTMAP_TRY(need, luks_header_bytes(o));
  if (header.size_bytes() < need)
    return fail(make_error_fmt(Errc::kNoSpace, "Device is too small for the LUKS header",
                               header.size_bytes(), "%s: needs at least %llu bytes",
                               header.name().c_str(), static_cast<unsigned long long>(need)));
  FormatResult out;
  out.uuid = uuid;
  if (o.type == VolumeType::kLuks1) {
    std::uint64_t hdr_sectors = 0;
    CRYPTMAP_TRY(h, luks1_generate(o, vk.span(), uuid, payload_alignment(o, header), hdr_sectors));
    if (!o.detached_header && o.data_device_bytes &&
        o.data_device_bytes <= std::uint64_t{h.payload_offset} * 512)
      return fail(
          make_error(Errc::kNoSpace, "Device is too small: no room for data after the header"));
    // LUKS_wipe_header_areas: zero the header area, random keyslot areas.
    const std::uint64_t zero_len = h.payload_offset ? std::uint64_t{h.payload_offset} * 512 : 4096;
    CRYPTMAP_TRY_VOID(
        write_zero(header, 0, std::min<std::uint64_t>(zero_len, header.size_bytes())));
    for (const auto& kb : h.key_block)
      CRYPTMAP_TRY_VOID(write_random(header, std::uint64_t{kb.key_material_offset} * 512,
                                     format::keyslot_area_bytes(h.key_bytes, luks1::kStripes)));
    CRYPTMAP_TRY_VOID(luks1_write_phdr(header, h));
    CRYPTMAP_TRY(slot, luks1_set_key(header, h, o.keyslot, vk.span(), passphrase, o.pbkdf));
    out.keyslot = slot;
    out.volume_key = std::move(vk);
    return out;
  }

  // LUKS2 (LUKS2_generate_hdr + LUKS2_wipe_header_areas + keyslot add).
  CRYPTMAP_TRY(keyslots_size, luks2_keyslots_size(o));
  std::uint64_t data_offset = 0;
  if (auto fixed = fixed_data_offset(o))
    data_offset = *fixed;
  else if (!o.detached_header)
    data_offset = round_up(2 * kLuks2HdrSize + keyslots_size, payload_alignment(o, header));
  std::uint32_t ss = o.sector_size;
  if (ss == 0) {
    const std::uint64_t payload =
        o.data_device_bytes > data_offset ? o.data_device_bytes - data_offset : 0;
    ss = (data_offset % 4096 == 0 && payload % 4096 == 0) ? 4096 : 512;
  }
  if (ss < 512 || ss > 4096 || (ss & (ss - 1)))
    return fail(make_error(Errc::kInvalid, "Unsupported encryption sector size.", ss));
  if (data_offset % ss)
    return fail(make_error(
        Errc::kInvalid, "Data offset is not aligned to the encryption sector size.", data_offset));
  if (!o.detached_header && o.data_device_bytes && o.data_device_bytes <= data_offset)
    return fail(
        make_error(Errc::kNoSpace, "Device is too small: no room for data after the header"));
  if (o.label.size() > 47 || o.subsystem.size() > 47)
    return fail(make_error(Errc::kInvalid, "LUKS2 label/subsystem longer than 47 characters"));
  auto hs = crypto::hash_digest_size(o.pbkdf.hash);
  if (!hs)
    return fail(make_error_fmt(Errc::kUnsupported, "Requested hash is not supported.", kNoObject,
                               "%s", o.pbkdf.hash.c_str()));
  CRYPTMAP_TRY(dsalt, random_vec(32));
  CRYPTMAP_TRY(diters, digest_iterations(o.pbkdf, vk.size()));
  std::vector<std::byte> digest(*hs);
  CRYPTMAP_TRY_VOID(crypto::pbkdf2(o.pbkdf.hash, vk.span(), dsalt, diters, digest));
  Luks2State st;
  st.json_area = kLuks2HdrSize - luks2::kHdrBinLen;
  st.bin.hdr_size = kLuks2HdrSize;
  st.bin.seqid = 0;
  st.bin.uuid = uuid;
  st.bin.label = o.label;
  st.bin.subsystem = o.subsystem;
  st.bin.checksum_alg = "sha256";
  CRYPTMAP_TRY_VOID(crypto::random_bytes(st.salt1));
  CRYPTMAP_TRY_VOID(crypto::random_bytes(st.salt2));
  CRYPTMAP_TRY(text, guarded([&]() -> Result<std::string> {
                 Json root = Json::object();
                 root["keyslots"] = Json::object();
                 root["tokens"] = Json::object();
                 Json seg = Json::object();
                 seg["type"] = "crypt";
                 seg["offset"] = std::to_string(data_offset);
                 seg["size"] = "dynamic";
                 seg["iv_tweak"] = "0";
                 seg["encryption"] = o.cipher;
                 seg["sector_size"] = ss;
                 if (auth)
                   seg["integrity"] = Json::object({{"type", o.integrity},
                                                    {"journal_encryption", "none"},
                                                    {"journal_integrity", "none"}});
                 root["segments"] = Json::object({{"0", seg}});
                 Json d = Json::object();
                 d["type"] = "pbkdf2";
                 d["keyslots"] = Json::array();
                 d["segments"] = Json::array({"0"});
                 d["hash"] = o.pbkdf.hash;
                 d["iterations"] = diters;
                 d["salt"] = format::base64_encode(dsalt);
                 d["digest"] = format::base64_encode(digest);
                 root["digests"] = Json::object({{"0", d}});
                 root["config"] = Json::object({{"json_size", std::to_string(st.json_area)},
                                                {"keyslots_size", std::to_string(keyslots_size)}});
                 return root.dump();
               }));
  CRYPTMAP_TRY(doc, luks2::JsonDoc::parse(text));
  st.doc = std::move(doc);
  (void)spec;
  // Zero both metadata copies (or the first 4 KiB of a detached header), random keyslots area.
  CRYPTMAP_TRY_VOID(write_zero(header, 0, 2 * kLuks2HdrSize));
  CRYPTMAP_TRY_VOID(write_random(header, 2 * kLuks2HdrSize, keyslots_size));
  CRYPTMAP_TRY_VOID(luks2_commit(header, st));
  CRYPTMAP_TRY(slot, luks2_store_keyslot(header, st, o.keyslot, vk.span(), passphrase, o.pbkdf));
  out.keyslot = slot;
  out.volume_key = std::move(vk);
  return out;
}

Result<int> luks_add_key(BackingStore& header, std::span<const std::byte> passphrase,
                         std::optional<int> unlock_slot, std::span<const std::byte> new_passphrase,
                         std::optional<int> new_slot, const PbkdfOptions& pbkdf,
                         std::span<const std::byte> volume_key) {
  CRYPTMAP_TRY(hs, load_any(header));
  auto& [h1, h2] = hs;
  const LuksHeader& h = h1 ? static_cast<const LuksHeader&>(*h1) : *h2;
  SecretBytes vk;
  if (!volume_key.empty()) {
    CRYPTMAP_TRY(v, SecretBytes::copy_of(volume_key));
    if (h1)
      CRYPTMAP_TRY_VOID(h1->verify_volume_key(v.span()));
    else
      CRYPTMAP_TRY_VOID(h2->verify_volume_key(v.span(), h2->meta().digest_for_segment(0)->id));
    vk = std::move(v);
  } else {
    CRYPTMAP_TRY(k, h.unlock(passphrase, unlock_slot));
    vk = std::move(k.volume_key);
  }
  if (h1) {
    luks1::Phdr p = h1->phdr();
    return luks1_set_key(header, p, new_slot, vk.span(), new_passphrase, pbkdf);
  }
  CRYPTMAP_TRY(st, luks2_state(*h2));
  return luks2_store_keyslot(header, st, new_slot, vk.span(), new_passphrase, pbkdf);
}

Result<int> luks_remove_key(BackingStore& header, std::span<const std::byte> passphrase) {
  CRYPTMAP_TRY(hs, load_any(header));
  auto& [h1, h2] = hs;
  const LuksHeader& h = h1 ? static_cast<const LuksHeader&>(*h1) : *h2;
  CRYPTMAP_TRY(k, h.unlock(passphrase, std::nullopt));
  CRYPTMAP_TRY_VOID(luks_kill_slot(header, k.keyslot));
  return k.keyslot;
}

Result<void> luks_kill_slot(BackingStore& header, int slot) {
  CRYPTMAP_TRY(hs, load_any(header));
  auto& [h1, h2] = hs;
  if (h1) {
    if (slot < 0 || slot >= static_cast<int>(luks1::kNumKeys))
      return fail(
          make_error_fmt(Errc::kInvalid, "keyslot out of range", static_cast<std::uint64_t>(slot),
                         "Key slot %d is invalid, please select keyslot between 0 and 7.", slot));
    luks1::Phdr p = h1->phdr();
    return luks1_kill(header, p, slot);
  }
  if (slot < 0 || slot >= luks2::kMaxKeyslots)
    return fail(
        make_error_fmt(Errc::kInvalid, "keyslot out of range", static_cast<std::uint64_t>(slot),
                       "Key slot %d is invalid, please select keyslot between 0 and 31.", slot));
  CRYPTMAP_TRY(st, luks2_state(*h2));
  return luks2_kill(header, st, slot);
}

Result<int> luks_erase(BackingStore& header) {
  CRYPTMAP_TRY(hs, load_any(header));
  int destroyed = 0;
  if (hs.first) {
    luks1::Phdr p = hs.first->phdr();
    for (int slot = 0; slot < static_cast<int>(luks1::kNumKeys); ++slot) {
      if (p.key_block[static_cast<std::size_t>(slot)].active != luks1::kKeyEnabled) continue;
      CRYPTMAP_TRY_VOID(luks1_kill(header, p, slot));
      ++destroyed;
    }
    return destroyed;
  }
  CRYPTMAP_TRY(st, luks2_state(*hs.second));
  CRYPTMAP_TRY(m, st.doc.validate(st.json_area));
  std::vector<int> ids;
  for (const luks2::Keyslot& k : m.keyslots) ids.push_back(k.id);
  std::sort(ids.begin(), ids.end());
  for (int id : ids) {
    CRYPTMAP_TRY_VOID(luks2_kill(header, st, id));
    ++destroyed;
  }
  return destroyed;
}

Result<int> luks_change_key(BackingStore& header, std::span<const std::byte> old_passphrase,
                            std::optional<int> slot, std::span<const std::byte> new_passphrase,
                            const PbkdfOptions& pbkdf) {
  CRYPTMAP_TRY(hs, load_any(header));
  auto& [h1, h2] = hs;
  const LuksHeader& h = h1 ? static_cast<const LuksHeader&>(*h1) : *h2;
  CRYPTMAP_TRY(k, h.unlock(old_passphrase, slot));
  if (h1) {
    luks1::Phdr p = h1->phdr();
    std::optional<int> free_slot;
    for (int i = 0; i < static_cast<int>(luks1::kNumKeys) && !free_slot; ++i)
      if (p.key_block[static_cast<std::size_t>(i)].active == luks1::kKeyDisabled) free_slot = i;
    if (free_slot) {
      CRYPTMAP_TRY(ns,
                   luks1_set_key(header, p, free_slot, k.volume_key.span(), new_passphrase, pbkdf));
      CRYPTMAP_TRY_VOID(luks1_kill(header, p, k.keyslot));
      return ns;
    }
    // No free slot: overwrite in place (cryptsetup warns about the risk).
    p.key_block[static_cast<std::size_t>(k.keyslot)].active = luks1::kKeyDisabled;
    return luks1_set_key(header, p, k.keyslot, k.volume_key.span(), new_passphrase, pbkdf);
  }
  CRYPTMAP_TRY(st, luks2_state(*h2));
  return luks2_store_keyslot(header, st, std::nullopt, k.volume_key.span(), new_passphrase, pbkdf,
                             k.keyslot);
}

bool luks_keyslot_active(const BackingStore& header, int slot) {
  auto hs = load_any(header, true);
  if (!hs || slot < 0) return false;
  if (hs->first)
    return slot < static_cast<int>(luks1::kNumKeys) &&
           hs->first->phdr().key_block[static_cast<std::size_t>(slot)].active == luks1::kKeyEnabled;
  return hs->second->meta().keyslot(slot) != nullptr;
}

bool is_luks(const BackingStore& header, std::optional<VolumeType> type) {
  auto hs = load_any(header, true);
  if (!hs) return false;
  if (!type) return true;
  return (*type == VolumeType::kLuks1) == static_cast<bool>(hs->first);
}

Result<std::string> luks_uuid(const BackingStore& header) {
  CRYPTMAP_TRY(hs, load_any(header, true));
  return hs.first ? hs.first->phdr().uuid : hs.second->disk().bin.uuid;
}

Result<std::string> luks_set_uuid(BackingStore& header, const std::string& uuid_in) {
  std::string uuid = uuid_in;
  if (uuid.empty()) {
    CRYPTMAP_TRY(u, random_uuid());
    uuid = u;
  } else if (!valid_uuid(uuid)) {
    return fail(make_error_fmt(Errc::kInvalid, "Wrong LUKS UUID format provided.", kNoObject, "%s",
                               uuid.c_str()));
  }
  CRYPTMAP_TRY(hs, load_any(header));
  if (hs.first) {
    luks1::Phdr p = hs.first->phdr();
    p.uuid = uuid;
    CRYPTMAP_TRY_VOID(luks1_write_phdr(header, p));
    return uuid;
  }
  CRYPTMAP_TRY(st, luks2_state(*hs.second));
  st.bin.uuid = uuid;
  CRYPTMAP_TRY_VOID(luks2_commit(header, st));
  return uuid;
}

Result<void> luks_config(BackingStore& header, const LuksConfig& c) {
  CRYPTMAP_TRY(hs, load_any(header));
  if (hs.first)
    return fail(make_error(Errc::kInvalid, "config: Device is not a valid LUKS2 device."));
  CRYPTMAP_TRY(st, luks2_state(*hs.second));
  if (c.label || c.subsystem) {
    for (const std::optional<std::string>* l : {&c.label, &c.subsystem})
      if (*l && (*l)->size() >= 48)
        return fail(make_error_fmt(Errc::kInvalid, "config: label", (*l)->size(), "%s",
                                   "Label or subsystem too long: at most 47 bytes."));
  }
  if (c.priority_slot) {
    const int slot = *c.priority_slot;
    if (c.priority < 0 || c.priority > 2)
      return fail(make_error(Errc::kInvalid, "config: priority (0 ignore, 1 normal, 2 prefer)"));
    CRYPTMAP_TRY(m, st.doc.validate(st.json_area));
    if (m.keyslot(slot) == nullptr)
      return fail(make_error_fmt(Errc::kInvalid, "config: keyslot",
                                 static_cast<std::uint64_t>(slot), "Keyslot %d is not active.",
                                 slot));
    CRYPTMAP_TRY_VOID((guarded([&]() -> Result<void> {
      Json& ks = st.doc.root()["keyslots"][std::to_string(slot)];
      if (c.priority == 1)
        ks.erase("priority");  // normal is the absence of the field (LUKS2_keyslot_priority_set)
      else
        ks["priority"] = c.priority;
      return ok();
    })));
    CRYPTMAP_TRY_VOID(st.doc.validate(st.json_area));
    CRYPTMAP_TRY_VOID(luks2_commit(header, st));
  }
  if (c.flags) {
    static constexpr const char* kOrder[] = {"allow-discards",         "same-cpu-crypt",
                                             "submit-from-crypt-cpus", "no-journal",
                                             "no-read-workqueue",      "no-write-workqueue"};
    for (const std::string& f : *c.flags)
      if (std::find(std::begin(kOrder), std::end(kOrder), f) == std::end(kOrder))
        return fail(make_error_fmt(Errc::kInvalid, "config: persistent flag", kNoObject,
                                   "unknown flag %s", f.c_str()));
    CRYPTMAP_TRY_VOID((guarded([&]() -> Result<void> {
      Json list = Json::array();
      for (const char* name : kOrder)
        if (std::find(c.flags->begin(), c.flags->end(), name) != c.flags->end())
          list.push_back(name);
      st.doc.root()["config"]["flags"] = std::move(list);
      return ok();
    })));
    CRYPTMAP_TRY_VOID(st.doc.validate(st.json_area));
    CRYPTMAP_TRY_VOID(luks2_commit(header, st));
  }
  if (c.label || c.subsystem) {
    st.bin.label = c.label.value_or("");
    st.bin.subsystem = c.subsystem.value_or("");
    CRYPTMAP_TRY_VOID(luks2_commit(header, st));
  }
  return ok();
}

Result<void> luks_header_backup(const BackingStore& header, const std::string& backup_file) {
  CRYPTMAP_TRY(hs, load_any(header, true));
  std::uint64_t len = 0;
  if (hs.first)
    len = round_up(luks1::device_sectors(hs.first->phdr()) * 512, 4096);
  else
    len = hs.second->meta().hdr_and_areas_size();
  len = std::min(len, header.size_bytes());
  std::vector<std::byte> buf(len);
  CRYPTMAP_TRY_VOID(header.read_at(ByteOffset{0}, buf));
  if (hs.first &&
      hs.first->phdr().key_block[0].key_material_offset * 512ull == luks1::kAlignKeyslotsBytes)
    std::fill(buf.begin() + luks1::kPhdrSize, buf.begin() + luks1::kAlignKeyslotsBytes,
              std::byte{0});
  UniqueFd fd(::open(backup_file.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, S_IRUSR));
  if (!fd.valid()) {
    if (errno == EEXIST)
      return fail(make_error_fmt(Errc::kBusy, "Requested header backup file already exists.",
                                 kNoObject, "%s", backup_file.c_str()));
    return fail(make_sys_error(errno, "Cannot create header backup file."));
  }
  CRYPTMAP_TRY_VOID(pwrite_full(
      fd.get(), 0, buf,
      {"Cannot write header backup file.", "Cannot write header backup file.", backup_file}));
  if (::fsync(fd.get()) != 0)
    return fail(make_sys_error(errno, "Cannot write header backup file."));
  return ok();
}

Result<void> luks_header_restore(BackingStore& header, const std::string& backup_file) {
  UniqueFd fd(::open(backup_file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail(make_sys_error(errno, "Cannot open header backup file."));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return fail(make_sys_error(errno, "Cannot open header backup file."));
  if (st.st_size <= 0 || st.st_size > (130 << 20))
    return fail(make_error(Errc::kInvalid, "Backup file does not contain valid LUKS header."));
  std::vector<std::byte> buf(static_cast<std::size_t>(st.st_size));
  CRYPTMAP_TRY_VOID(pread_full(
      fd.get(), 0, buf,
      {"Cannot read header backup file.", "Cannot read header backup file.", backup_file}));
  format::SpanStore backup(buf, backup_file);
  auto bh = load_any(backup, true);
  if (!bh)
    return fail(make_error_fmt(Errc::kInvalid, "Backup file does not contain valid LUKS header.",
                               kNoObject, "%s", bh.error().message().c_str()));
  std::uint64_t len = 0, data_off = 0, key_bytes = 0;
  if (bh->first) {
    len = luks1::device_sectors(bh->first->phdr()) * 512;
    data_off = bh->first->layout().data_offset_bytes;
    key_bytes = bh->first->phdr().key_bytes;
  } else {
    len = bh->second->meta().hdr_and_areas_size();
    data_off = bh->second->layout().data_offset_bytes;
    key_bytes = bh->second->layout().key_bytes;
  }
  if (len > buf.size() || len > header.size_bytes())
    return fail(make_error(
        Errc::kInvalid,
        "Backup file does not contain valid LUKS header (too short / device too small)."));
  if (auto cur = load_any(header, true)) {
    const VolumeLayout l = cur->first ? cur->first->layout() : cur->second->layout();
    if (l.data_offset_bytes != data_off || (l.key_bytes && l.key_bytes != key_bytes))
      return fail(make_error(
          Errc::kInvalid, "Data offset or key size differs on device and backup, restore failed."));
  }
  CRYPTMAP_TRY_VOID(header.write_at(ByteOffset{0}, std::span(buf).first(len)));
  return header.sync();
}

Result<std::string> luks_repair(BackingStore& header) {
  auto prefix = format::read_prefix(header, 8);
  if (prefix && luks1::has_luks_magic(*prefix) && prefix->size() >= 8 &&
      load_be16(prefix->data() + 6) == 1) {
    CRYPTMAP_TRY(h, format::Luks1Header::load(header));
    (void)h;
    return std::string("No known problems detected for LUKS header.");
  }
  CRYPTMAP_TRY(disk, luks2::read_luks2_header(header, header.name()));
  if (disk.primary == luks2::CopyState::kOk && disk.secondary == luks2::CopyState::kOk)
    return std::string("No known problems detected for LUKS header.");
  // Rewrite both copies from the valid one; the damaged copy gets a fresh salt.
  std::array<std::byte, 64> s1{}, s2{};
  CRYPTMAP_TRY_VOID(crypto::random_bytes(s1));
  CRYPTMAP_TRY_VOID(crypto::random_bytes(s2));
  if (disk.using_primary)
    s1 = disk.bin.salt;
  else
    s2 = disk.bin.salt;
  luks2::BinHeader b = disk.bin;
  b.seqid = disk.bin.seqid;  // write adds one
  CRYPTMAP_TRY_VOID(luks2::write_luks2_header(header, b, s1, s2, disk.meta.json_text));
  return std::string(disk.using_primary ? "Secondary LUKS2 header repaired."
                                        : "Primary LUKS2 header repaired.");
}

}  // namespace cryptmap::volume

// load_luks_header() and the LUKS1/LUKS2 unlock paths, restating cryptsetup 2.6.1
// (lib/setup.c _crypt_load_luks, lib/luks1/keymanage.c LUKS_open_key_with_hdr,
// lib/luks2/luks2_keyslot.c LUKS2_keyslot_open, luks2_digest_pbkdf2.c PBKDF2_digest_verify).
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "base/bytes.h"
#include "crypto/auth_cipher.h"
#include "crypto/hash.h"
#include "crypto/kdf.h"
#include "volume/format/internal/base64.h"
#include "volume/format/internal/keyslot_crypt.h"
#include "volume/format/internal/luks_impl.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

using format::Luks1Header;
using format::Luks2Header;

namespace format {
namespace {

Error no_key() {
  return make_error_fmt(Errc::kBadKey, "No key available with this passphrase.", kNoObject, "%s",
                        "");
}
Error no_usable_keyslot() { return make_error(Errc::kNotFound, "No usable keyslot is available."); }
Error not_luks(const std::string& dev) {
  return make_error_fmt(Errc::kInvalid, "not a valid LUKS device", kNoObject,
                        "Device %s is not a valid LUKS device.", dev.c_str());
}

Result<crypto::CipherSpec> parse_cipher(const std::string& spec, const char* what) {
  auto c = crypto::CipherSpec::parse(spec);
  if (!c)
    return fail(make_error_fmt(Errc::kUnsupported, what, kNoObject, "cipher '%s'", spec.c_str()));
  return c;
}

// cryptsetup's keyslot search (LUKS_open_key_with_hdr / LUKS2_keyslot_open), shared by both
// versions: an explicit slot is tried alone; otherwise the slots of `order` are tried in turn,
// skipping wrong passphrases (EPERM) and unusable slots (ENOENT) and stopping at anything else.
// `open_slot(int)` returns the volume key or the slot's error.
template <class OpenSlot, class Order>
Result<UnlockedKey> search_keyslots(std::optional<int> keyslot, const Order& order,
                                    OpenSlot&& open_slot) {
  if (keyslot) {
    auto r = open_slot(*keyslot);
    if (!r) {
      if (r.error().code == Errc::kNotFound) return fail(no_usable_keyslot());
      return fail(r.error());
    }
    return UnlockedKey{std::move(*r), *keyslot};
  }
  bool tried = false;
  for (int slot : order) {
    auto r = open_slot(slot);
    if (r) return UnlockedKey{std::move(*r), slot};
    if (r.error().code == Errc::kBadKey) {
      tried = true;
      continue;
    }
    if (r.error().code == Errc::kNotFound) continue;
    return fail(r.error());  // cryptsetup stops on anything but EPERM/ENOENT
  }
  return fail(tried ? no_key() : no_usable_keyslot());
}

}  // namespace

Result<std::vector<std::byte>> read_prefix(const BackingStore& store, std::size_t n) {
  const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(n, store.size_bytes()));
  std::vector<std::byte> buf(len);
  CRYPTMAP_TRY_VOID(store.read_at(ByteOffset{0}, buf));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// LUKS1

Result<std::unique_ptr<Luks1Header>> Luks1Header::load(const BackingStore& store) {
  CRYPTMAP_TRY(raw, read_prefix(store, luks1::kPhdrSize));
  CRYPTMAP_TRY(phdr, luks1::parse_phdr(raw, store.size_bytes(), store.name()));
  auto h = std::unique_ptr<Luks1Header>(new Luks1Header());
  h->device_ = store.name();
  const std::uint64_t area_len = keyslot_area_bytes(phdr.key_bytes, luks1::kStripes);
  for (std::uint32_t i = 0; i < luks1::kNumKeys; ++i) {
    if (phdr.key_block[i].active != luks1::kKeyEnabled) continue;
    auto& a = h->areas_[i];
    a.resize(area_len);
    CRYPTMAP_TRY_VOID(
        store.read_at(ByteOffset{std::uint64_t{phdr.key_block[i].key_material_offset} * 512}, a));
  }
  VolumeLayout& l = h->layout_;
  l.type = VolumeType::kLuks1;
  CRYPTMAP_TRY(spec, parse_cipher(phdr.cipher_spec(), "LUKS1 cipherName/cipherMode"));
  l.cipher = spec;
  l.key_bytes = phdr.key_bytes;
  l.sector_size = 512;
  l.iv_large_sectors = false;
  l.iv_offset = 0;
  l.data_offset_bytes = std::uint64_t{phdr.payload_offset} * 512;
  l.size_bytes = 0;
  l.uuid = phdr.uuid;
  h->phdr_ = std::move(phdr);
  return h;
}

Result<void> Luks1Header::verify_volume_key(std::span<const std::byte> vk) const {
  std::array<std::byte, luks1::kDigestSize> check{};
  CRYPTMAP_TRY_VOID(
      crypto::pbkdf2(phdr_.hash(), vk, phdr_.mk_digest_salt, phdr_.mk_digest_iterations, check));
  if (!constant_time_equal(check, phdr_.mk_digest)) return fail(no_key());
  return ok();
}

Result<SecretBytes> Luks1Header::open_slot(int slot, std::span<const std::byte> passphrase) const {
  if (slot < 0 || slot >= static_cast<int>(luks1::kNumKeys))
    return fail(
        make_error_fmt(Errc::kInvalid, "keyslot out of range", static_cast<std::uint64_t>(slot),
                       "Key slot %d is invalid, please select keyslot between 0 and 7.", slot));
  const auto& kb = phdr_.key_block[static_cast<std::size_t>(slot)];
  if (kb.active != luks1::kKeyEnabled)
    return fail(
        make_error(Errc::kNotFound, "keyslot is not active", static_cast<std::uint64_t>(slot)));
  KdfParams kdf;
  kdf.type = "pbkdf2";
  kdf.hash = phdr_.hash();
  kdf.iterations = kb.password_iterations;
  kdf.salt.assign(kb.password_salt.begin(), kb.password_salt.end());
  if (kdf.iterations == 0)
    return fail(make_error(Errc::kCorrupt, "LUKS1 keyslot passwordIterations is zero",
                           static_cast<std::uint64_t>(slot)));
  CRYPTMAP_TRY(dk, derive_key(kdf, passphrase, phdr_.key_bytes));
  CRYPTMAP_TRY(vk,
               open_keyslot_material(areas_[static_cast<std::size_t>(slot)], phdr_.cipher_spec(),
                                     dk.span(), phdr_.key_bytes, kb.stripes, phdr_.hash()));
  CRYPTMAP_TRY_VOID(verify_volume_key(vk.span()));
  // Allow only an empty passphrase with the null cipher (LUKS_open_key).
  if (phdr_.cipher_name == "cipher_null" && !passphrase.empty()) return fail(no_key());
  return vk;
}

Result<UnlockedKey> Luks1Header::unlock(std::span<const std::byte> passphrase,
                                        std::optional<int> keyslot) const {
  std::array<int, luks1::kNumKeys> order{};
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  return search_keyslots(keyslot, order, [&](int slot) { return open_slot(slot, passphrase); });
}

// ---------------------------------------------------------------------------------------------
// LUKS2

void set_persistent_flags(const luks2::Metadata& m, VolumeLayout& l) {
  l.allow_discards = m.has_flag("allow-discards");
  l.no_read_workqueue = m.has_flag("no-read-workqueue");
  l.no_write_workqueue = m.has_flag("no-write-workqueue");
  l.same_cpu_crypt = m.has_flag("same-cpu-crypt");
  l.submit_from_crypt_cpus = m.has_flag("submit-from-crypt-cpus");
}

Result<std::unique_ptr<Luks2Header>> Luks2Header::load(const BackingStore& store,
                                                       bool for_inspection) {
  CRYPTMAP_TRY(disk, luks2::read_luks2_header(store, store.name()));
  auto h = std::unique_ptr<Luks2Header>(new Luks2Header());
  h->device_ = store.name();
  const luks2::Metadata& m = disk.meta;
  std::string unknown;
  const auto req = luks2::requirement_state(m, &unknown);
  const luks2::Segment* seg = m.segment(0);
  if (!for_inspection) {
    if (req == luks2::RequirementState::kUnknown && unknown == "inline-hw-tags")
      return fail(make_error(
          Errc::kUnsupported,
          "LUKS2 requirement inline-hw-tags: the integrity tags live in the block device's "
          "per-sector metadata (cryptsetup --integrity-inline), which an image file cannot hold"));
    if (req == luks2::RequirementState::kUnknown)
      return fail(make_error_fmt(Errc::kUnsupported, "Unmet LUKS2 requirements detected.",
                                 kNoObject, "unknown mandatory requirement '%s'", unknown.c_str()));
    if (req == luks2::RequirementState::kReencryption ||
        std::any_of(m.keyslots.begin(), m.keyslots.end(),
                    [](const auto& k) { return k.type == "reencrypt"; }))
      return fail(make_error(
          Errc::kUnsupported,
          "LUKS2 reencryption in progress (requirement online-reencrypt-v2): only `open` and "
          "`reencrypt` use such an image; finish it with "
          "cryptmap reencrypt --resume-only IMAGE (or cryptsetup reencrypt --resume-only)"));
    if (m.segments.size() != 1)
      return fail(make_error(Errc::kUnsupported, "LUKS2 with more than one data segment"));
    if (!seg || seg->type != "crypt")
      return fail(make_error_fmt(Errc::kUnsupported, "LUKS2 segment type", 0,
                                 "'%s' is not supported", seg ? seg->type.c_str() : "?"));
    if (seg->has_integrity) {
      if (seg->integrity_journal_encryption != "none" || seg->integrity_journal_integrity != "none")
        return fail(
            make_error(Errc::kUnsupported, "Unsupported device integrity configuration.", 0));
      std::optional<std::size_t> iks;
      if (seg->integrity_key_size != 0) iks = seg->integrity_key_size;
      CRYPTMAP_TRY_VOID(crypto::auth_composition(seg->encryption, seg->integrity_type, iks));
      if (iks)
        return fail(make_error(Errc::kUnsupported,
                               "LUKS2 integrity key_size (--integrity-key-size) is not supported"));
    }
    if (seg->sector_size < 512 || seg->sector_size > 4096 ||
        (seg->sector_size & (seg->sector_size - 1)))
      return fail(make_error(Errc::kCorrupt, "LUKS2 segment sector_size", seg->sector_size));
    if (!m.digest_for_segment(0))
      return fail(make_error(Errc::kCorrupt, "LUKS2 segment 0 has no digest", 0));
  }
  VolumeLayout& l = h->layout_;
  l.type = VolumeType::kLuks2;
  if (seg && seg->type == "crypt") {
    if (seg->has_integrity) {
      // AEAD modes have no CipherSpec; the authenticated composition is carried as written.
      l.auth_encryption = seg->encryption;
      l.integrity = seg->integrity_type;
      l.integrity_no_journal = m.has_flag("no-journal");
      if (auto spec = crypto::CipherSpec::parse(seg->encryption)) l.cipher = *spec;
    } else if (!for_inspection) {
      CRYPTMAP_TRY(spec, parse_cipher(seg->encryption, "LUKS2 segment encryption"));
      l.cipher = spec;
    }
    l.sector_size = seg->sector_size;
    l.iv_offset = seg->iv_tweak;
    l.data_offset_bytes = seg->offset;
    l.size_bytes = seg->dynamic ? 0 : seg->size;
  }
  l.iv_large_sectors = false;  // LUKS2 never sets iv_large_sectors
  // Volume key size: first keyslot bound to the segment's digest (LUKS2_get_volume_key_size).
  if (const luks2::Digest* d = m.digest_for_segment(0)) {
    for (int ks : d->keyslots)
      if (const luks2::Keyslot* k = m.keyslot(ks)) {
        l.key_bytes = k->key_size;
        break;
      }
  }
  l.uuid = disk.bin.uuid;
  l.label = disk.bin.label;
  set_persistent_flags(m, l);
  // Copy the key material of every usable keyslot (the store is borrowed for load only).
  for (const auto& k : m.keyslots) {
    if (k.type != "luks2") continue;
    if (k.key_size == 0 || k.key_size > luks2::kMaxKeySize) {
      h->area_errors_.emplace_back(
          k.id, make_error(Errc::kCorrupt, "LUKS2 keyslot key_size", k.key_size));
      continue;
    }
    const std::uint64_t need = keyslot_area_bytes(k.key_size, luks2::kStripes);
    if (need > k.area_size) {
      h->area_errors_.emplace_back(k.id, make_error(Errc::kCorrupt, "LUKS2 keyslot area too small",
                                                    static_cast<std::uint64_t>(k.id)));
      continue;
    }
    std::vector<std::byte> a(need);
    if (auto r = store.read_at(ByteOffset{k.area_offset}, a); !r) {
      h->area_errors_.emplace_back(k.id, r.error());
      continue;
    }
    h->areas_.emplace_back(k.id, std::move(a));
  }
  h->disk_ = std::move(disk);
  return h;
}

Result<void> Luks2Header::verify_volume_key(std::span<const std::byte> vk, int digest_id) const {
  const luks2::Digest* d = nullptr;
  for (const auto& x : meta().digests)
    if (x.id == digest_id) d = &x;
  if (!d)
    return fail(
        make_error(Errc::kCorrupt, "LUKS2 digest missing", static_cast<std::uint64_t>(digest_id)));
  if (d->type != "pbkdf2")
    return fail(make_error_fmt(Errc::kUnsupported, "LUKS2 digest type",
                               static_cast<std::uint64_t>(d->id), "'%s'", d->type.c_str()));
  auto hsize = crypto::hash_digest_size(d->hash);
  if (d->hash.empty() || !hsize)
    return fail(make_error_fmt(Errc::kUnsupported, "LUKS2 digest hash",
                               static_cast<std::uint64_t>(d->id), "'%s'", d->hash.c_str()));
  if (d->iterations <= 0 || d->iterations > 0xffffffffll)
    return fail(
        make_error(Errc::kCorrupt, "LUKS2 digest iterations", static_cast<std::uint64_t>(d->id)));
  auto salt = base64_decode(d->salt_b64);
  if (!salt || salt->size() != luks2::kSaltSize)
    return fail(make_error(Errc::kCorrupt, "LUKS2 digest salt", static_cast<std::uint64_t>(d->id)));
  auto digest = base64_decode(d->digest_b64);
  if (!digest || digest->size() < 20 || digest->size() > 64 ||
      (digest->size() != 20 && digest->size() != *hsize))
    return fail(
        make_error(Errc::kCorrupt, "LUKS2 digest value", static_cast<std::uint64_t>(d->id)));
  std::vector<std::byte> check(digest->size());
  CRYPTMAP_TRY_VOID(
      crypto::pbkdf2(d->hash, vk, *salt, static_cast<std::uint32_t>(d->iterations), check));
  if (!constant_time_equal(check, *digest)) return fail(no_key());
  return ok();
}

Result<SecretBytes> Luks2Header::open_slot(int slot, std::span<const std::byte> passphrase,
                                           std::optional<int> digest_id) const {
  if (slot < 0 || slot >= luks2::kMaxKeyslots)
    return fail(
        make_error_fmt(Errc::kInvalid, "keyslot out of range", static_cast<std::uint64_t>(slot),
                       "Key slot %d is invalid, please select keyslot between 0 and 31.", slot));
  const luks2::Keyslot* k = meta().keyslot(slot);
  if (!k || k->type != "luks2")
    return fail(
        make_error(Errc::kNotFound, "keyslot is not active", static_cast<std::uint64_t>(slot)));
  const luks2::Digest* kd = meta().digest_for_keyslot(slot);
  const luks2::Digest* sd = meta().digest_for_segment(0);
  const int want = digest_id ? *digest_id : (sd ? sd->id : -1);
  if (!kd || kd->id != want)
    return fail(make_error(Errc::kNotFound, "keyslot unusable for segment 0",
                           static_cast<std::uint64_t>(slot)));
  for (const auto& [id, err] : area_errors_)
    if (id == slot) return fail(err);
  const std::vector<std::byte>* area = nullptr;
  for (const auto& [id, a] : areas_)
    if (id == slot) area = &a;
  if (!area)
    return fail(make_error(Errc::kCorrupt, "LUKS2 keyslot area unreadable",
                           static_cast<std::uint64_t>(slot)));
  KdfParams kdf;
  kdf.type = k->kdf.type;
  kdf.hash = k->kdf.hash;
  kdf.iterations = k->kdf.iterations;
  kdf.time = k->kdf.time;
  kdf.memory_kib = k->kdf.memory_kib;
  kdf.cpus = k->kdf.cpus;
  kdf.salt = k->kdf.salt;
  if (kdf.salt.size() != luks2::kSaltSize)
    return fail(
        make_error(Errc::kCorrupt, "LUKS2 keyslot kdf.salt", static_cast<std::uint64_t>(slot)));
  if (k->area_key_size == 0 || k->area_key_size > luks2::kMaxKeySize)
    return fail(make_error(Errc::kCorrupt, "LUKS2 keyslot area.key_size",
                           static_cast<std::uint64_t>(slot)));
  CRYPTMAP_TRY(dk, derive_key(kdf, passphrase, k->area_key_size));
  CRYPTMAP_TRY(vk, open_keyslot_material(*area, k->area_encryption, dk.span(), k->key_size,
                                         luks2::kStripes, k->af_hash));
  CRYPTMAP_TRY_VOID(verify_volume_key(vk.span(), kd->id));
  return vk;
}

Result<UnlockedKey> Luks2Header::unlock(std::span<const std::byte> passphrase,
                                        std::optional<int> keyslot) const {
  // Priority 2 ("prefer") first, then 1 ("normal"); 0 ("ignore") only by explicit request.
  std::vector<int> order;
  for (int priority : {2, 1})
    for (const auto& k : meta().keyslots)
      if (k.priority == priority) order.push_back(k.id);
  return search_keyslots(keyslot, order, [&](int slot) { return open_slot(slot, passphrase); });
}

}  // namespace format

Result<std::unique_ptr<LuksHeader>> load_luks_header(const BackingStore& store,
                                                     std::optional<VolumeType> expect) {
  if (expect && *expect == VolumeType::kPlain)
    return fail(make_error(Errc::kInvalid, "load_luks_header: plain is not a LUKS type"));
  auto prefix = format::read_prefix(store, 512);
  if (!prefix) return fail(prefix.error());
  const bool magic = luks1::has_luks_magic(*prefix);
  int version = 0;
  if (magic && prefix->size() >= 8) version = load_be16(prefix->data() + 6);
  if (magic && prefix->size() < 8)
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS header truncated", prefix->size(), "%s",
                               store.name().c_str()));
  if ((expect == VolumeType::kLuks1 && version == 2) ||
      (expect == VolumeType::kLuks2 && version == 1))
    return fail(format::not_luks(store.name()));
  if (expect == VolumeType::kLuks1 || (!expect && version == 1)) {
    CRYPTMAP_TRY(h, format::Luks1Header::load(store));
    return std::unique_ptr<LuksHeader>(std::move(h));
  }
  if (expect == VolumeType::kLuks2 || version == 2 || version == 0) {
    CRYPTMAP_TRY(h, format::Luks2Header::load(store));
    return std::unique_ptr<LuksHeader>(std::move(h));
  }
  return fail(make_error_fmt(Errc::kUnsupported, "unsupported LUKS version",
                             static_cast<std::uint64_t>(version), "Unsupported LUKS version %d.",
                             version));
}

}  // namespace cryptmap::volume

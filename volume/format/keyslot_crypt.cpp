#include "volume/format/internal/keyslot_crypt.h"

#include "crypto/af.h"
#include "crypto/cipher_spec.h"
#include "crypto/kdf.h"
#include "crypto/sector_cipher.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume::format {

Result<SecretBytes> derive_key(const KdfParams& kdf, std::span<const std::byte> passphrase,
                               std::size_t out_len) {
  CRYPTMAP_TRY(dk, SecretBytes::allocate(out_len));
  if (kdf.type == "pbkdf2") {
    CRYPTMAP_TRY_VOID(crypto::pbkdf2(kdf.hash, passphrase, kdf.salt, kdf.iterations, dk.span()));
  } else if (kdf.type == "argon2i" || kdf.type == "argon2id") {
    const auto t =
        kdf.type == "argon2i" ? crypto::Argon2Type::kArgon2i : crypto::Argon2Type::kArgon2id;
    CRYPTMAP_TRY_VOID(
        crypto::argon2(t, passphrase, kdf.salt, kdf.time, kdf.memory_kib, kdf.cpus, dk.span()));
  } else {
    return fail(make_error_fmt(Errc::kUnsupported, "keyslot KDF", kNoObject, "unknown KDF '%s'",
                               kdf.type.c_str()));
  }
  return dk;
}

std::uint64_t keyslot_area_bytes(std::uint64_t key_bytes, std::uint32_t stripes) {
  return (key_bytes * stripes + 511) / 512 * 512;
}

namespace {
Result<std::unique_ptr<crypto::SectorCipher>> area_cipher(const std::string& cipher_spec,
                                                          std::span<const std::byte> dk) {
  auto spec = crypto::CipherSpec::parse(cipher_spec);
  if (!spec)
    return fail(make_error_fmt(Errc::kUnsupported, "keyslot cipher", kNoObject, "'%s'",
                               cipher_spec.c_str()));
  crypto::SectorCipherConfig cfg;
  cfg.spec = *spec;
  cfg.sector_size = 512;
  cfg.iv_large_sectors = false;
  cfg.iv_offset = 0;
  return crypto::make_sector_cipher(cfg, dk);
}
}  // namespace

Result<SecretBytes> open_keyslot_material(std::span<const std::byte> encrypted,
                                          const std::string& cipher_spec,
                                          std::span<const std::byte> dk, std::uint32_t key_bytes,
                                          std::uint32_t stripes, const std::string& af_hash) {
  const std::uint64_t len = keyslot_area_bytes(key_bytes, stripes);
  if (encrypted.size() < len)
    return fail(make_error(Errc::kCorrupt, "keyslot area shorter than its key material", len));
  CRYPTMAP_TRY(cipher, area_cipher(cipher_spec, dk));
  CRYPTMAP_TRY(material, SecretBytes::copy_of(encrypted.first(len)));
  CRYPTMAP_TRY_VOID(cipher->decrypt(crypto::SectorRun{material.span(), {}, SectorIndex{0}}));
  CRYPTMAP_TRY(vk, SecretBytes::allocate(key_bytes));
  CRYPTMAP_TRY_VOID(crypto::af_merge(material.span(), stripes, af_hash, vk.span()));
  return vk;
}

Result<void> store_keyslot_area(BackingStore& store, std::uint64_t area_offset,
                                const std::string& cipher_spec, std::span<const std::byte> dk,
                                std::span<const std::byte> vk, std::uint32_t stripes,
                                const std::string& af_hash) {
  const std::uint64_t len = keyslot_area_bytes(vk.size(), stripes);
  CRYPTMAP_TRY(cipher, area_cipher(cipher_spec, dk));
  CRYPTMAP_TRY(material, SecretBytes::allocate(len));
  CRYPTMAP_TRY_VOID(crypto::af_split(
      vk, stripes, af_hash, material.span().first(crypto::af_material_bytes(vk.size(), stripes))));
  CRYPTMAP_TRY_VOID(cipher->encrypt(crypto::SectorRun{material.span(), {}, SectorIndex{0}}));
  CRYPTMAP_TRY_VOID(store.write_at(ByteOffset{area_offset}, material.span()));
  return ok();
}

}  // namespace cryptmap::volume::format

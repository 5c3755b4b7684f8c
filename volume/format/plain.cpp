#include "volume/format/plain.h"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

#include "crypto/cipher_spec.h"
#include "crypto/hash.h"

namespace cryptmap::volume {

Result<SecretBytes> plain_hash(std::string_view hash_spec, std::span<const std::byte> passphrase,
                               std::size_t key_bytes) {
  if (key_bytes == 0 || key_bytes > 1024)
    return fail(make_error(Errc::kInvalid, "plain: invalid key size", key_bytes));
  std::string_view name = hash_spec;
  std::size_t hash_len = key_bytes;
  if (auto colon = hash_spec.find(':'); colon != std::string_view::npos) {
    name = hash_spec.substr(0, colon);
    auto num = hash_spec.substr(colon + 1);
    std::size_t v = 0;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (num.empty() || ec != std::errc{} || p != num.data() + num.size())
      return fail(make_error(Errc::kInvalid, "plain: hash length is not a number"));
    if (v > key_bytes)
      return fail(make_error(Errc::kInvalid, "plain: hash length larger than the key", v));
    hash_len = v;
  }
  CRYPTMAP_TRY(key, SecretBytes::allocate(key_bytes));  // zero-filled: the padding
  if (name == "plain") {
    if (passphrase.size() < hash_len)
      return fail(
          make_error(Errc::kInvalid, "plain: passphrase shorter than the key (--hash plain)"));
    std::memcpy(key.data(), passphrase.data(), hash_len);
    return key;
  }
  auto dsize = crypto::hash_digest_size(name);
  if (!dsize)
    return fail(make_error_fmt(Errc::kUnsupported, "plain: hash algorithm not supported", kNoObject,
                               "%.*s", static_cast<int>(name.size()), name.data()));
  // Round r hashes r bytes of 'A' then the passphrase (the hashalot trick).
  std::vector<std::byte> as;
  CRYPTMAP_TRY(digest, SecretBytes::allocate(*dsize));
  std::size_t done = 0;
  for (std::size_t round = 0; done < hash_len; ++round) {
    CRYPTMAP_TRY_VOID(
        crypto::hash_digest(name, {std::span<const std::byte>(as), passphrase}, digest.span()));
    const std::size_t n = std::min(*dsize, hash_len - done);
    std::memcpy(key.data() + done, digest.data(), n);
    done += n;
    as.push_back(std::byte{'A'});
    (void)round;
  }
  return key;
}

Result<SecretBytes> plain_volume_key(const PlainOptions& opts,
                                     std::span<const std::byte> passphrase, bool from_key_file) {
  if (opts.key_bits == 0 || opts.key_bits % 8 || opts.key_bits > 8192)
    return fail(make_error(Errc::kInvalid, "plain: --key-size must be a multiple of 8 bits",
                           opts.key_bits));
  const std::size_t kb = opts.key_bits / 8;
  if (from_key_file || opts.hash == "plain") {
    // process_key() without a hash: copy what there is, at most the key size; rest stays zero.
    CRYPTMAP_TRY(key, SecretBytes::allocate(kb));
    std::memcpy(key.data(), passphrase.data(), std::min(kb, passphrase.size()));
    return key;
  }
  return plain_hash(opts.hash, passphrase, kb);
}

Result<VolumeLayout> plain_layout(const PlainOptions& opts, std::uint64_t image_bytes) {
  const std::uint32_t ss = opts.sector_size;
  if (ss < 512 || ss > 4096 || (ss & (ss - 1)))
    return fail(make_error(Errc::kInvalid, "plain: unsupported encryption sector size", ss));
  auto spec = crypto::CipherSpec::parse(opts.cipher);
  if (!spec)
    return fail(make_error_fmt(Errc::kInvalid, "plain: no known cipher specification pattern",
                               kNoObject, "'%s'", opts.cipher.c_str()));
  if (opts.key_bits == 0 || opts.key_bits % 8 || opts.key_bits > 8192)
    return fail(make_error(Errc::kInvalid, "plain: invalid --key-size", opts.key_bits));
  if (opts.offset_sectors > image_bytes / 512)
    return fail(make_error(Errc::kInvalid, "plain: --offset beyond the end of the image",
                           opts.offset_sectors));
  const std::uint64_t avail = image_bytes - opts.offset_sectors * 512;
  if (ss > 512 && avail % ss)
    return fail(
        make_error(Errc::kInvalid, "plain: device size is not aligned to the sector size", avail));
  if (opts.skip_sectors % (ss / 512))
    return fail(make_error(Errc::kInvalid, "plain: --skip must be a multiple of sector-size/512",
                           opts.skip_sectors));
  if (opts.size_sectors) {
    if (opts.size_sectors > avail / 512)
      return fail(make_error(Errc::kInvalid, "plain: --size beyond the end of the image",
                             opts.size_sectors));
    if ((opts.size_sectors * 512) % ss)
      return fail(make_error(Errc::kInvalid, "plain: --size is not a multiple of the sector size",
                             opts.size_sectors));
  }
  VolumeLayout l;
  l.type = VolumeType::kPlain;
  l.cipher = *spec;
  l.key_bytes = opts.key_bits / 8;
  l.sector_size = ss;
  l.iv_large_sectors = opts.iv_large_sectors;
  l.iv_offset = opts.skip_sectors;
  l.data_offset_bytes = opts.offset_sectors * 512;
  l.size_bytes = opts.size_sectors * 512;
  l.allow_discards = opts.allow_discards;
  return l;
}

}  // namespace cryptmap::volume

#include "crypto/af.h"

#include <algorithm>
#include <array>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/hash_backend.h"
#include "crypto/random.h"

namespace cryptmap::crypto {
namespace {

void xor_into(std::span<std::byte> dst, std::span<const std::byte> src) {
  for (std::size_t i = 0; i < dst.size(); ++i) dst[i] ^= src[i];
}

// diffuse(B): chunk j of B (digest-size chunks, last one short) becomes H(BE32(j) || chunk)
// truncated to the chunk's length (cryptsetup lib/luks1/af.c, docs/formats.md §1.4).
Result<void> diffuse(internal::Hasher& h, std::span<std::byte> block) {
  const std::size_t ds = h.digest_size();
  std::array<std::byte, 4> iv{};
  for (std::size_t off = 0, j = 0; off < block.size(); off += ds, ++j) {
    const std::size_t len = std::min(ds, block.size() - off);
    store_be32(iv.data(), static_cast<std::uint32_t>(j));
    auto chunk = block.subspan(off, len);
    CRYPTMAP_TRY_VOID(h.digest({iv, chunk}, chunk));  // reads chunk fully before writing it
  }
  return ok();
}

Result<void> check_args(std::size_t key_bytes, std::uint32_t stripes, std::size_t material,
                        const char* what) {
  if (key_bytes == 0) return make_error(Errc::kInvalid, "AF: key length is zero");
  if (stripes == 0) return make_error(Errc::kInvalid, "AF: stripe count is zero");
  if (material < af_material_bytes(key_bytes, stripes))
    return make_error_fmt(Errc::kInvalid, what, kNoObject,
                          "%zu bytes of key material, need %zu (%zu-byte key x %u stripes)",
                          material, af_material_bytes(key_bytes, stripes), key_bytes, stripes);
  return ok();
}

// Shared tail of split: stripes 0..s-2 are already in `material`; computes the last stripe.
Result<void> split_last_stripe(std::span<const std::byte> key, std::uint32_t stripes,
                               internal::Hasher& h, std::span<std::byte> material) {
  const std::size_t n = key.size();
  CRYPTMAP_TRY(d, SecretBytes::allocate(n));
  for (std::uint32_t i = 0; i + 1 < stripes; ++i) {
    xor_into(d.span(), material.subspan(std::size_t{i} * n, n));
    CRYPTMAP_TRY_VOID(diffuse(h, d.span()));
  }
  auto last = material.subspan(std::size_t{stripes - 1} * n, n);
  std::copy(d.span().begin(), d.span().end(), last.begin());
  xor_into(last, key);
  return ok();
}

}  // namespace

Result<void> af_split(std::span<const std::byte> key, std::uint32_t stripes, std::string_view hash,
                      std::span<std::byte> material) {
  CRYPTMAP_TRY_VOID(check_args(key.size(), stripes, material.size(), "AF split: output"));
  CRYPTMAP_TRY(h, internal::Hasher::create(hash));
  const std::size_t n = key.size();
  CRYPTMAP_TRY_VOID(random_bytes(material.first(std::size_t{stripes - 1} * n)));
  return split_last_stripe(key, stripes, h, material);
}

Result<void> af_split_with(std::span<const std::byte> key, std::uint32_t stripes,
                           std::string_view hash, std::span<const std::byte> random_stripes,
                           std::span<std::byte> material) {
  CRYPTMAP_TRY_VOID(check_args(key.size(), stripes, material.size(), "AF split: output"));
  CRYPTMAP_TRY(h, internal::Hasher::create(hash));
  const std::size_t n = key.size();
  const std::size_t random_len = std::size_t{stripes - 1} * n;
  if (random_stripes.size() < random_len)
    return make_error_fmt(Errc::kInvalid, "AF split: random stripes", kNoObject,
                          "%zu bytes given, need %zu", random_stripes.size(), random_len);
  std::copy_n(random_stripes.begin(), random_len, material.begin());
  return split_last_stripe(key, stripes, h, material);
}

Result<void> af_merge(std::span<const std::byte> material, std::uint32_t stripes,
                      std::string_view hash, std::span<std::byte> key_out) {
  CRYPTMAP_TRY_VOID(check_args(key_out.size(), stripes, material.size(), "AF merge: input"));
  CRYPTMAP_TRY(h, internal::Hasher::create(hash));
  const std::size_t n = key_out.size();
  CRYPTMAP_TRY(d, SecretBytes::allocate(n));
  for (std::uint32_t i = 0; i + 1 < stripes; ++i) {
    xor_into(d.span(), material.subspan(std::size_t{i} * n, n));
    CRYPTMAP_TRY_VOID(diffuse(h, d.span()));
  }
  xor_into(d.span(), material.subspan(std::size_t{stripes - 1} * n, n));
  std::copy(d.span().begin(), d.span().end(), key_out.begin());
  return ok();
}

}  // namespace cryptmap::crypto

#include "crypto/sector_cipher.h"

#include <array>
#include <atomic>
#include <cstring>

#include "crypto/internal/cipher_catalog.h"
#include "crypto/internal/context_pool.h"
#include "crypto/internal/engines.h"
#include "crypto/internal/sector_numbering.h"

namespace cryptmap::crypto {
namespace internal {

std::size_t this_thread_pool_hint() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t hint = next.fetch_add(1, std::memory_order_relaxed);
  return hint;
}

Result<void> check_run_shape(const SectorRun& run, std::uint32_t sector_size) {
  if (run.data.size() % sector_size != 0)
    return make_error_fmt(Errc::kInvalid, "sector cipher: buffer is not whole sectors",
                          run.first.value, "%zu bytes, sector size %u", run.data.size(),
                          sector_size);
  if (!run.meta.empty())
    return make_error(Errc::kInvalid, "sector cipher: metadata given to a cipher without any",
                      run.first.value);
  return ok();
}

Result<std::size_t> SectorNumbering::begin_run(const SectorRun& run) const {
  CRYPTMAP_TRY_VOID(check_run_shape(run, sector_size));
  const std::size_t count = run.data.size() / sector_size;
  CRYPTMAP_TRY_VOID(check_run(run.first.value, count));
  return count;
}

namespace {

// Priority order, highest first (see engines.h).
constexpr std::array<EngineEntry, 4> kEngines{{
    {"aesni-xts", 350, &aesni_xts_supports, &make_aesni_xts_cipher},
    {"openssl-xts", 300, &openssl_xts_supports, &make_openssl_xts_cipher},
    {"openssl", 200, &openssl_modes_supports, &make_openssl_modes_cipher},
    {"cryptopp", 100, &generic_supports, &make_generic_cipher},
}};

}  // namespace
}  // namespace internal

namespace {

Result<void> check_config(const SectorCipherConfig& c) {
  if (c.sector_size < 512 || c.sector_size > 4096 || (c.sector_size & (c.sector_size - 1)) != 0)
    return make_error_fmt(Errc::kInvalid, "sector cipher: sector size", kNoObject,
                          "%u is not a power of two in 512..4096", c.sector_size);
  const std::uint64_t per = c.sector_size / 512;
  if (c.iv_offset % per != 0)
    return make_error_fmt(Errc::kInvalid, "sector cipher: IV offset", kNoObject,
                          "%llu is not a multiple of %llu (sector size %u)",
                          static_cast<unsigned long long>(c.iv_offset),
                          static_cast<unsigned long long>(per), c.sector_size);
  if ((c.spec.iv_mode == "lmk" || c.spec.iv_mode == "tcw") && c.sector_size != 512)
    return make_error_fmt(Errc::kUnsupported, "sector cipher: sector size", kNoObject,
                          "IV mode %s works only with 512-byte sectors", c.spec.iv_mode.c_str());
  if (c.spec.iv_mode == "random")
    return make_error_fmt(Errc::kUnsupported, "sector cipher: IV mode", kNoObject,
                          "'%s' is not supported yet", c.spec.iv_mode.c_str());
  return ok();
}

}  // namespace

Result<void> check_key_size(const CipherSpec& spec, std::size_t key_bytes) {
  CRYPTMAP_TRY_VOID(internal::key_layout(spec, key_bytes));
  return ok();
}

Result<std::unique_ptr<SectorCipher>> make_sector_cipher(const SectorCipherConfig& config,
                                                         std::span<const std::byte> key) {
  CRYPTMAP_TRY_VOID(check_config(config));
  CRYPTMAP_TRY(layout, internal::key_layout(config.spec, key.size()));
  Error last = make_error_fmt(Errc::kUnsupported, "sector cipher", kNoObject,
                              "no engine implements %s", config.spec.to_string().c_str());
  for (const auto& e : internal::kEngines) {
    if (!e.supports(config, layout)) continue;
    auto made = e.create(config, layout, key);
    if (made) return made;
    last = made.error();  // e.g. OpenSSL refusing equal XTS halves: try the next engine
  }
  return last;
}

Result<void> SectorCipher::encrypt_from(std::span<const std::byte> plain,
                                        const SectorRun& run) const {
  if (plain.size() != run.data.size()) {
    return make_error_fmt(Errc::kInvalid, "sector cipher: source and destination sizes differ",
                          run.first.value, "%zu and %zu bytes", plain.size(), run.data.size());
  }
  if (!plain.empty()) std::memcpy(run.data.data(), plain.data(), plain.size());
  return encrypt(run);
}

}  // namespace cryptmap::crypto

// AES-NI AES-XTS engine: the key schedules live in one read-only object placed in locked
// memory (SecretBytes), shared by all threads without any per-thread state; each sector is one
// tweak encryption plus eight-block AES-NI groups, with no library call per sector.
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/aesni_cbc.h"
#include "crypto/internal/engines.h"
#include "crypto/internal/sector_numbering.h"
#include "crypto/internal/simple_iv.h"

namespace cryptmap::crypto::internal {
namespace {

class AesniXtsCipher final : public SectorCipher {
 public:
  AesniXtsCipher(const SectorCipherConfig& config, SimpleIv iv)
      : iv_(iv), numbering_(SectorNumbering::of(config)) {}
  ~AesniXtsCipher() override {
    if (xts_ != nullptr) xts_->~AesniXts();  // wipes the round keys; SecretBytes zeroes the rest
  }

  Result<void> init(std::span<const std::byte> key) {
    CRYPTMAP_TRY(mem, SecretBytes::allocate(sizeof(AesniXts)));
    storage_ = std::move(mem);
    xts_ = new (storage_.data()) AesniXts(key);
    return ok();
  }

  Result<void> encrypt(const SectorRun& run) const override {
    return crypt(run.data.data(), run, true);
  }
  Result<void> decrypt(const SectorRun& run) const override {
    return crypt(run.data.data(), run, false);
  }
  // Out of place: each sector is read from `plain` and written to run.data, no copy first.
  Result<void> encrypt_from(std::span<const std::byte> plain, const SectorRun& run) const override {
    if (plain.size() != run.data.size()) return SectorCipher::encrypt_from(plain, run);  // kInvalid
    return crypt(plain.data(), run, true);
  }
  std::uint32_t sector_size() const noexcept override { return numbering_.sector_size; }
  const char* engine_name() const noexcept override { return "aesni-xts"; }

 private:
  // Sectors from `in` (run.data itself, or as many bytes elsewhere) into run.data.
  Result<void> crypt(const std::byte* in, const SectorRun& run, bool enc) const {
    CRYPTMAP_TRY(count, numbering_.begin_run(run));
    const std::size_t ss = numbering_.sector_size;
    alignas(16) std::byte iv[16];
    std::byte* p = run.data.data();
    for (std::size_t k = 0; k < count; ++k, p += ss, in += ss) {
      const std::uint64_t s = numbering_.iv_sector(numbering_.cc_sector(run.first.value + k)).value;
      write_simple_iv(iv_, s, iv);
      if (enc)
        xts_->encrypt(in, p, ss, iv);
      else
        xts_->decrypt(in, p, ss, iv);
    }
    return ok();
  }

  SimpleIv iv_;
  SectorNumbering numbering_;
  SecretBytes storage_;
  AesniXts* xts_ = nullptr;
};

}  // namespace

bool aesni_xts_supports(const SectorCipherConfig& config, const KeyLayout& layout) {
  return simple_aes_xts(config, layout).has_value() && aesni_available();
}

Result<std::unique_ptr<SectorCipher>> make_aesni_xts_cipher(const SectorCipherConfig& config,
                                                            const KeyLayout& layout,
                                                            std::span<const std::byte> key) {
  const std::optional<SimpleIv> iv = simple_aes_xts(config, layout);
  if (!iv || !aesni_available())
    return make_error(Errc::kUnsupported, "AES-XTS (AES-NI): configuration not supported");
  auto cipher = std::make_unique<AesniXtsCipher>(config, *iv);
  CRYPTMAP_TRY_VOID(cipher->init(key));
  return std::unique_ptr<SectorCipher>(std::move(cipher));
}

}  // namespace cryptmap::crypto::internal

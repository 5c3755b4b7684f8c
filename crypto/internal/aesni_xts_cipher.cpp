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

namespace cryptmap::crypto::internal {
namespace {

enum class SimpleIv : std::uint8_t { kPlain, kPlain64, kPlain64Be, kNull };

bool simple_iv(const std::string& mode, SimpleIv& out) {
  if (mode == "plain64") out = SimpleIv::kPlain64;
  else if (mode == "plain") out = SimpleIv::kPlain;
  else if (mode == "plain64be") out = SimpleIv::kPlain64Be;
  else if (mode == "null") out = SimpleIv::kNull;
  else return false;
  return true;
}

class AesniXtsCipher final : public SectorCipher {
 public:
  AesniXtsCipher(const SectorCipherConfig& config, SimpleIv iv)
      : iv_(iv),
        numbering_{config.sector_size,
                   static_cast<std::uint32_t>(__builtin_ctz(config.sector_size / 512)),
                   config.iv_large_sectors, config.iv_offset} {}
  ~AesniXtsCipher() override {
    if (xts_ != nullptr) xts_->~AesniXts();  // wipes the round keys; SecretBytes zeroes the rest
  }

  Result<void> init(std::span<const std::byte> key) {
    CRYPTMAP_TRY(mem, SecretBytes::allocate(sizeof(AesniXts)));
    storage_ = std::move(mem);
    xts_ = new (storage_.data()) AesniXts(key);
    return ok();
  }

  Result<void> encrypt(const SectorRun& run) const override { return crypt(run, true); }
  Result<void> decrypt(const SectorRun& run) const override { return crypt(run, false); }
  std::uint32_t sector_size() const noexcept override { return numbering_.sector_size; }
  const char* engine_name() const noexcept override { return "aesni-xts"; }

 private:
  Result<void> crypt(const SectorRun& run, bool enc) const {
    CRYPTMAP_TRY_VOID(check_run_shape(run, numbering_.sector_size));
    const std::size_t ss = numbering_.sector_size;
    const std::size_t count = run.data.size() / ss;
    if (count == 0) return ok();
    CRYPTMAP_TRY_VOID(numbering_.check_run(run.first.value, count));
    alignas(16) std::byte iv[16];
    std::byte* p = run.data.data();
    for (std::size_t k = 0; k < count; ++k, p += ss) {
      const std::uint64_t s = numbering_.iv_sector(numbering_.cc_sector(run.first.value + k)).value;
      std::memset(iv, 0, sizeof iv);
      switch (iv_) {
        case SimpleIv::kPlain64: store_le64(iv, s); break;
        case SimpleIv::kPlain: store_le32(iv, static_cast<std::uint32_t>(s)); break;
        case SimpleIv::kPlain64Be: store_be64(iv + 8, s); break;
        case SimpleIv::kNull: break;
      }
      if (enc)
        xts_->encrypt(p, ss, iv);
      else
        xts_->decrypt(p, ss, iv);
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
  SimpleIv iv{};
  return config.spec.cipher == "aes" && config.spec.chain_mode == "xts" &&
         layout.tfm_count == 1 && layout.extra_bytes == 0 &&
         (layout.subkey_bytes == 32 || layout.subkey_bytes == 64) &&
         simple_iv(config.spec.iv_mode, iv) && aesni_available();
}

Result<std::unique_ptr<SectorCipher>> make_aesni_xts_cipher(const SectorCipherConfig& config,
                                                            const KeyLayout& layout,
                                                            std::span<const std::byte> key) {
  SimpleIv iv{};
  if (!aesni_xts_supports(config, layout) || !simple_iv(config.spec.iv_mode, iv))
    return make_error(Errc::kUnsupported, "AES-XTS (AES-NI): configuration not supported");
  auto cipher = std::make_unique<AesniXtsCipher>(config, iv);
  CRYPTMAP_TRY_VOID(cipher->init(key));
  return std::unique_ptr<SectorCipher>(std::move(cipher));
}

}  // namespace cryptmap::crypto::internal

// OpenSSL EVP AES-XTS engine. Per run: one lease of a per-thread context pair (enc, dec), then
// per sector only the IV is re-initialised (EVP_CipherInit_ex with a null cipher and key keeps
// the key schedule) and the whole unit goes through one EVP_CipherUpdate, so each
// sector costs one tweak encryption plus the bulk AES-NI/VAES path.
#include <openssl/evp.h>

#include <array>
#include <climits>
#include <cstring>
#include <memory>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/context_pool.h"
#include "crypto/internal/engines.h"
#include "crypto/internal/sector_numbering.h"
#include "crypto/internal/simple_iv.h"

namespace cryptmap::crypto::internal {
namespace {

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }  // cleanses
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

struct XtsContext {
  CtxPtr enc;
  CtxPtr dec;
};

const EVP_CIPHER* xts_cipher(std::size_t key_bytes) {
  return key_bytes == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
}

class OpenSslXtsCipher final : public SectorCipher {
 public:
  OpenSslXtsCipher(const SectorCipherConfig& config, SecretBytes key, SimpleIv iv)
      : key_(std::move(key)),
        iv_(iv),
        numbering_(SectorNumbering::of(config)),
        pool_([this] { return make_context(); }) {}

  Result<void> init() {
    CRYPTMAP_TRY(ctx, make_context());  // validates the key with OpenSSL up front
    pool_.seed(std::move(ctx));
    return ok();
  }

  Result<void> encrypt(const SectorRun& run) const override { return crypt(run, 1); }
  Result<void> decrypt(const SectorRun& run) const override { return crypt(run, 0); }
  std::uint32_t sector_size() const noexcept override { return numbering_.sector_size; }
  const char* engine_name() const noexcept override { return "openssl-xts"; }

 private:
  Result<std::unique_ptr<XtsContext>> make_context() const {
    auto ctx = std::make_unique<XtsContext>();
    ctx->enc.reset(EVP_CIPHER_CTX_new());
    ctx->dec.reset(EVP_CIPHER_CTX_new());
    if (!ctx->enc || !ctx->dec)
      return make_error(Errc::kNoSpace, "AES-XTS: allocate OpenSSL cipher context");
    const auto* k = reinterpret_cast<const unsigned char*>(key_.data());
    const EVP_CIPHER* c = xts_cipher(key_.size());
    if (EVP_CipherInit_ex(ctx->enc.get(), c, nullptr, k, nullptr, 1) != 1 ||
        EVP_CipherInit_ex(ctx->dec.get(), c, nullptr, k, nullptr, 0) != 1)
      return make_error(Errc::kInvalid,
                        "AES-XTS: OpenSSL rejected the key (are both halves equal?)");
    return ctx;
  }

  Result<void> crypt(const SectorRun& run, int enc) const {
    CRYPTMAP_TRY(count, numbering_.begin_run(run));
    if (count == 0) return ok();
    const std::size_t ss = numbering_.sector_size;
    CRYPTMAP_TRY(lease, pool_.acquire());
    EVP_CIPHER_CTX* ctx = enc ? lease->enc.get() : lease->dec.get();
    auto* p = reinterpret_cast<unsigned char*>(run.data.data());
    alignas(16) unsigned char iv[16];
    for (std::size_t k = 0; k < count; ++k, p += ss) {
      const std::uint64_t cc = numbering_.cc_sector(run.first.value + k);
      write_simple_iv(iv_, numbering_.iv_sector(cc).value, reinterpret_cast<std::byte*>(iv));
      int outl = 0;
      if (EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, iv, -1) != 1 ||
          EVP_CipherUpdate(ctx, p, &outl, p, static_cast<int>(ss)) != 1 ||
          static_cast<std::size_t>(outl) != ss)
        return make_error(
            Errc::kIo, enc ? "AES-XTS: OpenSSL encrypt failed" : "AES-XTS: OpenSSL decrypt failed",
            run.first.value + k);
    }
    return ok();
  }

  SecretBytes key_;
  SimpleIv iv_;
  SectorNumbering numbering_;
  ContextPool<XtsContext> pool_;
};

}  // namespace

bool openssl_xts_supports(const SectorCipherConfig& config, const KeyLayout& layout) {
  return simple_aes_xts(config, layout).has_value();
}

Result<std::unique_ptr<SectorCipher>> make_openssl_xts_cipher(const SectorCipherConfig& config,
                                                              const KeyLayout& layout,
                                                              std::span<const std::byte> key) {
  const std::optional<SimpleIv> iv = simple_aes_xts(config, layout);
  if (!iv) return make_error(Errc::kUnsupported, "AES-XTS (OpenSSL): configuration not supported");
  CRYPTMAP_TRY(secret, SecretBytes::copy_of(key));
  auto cipher = std::make_unique<OpenSslXtsCipher>(config, std::move(secret), *iv);
  CRYPTMAP_TRY_VOID(cipher->init());
  return std::unique_ptr<SectorCipher>(std::move(cipher));
}

}  // namespace cryptmap::crypto::internal

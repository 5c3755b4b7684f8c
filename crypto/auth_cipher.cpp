// Authenticated sector encryption (docs/integrity.md §2) over OpenSSL EVP.
#include "crypto/auth_cipher.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/context_pool.h"
#include "crypto/random.h"

namespace cryptmap::crypto {
namespace {

enum class Kind { kXtsHmac, kGcm, kChaChaPoly };

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;
struct MacFree {
  void operator()(EVP_MAC* m) const noexcept { EVP_MAC_free(m); }
};
struct MacCtxFree {
  void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, MacCtxFree>;

const unsigned char* u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

Error auth_failure(std::uint64_t object) {
  Error e = make_error(Errc::kAuth, "integrity tag", object);
  e.sys_errno = EILSEQ;
  return e;
}
Error openssl_error(const char* what) { return make_error(Errc::kIo, what); }

// Keyed contexts for one direction: the key schedule and the HMAC key are set up once, then
// each sector only re-initialises the IV / resets the MAC.
struct Contexts {
  CtxPtr cipher;
  MacCtxPtr mac;
  int enc = 1;
};
struct ContextPair {
  Contexts enc, dec;
};

class EvpAuthCipher final : public AuthSectorCipher {
 public:
  EvpAuthCipher(AuthComposition c, Kind kind, std::uint32_t sector_size, SecretBytes enc_key,
                SecretBytes mac_key, std::string digest)
      : c_(std::move(c)),
        kind_(kind),
        sector_size_(sector_size),
        enc_key_(std::move(enc_key)),
        mac_key_(std::move(mac_key)),
        digest_(std::move(digest)),
        pool_([this]() -> Result<std::unique_ptr<ContextPair>> {
          auto p = std::make_unique<ContextPair>();
          CRYPTMAP_TRY(e, contexts(1));
          CRYPTMAP_TRY(d, contexts(0));
          p->enc = std::move(e);
          p->dec = std::move(d);
          return p;
        }) {}

  Result<void> init() {
    if (kind_ == Kind::kXtsHmac) {
      mac_.reset(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
      if (!mac_) return fail(openssl_error("HMAC: EVP_MAC_fetch"));
    }
    // Validate the keys once with a throw-away sector.
    std::array<std::byte, 4096> d{};
    std::array<std::byte, 128> t{};
    std::array<std::byte, 16> iv{};
    return encrypt_sector(0, std::span(d).first(sector_size_), std::span(t).first(c_.tag_size),
                          std::span(iv).first(c_.stored_iv_size));
  }

  const AuthComposition& composition() const noexcept override { return c_; }
  std::uint32_t sector_size() const noexcept override { return sector_size_; }
  const char* engine_name() const noexcept override { return "openssl-aead"; }

  Result<void> encrypt(const SectorRun& run) const override {
    const std::size_t n = run.data.size() / sector_size_;
    if (run.data.size() != n * sector_size_ || run.meta.size() != n * c_.tag_size)
      return fail(make_error(Errc::kInvalid, "authenticated run: sizes", run.first.value));
    CRYPTMAP_TRY(lease, pool_.acquire());
    Contexts& ctx = lease->enc;
    for (std::size_t i = 0; i < n; ++i)
      CRYPTMAP_TRY_VOID(encrypt_one(ctx, aad_sector(run.first + i, sector_size_),
                                    run.data.subspan(i * sector_size_, sector_size_),
                                    run.meta.subspan(i * c_.tag_size, c_.tag_size), {}));
    return ok();
  }

  Result<void> decrypt(const SectorRun& run) const override { return decrypt_verdicts(run, {}); }

  Result<void> decrypt_verdicts(const SectorRun& run, std::span<bool> failed) const override {
    const std::size_t n = run.data.size() / sector_size_;
    if (run.data.size() != n * sector_size_ || run.meta.size() != n * c_.tag_size ||
        (!failed.empty() && failed.size() != n))
      return fail(make_error(Errc::kInvalid, "authenticated run: sizes", run.first.value));
    CRYPTMAP_TRY(lease, pool_.acquire());
    Contexts& ctx = lease->dec;
    std::optional<Error> first;
    for (std::size_t i = 0; i < n; ++i) {
      auto r = decrypt_one(ctx, aad_sector(run.first + i, sector_size_),
                           run.data.subspan(i * sector_size_, sector_size_),
                           run.meta.subspan(i * c_.tag_size, c_.tag_size));
      if (!failed.empty()) failed[i] = !r;
      if (!r) {
        Error e = r.error();
        if (e.code == Errc::kAuth) e.object = (run.first + i).value;
        if (!first) first = e;
      }
    }
    if (first) return fail(*first);
    return ok();
  }

  Result<void> encrypt_sector(std::uint64_t s, std::span<std::byte> data,
                              std::span<std::byte> tuple,
                              std::span<const std::byte> forced_iv = {}) const override {
    CRYPTMAP_TRY(lease, pool_.acquire());
    return encrypt_one(lease->enc, s, data, tuple, forced_iv);
  }

  Result<void> decrypt_sector(std::uint64_t s, std::span<std::byte> data,
                              std::span<const std::byte> tuple) const override {
    CRYPTMAP_TRY(lease, pool_.acquire());
    return decrypt_one(lease->dec, s, data, tuple);
  }

 private:
  Result<Contexts> contexts(int enc) const {
    Contexts c;
    c.enc = enc;
    c.cipher.reset(EVP_CIPHER_CTX_new());
    if (!c.cipher) return fail(openssl_error("authenticated cipher: context"));
    const EVP_CIPHER* cipher = nullptr;
    if (kind_ == Kind::kXtsHmac)
      cipher = enc_key_.size() == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts();
    else if (kind_ == Kind::kChaChaPoly)
      cipher = EVP_chacha20_poly1305();
    else
      cipher = enc_key_.size() == 32   ? EVP_aes_256_gcm()
               : enc_key_.size() == 24 ? EVP_aes_192_gcm()
                                       : EVP_aes_128_gcm();
    if (EVP_CipherInit_ex(c.cipher.get(), cipher, nullptr, nullptr, nullptr, enc) != 1)
      return fail(openssl_error("authenticated cipher: init"));
    if (kind_ != Kind::kXtsHmac && EVP_CIPHER_CTX_ctrl(c.cipher.get(), EVP_CTRL_AEAD_SET_IVLEN,
                                                       static_cast<int>(c_.iv_size), nullptr) != 1)
      return fail(openssl_error("AEAD: IV length"));
    if (EVP_CipherInit_ex(c.cipher.get(), nullptr, nullptr, u8(enc_key_.data()), nullptr, enc) != 1)
      return fail(openssl_error("authenticated cipher: key"));
    if (kind_ == Kind::kXtsHmac) {
      c.mac.reset(EVP_MAC_CTX_new(mac_.get()));
      if (!c.mac) return fail(openssl_error("HMAC: context"));
      OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(
                                 OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest_.c_str()), 0),
                             OSSL_PARAM_construct_end()};
      if (EVP_MAC_init(c.mac.get(), u8(mac_key_.data()), mac_key_.size(), params) != 1)
        return fail(openssl_error("HMAC: key"));
    }
    return c;
  }

  Result<void> encrypt_one(Contexts& ctx, std::uint64_t s, std::span<std::byte> data,
                           std::span<std::byte> tuple, std::span<const std::byte> forced_iv) const {
    if (data.size() != sector_size_ || tuple.size() != c_.tag_size)
      return fail(make_error(Errc::kInvalid, "authenticated sector: sizes", s));
    std::array<std::byte, 8 + 16> aad{};
    store_le64(aad.data(), s);
    const std::span<std::byte> iv(aad.data() + 8, c_.iv_size);
    if (c_.stored_iv_size != 0) {
      if (!forced_iv.empty()) {
        if (forced_iv.size() != c_.iv_size)
          return fail(make_error(Errc::kInvalid, "authenticated sector: IV size", s));
        std::copy(forced_iv.begin(), forced_iv.end(), iv.begin());
      } else {
        CRYPTMAP_TRY_VOID(random_bytes(iv));
      }
    } else {
      store_le64(iv.data(), s);  // plain64: LE64(sector), zero padded
    }
    const std::span<const std::byte> a(aad.data(), 8 + c_.iv_size);
    const std::span<std::byte> tag = tuple.first(c_.auth_size);
    std::copy(iv.begin(), iv.begin() + static_cast<std::ptrdiff_t>(c_.stored_iv_size),
              tuple.begin() + static_cast<std::ptrdiff_t>(c_.auth_size));
    std::fill(tuple.begin() + static_cast<std::ptrdiff_t>(c_.auth_size + c_.stored_iv_size),
              tuple.end(), std::byte{0});
    if (kind_ == Kind::kXtsHmac) {
      CRYPTMAP_TRY_VOID(xts(ctx, data, iv));
      return hmac(ctx, a, data, tag);
    }
    return aead(ctx, a, iv, data, tag);
  }

  Result<void> decrypt_one(Contexts& ctx, std::uint64_t s, std::span<std::byte> data,
                           std::span<const std::byte> tuple) const {
    if (data.size() != sector_size_ || tuple.size() != c_.tag_size)
      return fail(make_error(Errc::kInvalid, "authenticated sector: sizes", s));
    std::array<std::byte, 8 + 16> aad{};
    store_le64(aad.data(), s);
    const std::span<std::byte> iv(aad.data() + 8, c_.iv_size);
    if (c_.stored_iv_size != 0)
      std::copy_n(tuple.begin() + static_cast<std::ptrdiff_t>(c_.auth_size), c_.stored_iv_size,
                  iv.begin());
    else
      store_le64(iv.data(), s);
    const std::span<const std::byte> a(aad.data(), 8 + c_.iv_size);
    std::array<std::byte, 64> tag{};
    std::copy_n(tuple.begin(), c_.auth_size, tag.begin());
    const std::span<std::byte> want(tag.data(), c_.auth_size);
    if (kind_ == Kind::kXtsHmac) {
      std::array<std::byte, 64> got{};
      CRYPTMAP_TRY_VOID(hmac(ctx, a, data, std::span(got).first(c_.auth_size)));
      if (CRYPTO_memcmp(got.data(), want.data(), c_.auth_size) != 0) return fail(auth_failure(s));
      return xts(ctx, data, iv);
    }
    auto r = aead(ctx, a, iv, data, want);
    if (!r) std::fill(data.begin(), data.end(), std::byte{0});  // never unverified plaintext
    return r;
  }

  Result<void> xts(Contexts& ctx, std::span<std::byte> data, std::span<const std::byte> iv) const {
    int len = 0;
    if (EVP_CipherInit_ex(ctx.cipher.get(), nullptr, nullptr, nullptr, u8(iv.data()), ctx.enc) !=
            1 ||
        EVP_CipherUpdate(ctx.cipher.get(), u8(data.data()), &len, u8(data.data()),
                         static_cast<int>(data.size())) != 1)
      return fail(openssl_error("AES-XTS: EVP_CipherUpdate"));
    return ok();
  }

  Result<void> hmac(Contexts& ctx, std::span<const std::byte> aad, std::span<const std::byte> c,
                    std::span<std::byte> out) const {
    std::array<unsigned char, 64> full{};
    std::size_t len = 0;
    // A null key re-initialises the HMAC with the key already set (OpenSSL 3 HMAC provider).
    if (EVP_MAC_init(ctx.mac.get(), nullptr, 0, nullptr) != 1 ||
        EVP_MAC_update(ctx.mac.get(), u8(aad.data()), aad.size()) != 1 ||
        EVP_MAC_update(ctx.mac.get(), u8(c.data()), c.size()) != 1 ||
        EVP_MAC_final(ctx.mac.get(), full.data(), &len, full.size()) != 1 || len < out.size())
      return fail(openssl_error("HMAC: EVP_MAC"));
    std::memcpy(out.data(), full.data(), out.size());
    OPENSSL_cleanse(full.data(), full.size());
    return ok();
  }

  Result<void> aead(Contexts& ctx, std::span<const std::byte> aad, std::span<const std::byte> iv,
                    std::span<std::byte> data, std::span<std::byte> tag) const {
    EVP_CIPHER_CTX* c = ctx.cipher.get();
    int len = 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, u8(iv.data()), ctx.enc) != 1 ||
        EVP_CipherUpdate(c, nullptr, &len, u8(aad.data()), static_cast<int>(aad.size())) != 1 ||
        EVP_CipherUpdate(c, u8(data.data()), &len, u8(data.data()),
                         static_cast<int>(data.size())) != 1)
      return fail(openssl_error("AEAD: EVP_CipherUpdate"));
    if (ctx.enc == 0) {
      if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(tag.size()), tag.data()) !=
          1)
        return fail(openssl_error("AEAD: set tag"));
      if (EVP_CipherFinal_ex(c, nullptr, &len) != 1) return fail(auth_failure(0));
      return ok();
    }
    unsigned char fin[16];
    if (EVP_CipherFinal_ex(c, fin, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(tag.size()), tag.data()) !=
            1)
      return fail(openssl_error("AEAD: get tag"));
    return ok();
  }

  AuthComposition c_;
  Kind kind_;
  std::uint32_t sector_size_;
  SecretBytes enc_key_;
  SecretBytes mac_key_;
  std::string digest_;
  std::unique_ptr<EVP_MAC, MacFree> mac_;  // before pool_: contexts are made from it
  internal::ContextPool<ContextPair> pool_;
};

}  // namespace

std::uint64_t aad_sector(SectorIndex index, std::uint32_t sector_size) noexcept {
  return index.value * (sector_size / 512);
}

Result<AuthComposition> auth_composition(std::string_view encryption, std::string_view integrity,
                                         std::optional<std::size_t> integrity_key_size) {
  AuthComposition c;
  c.encryption = std::string(encryption);
  c.integrity = std::string(integrity);
  const bool hmac256 = integrity == "hmac(sha256)";
  const bool hmac512 = integrity == "hmac(sha512)";
  if ((encryption == "aes-xts-random" || encryption == "aes-xts-plain64") && (hmac256 || hmac512)) {
    c.iv_size = 16;
    c.stored_iv_size = encryption == "aes-xts-random" ? 16 : 0;
    c.auth_size = hmac256 ? 32 : 64;
    c.mac_key_size = integrity_key_size.value_or(c.auth_size);
    c.cipher_key_size = 64;
  } else if (encryption == "aes-gcm-random" && integrity == "aead") {
    c.iv_size = c.stored_iv_size = 12;
    c.auth_size = 16;
    c.cipher_key_size = 32;
  } else if (encryption == "chacha20-random" && integrity == "poly1305") {
    c.iv_size = c.stored_iv_size = 12;
    c.auth_size = 16;
    c.cipher_key_size = 32;
  } else {
    return fail(make_error_fmt(Errc::kUnsupported, "authenticated encryption", 0,
                               "'%.40s' with integrity '%.40s' is not supported",
                               std::string(encryption).c_str(), std::string(integrity).c_str()));
  }
  c.tag_size = c.auth_size + c.stored_iv_size;
  return c;
}

Result<std::unique_ptr<AuthSectorCipher>> make_auth_sector_cipher(
    std::string_view encryption, std::string_view integrity, std::uint32_t sector_size,
    std::span<const std::byte> key, std::optional<std::size_t> integrity_key_size) {
  CRYPTMAP_TRY(c, auth_composition(encryption, integrity, integrity_key_size));
  if (sector_size < 512 || sector_size > 4096 || (sector_size & (sector_size - 1)) != 0)
    return fail(make_error(Errc::kInvalid, "authenticated encryption: sector size", sector_size));
  if (key.size() <= c.mac_key_size)
    return fail(make_error(Errc::kInvalid, "authenticated encryption: key size", key.size()));
  const std::size_t enc_len = key.size() - c.mac_key_size;
  Kind kind = Kind::kXtsHmac;
  if (c.integrity == "aead") {
    kind = Kind::kGcm;
    if (enc_len != 16 && enc_len != 24 && enc_len != 32)
      return fail(make_error(Errc::kInvalid, "aes-gcm: key size", enc_len));
  } else if (c.integrity == "poly1305") {
    kind = Kind::kChaChaPoly;
    if (enc_len != 32) return fail(make_error(Errc::kInvalid, "chacha20: key size", enc_len));
  } else if (enc_len != 32 && enc_len != 64) {
    return fail(make_error(Errc::kInvalid, "aes-xts: key size", enc_len));
  }
  CRYPTMAP_TRY(enc_key, SecretBytes::copy_of(key.first(enc_len)));
  CRYPTMAP_TRY(mac_key, SecretBytes::copy_of(key.subspan(enc_len)));
  std::string digest = c.integrity == "hmac(sha512)" ? "SHA512" : "SHA256";
  auto cipher = std::make_unique<EvpAuthCipher>(c, kind, sector_size, std::move(enc_key),
                                                std::move(mac_key), std::move(digest));
  CRYPTMAP_TRY_VOID(cipher->init());
  return std::unique_ptr<AuthSectorCipher>(std::move(cipher));
}

}  // namespace cryptmap::crypto

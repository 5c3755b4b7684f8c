#include "crypto/key_protect.h"

#include <crypto++/aes.h>
#include <crypto++/ccm.h>
#include <crypto++/filters.h>
#include <openssl/evp.h>

#include <array>
#include <cstring>
#include <exception>

#include "base/bytes.h"
#include "base/secret.h"

namespace cryptmap::crypto {
namespace {

constexpr std::size_t kCcmTag = 16;

const CryptoPP::byte* cp(std::span<const std::byte> s) {
  return reinterpret_cast<const CryptoPP::byte*>(s.data());
}
CryptoPP::byte* mp(std::span<std::byte> s) { return reinterpret_cast<CryptoPP::byte*>(s.data()); }

bool aes_key_size(std::size_t n) { return n == 16 || n == 24 || n == 32; }

Result<void> check_ccm(std::span<const std::byte> key, std::span<const std::byte> nonce,
                       std::size_t in, std::size_t out, std::size_t tag) {
  if (!aes_key_size(key.size()))
    return make_error_fmt(Errc::kInvalid, "AES-CCM: key size", kNoObject, "%zu bytes", key.size());
  if (nonce.size() < 7 || nonce.size() > 13)
    return make_error_fmt(Errc::kInvalid, "AES-CCM: nonce size", kNoObject, "%zu bytes",
                          nonce.size());
  if (in != out || tag != kCcmTag)
    return make_error(Errc::kInvalid, "AES-CCM: buffer sizes (output = input, tag 16 bytes)");
  return ok();
}

}  // namespace

Result<void> aes_ccm_decrypt(std::span<const std::byte> key, std::span<const std::byte> nonce,
                             std::span<const std::byte> ciphertext, std::span<const std::byte> tag,
                             std::span<std::byte> out) {
  CRYPTMAP_TRY_VOID(check_ccm(key, nonce, ciphertext.size(), out.size(), tag.size()));
  try {
    CryptoPP::CCM<CryptoPP::AES, kCcmTag>::Decryption d;
    d.SetKeyWithIV(cp(key), key.size(), cp(nonce), nonce.size());
    d.SpecifyDataLengths(0, ciphertext.size(), 0);
    d.ProcessData(mp(out), cp(ciphertext), ciphertext.size());
    if (!d.TruncatedVerify(cp(tag), tag.size())) {
      secure_zero(out.data(), out.size());
      return make_error(Errc::kBadKey, "AES-CCM: authentication tag does not match");
    }
  } catch (const std::exception&) {
    secure_zero(out.data(), out.size());
    return make_error(Errc::kInvalid, "AES-CCM: the library refused the parameters");
  }
  return ok();
}

Result<void> aes_ccm_encrypt(std::span<const std::byte> key, std::span<const std::byte> nonce,
                             std::span<const std::byte> plaintext, std::span<std::byte> ciphertext,
                             std::span<std::byte> tag) {
  CRYPTMAP_TRY_VOID(check_ccm(key, nonce, plaintext.size(), ciphertext.size(), tag.size()));
  try {
    CryptoPP::CCM<CryptoPP::AES, kCcmTag>::Encryption e;
    e.SetKeyWithIV(cp(key), key.size(), cp(nonce), nonce.size());
    e.SpecifyDataLengths(0, plaintext.size(), 0);
    e.ProcessData(mp(ciphertext), cp(plaintext), plaintext.size());
    e.TruncatedFinal(mp(tag), tag.size());
  } catch (const std::exception&) {
    return make_error(Errc::kInvalid, "AES-CCM: the library refused the parameters");
  }
  return ok();
}

namespace {

// RFC 3394 over a raw AES block function (OpenSSL ECB, one block at a time).
class AesEcb {
 public:
  AesEcb() : ctx_(EVP_CIPHER_CTX_new()) {}
  ~AesEcb() { EVP_CIPHER_CTX_free(ctx_); }
  AesEcb(const AesEcb&) = delete;
  AesEcb& operator=(const AesEcb&) = delete;
  Result<void> init(std::span<const std::byte> key, bool encrypt) {
    const EVP_CIPHER* c = key.size() == 16   ? EVP_aes_128_ecb()
                          : key.size() == 24 ? EVP_aes_192_ecb()
                          : key.size() == 32 ? EVP_aes_256_ecb()
                                             : nullptr;
    if (c == nullptr || ctx_ == nullptr)
      return make_error_fmt(Errc::kInvalid, "AES key wrap: key size", kNoObject, "%zu bytes",
                            key.size());
    if (EVP_CipherInit_ex(ctx_, c, nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                          nullptr, encrypt ? 1 : 0) != 1)
      return make_error(Errc::kInvalid, "AES key wrap: OpenSSL refused the key");
    EVP_CIPHER_CTX_set_padding(ctx_, 0);
    return ok();
  }
  void block(std::byte* b) {
    int outl = 0;
    auto* u = reinterpret_cast<unsigned char*>(b);
    EVP_CipherUpdate(ctx_, u, &outl, u, 16);
  }

 private:
  EVP_CIPHER_CTX* ctx_;
};

constexpr std::uint64_t kWrapIv = 0xA6A6A6A6A6A6A6A6ull;

}  // namespace

Result<void> aes_key_unwrap(std::span<const std::byte> kek, std::span<const std::byte> wrapped,
                            std::span<std::byte> out) {
  if (wrapped.size() % 8 != 0 || wrapped.size() < 24 || out.size() + 8 != wrapped.size())
    return make_error_fmt(Errc::kInvalid, "AES key unwrap: sizes", kNoObject,
                          "wrapped %zu bytes, out %zu bytes", wrapped.size(), out.size());
  AesEcb aes;
  CRYPTMAP_TRY_VOID(aes.init(kek, false));
  const std::size_t n = out.size() / 8;
  std::array<std::byte, 16> b{};
  std::memcpy(b.data(), wrapped.data(), 8);
  std::memcpy(out.data(), wrapped.data() + 8, out.size());
  for (int j = 5; j >= 0; --j) {
    for (std::size_t i = n; i >= 1; --i) {
      const std::uint64_t t = n * static_cast<std::uint64_t>(j) + i;
      store_be64(b.data(), load_be64(b.data()) ^ t);
      std::memcpy(b.data() + 8, out.data() + 8 * (i - 1), 8);
      aes.block(b.data());
      std::memcpy(out.data() + 8 * (i - 1), b.data() + 8, 8);
    }
  }
  const bool good = load_be64(b.data()) == kWrapIv;
  secure_zero(b.data(), b.size());
  if (!good) {
    secure_zero(out.data(), out.size());
    return make_error(Errc::kBadKey, "AES key unwrap: integrity check failed (wrong key)");
  }
  return ok();
}

Result<void> aes_key_wrap(std::span<const std::byte> kek, std::span<const std::byte> key,
                          std::span<std::byte> wrapped) {
  if (key.size() % 8 != 0 || key.size() < 16 || wrapped.size() != key.size() + 8)
    return make_error_fmt(Errc::kInvalid, "AES key wrap: sizes", kNoObject,
                          "key %zu bytes, wrapped %zu bytes", key.size(), wrapped.size());
  AesEcb aes;
  CRYPTMAP_TRY_VOID(aes.init(kek, true));
  const std::size_t n = key.size() / 8;
  std::array<std::byte, 16> b{};
  store_be64(b.data(), kWrapIv);
  std::memcpy(wrapped.data() + 8, key.data(), key.size());
  for (int j = 0; j <= 5; ++j) {
    for (std::size_t i = 1; i <= n; ++i) {
      std::memcpy(b.data() + 8, wrapped.data() + 8 * i, 8);
      aes.block(b.data());
      const std::uint64_t t = n * static_cast<std::uint64_t>(j) + i;
      store_be64(b.data(), load_be64(b.data()) ^ t);
      std::memcpy(wrapped.data() + 8 * i, b.data() + 8, 8);
    }
  }
  std::memcpy(wrapped.data(), b.data(), 8);
  secure_zero(b.data(), b.size());
  return ok();
}

Result<void> aes_xts_decrypt_unit(std::span<const std::byte> key, std::uint64_t unit,
                                  std::span<std::byte> data) {
  const EVP_CIPHER* c = key.size() == 32   ? EVP_aes_128_xts()
                        : key.size() == 64 ? EVP_aes_256_xts()
                                           : nullptr;
  if (c == nullptr || data.size() < 16 || data.size() % 16 != 0 || data.size() > (1u << 24))
    return make_error(Errc::kInvalid, "AES-XTS unit: key or data size");
  std::array<unsigned char, 16> tweak{};
  store_le64(reinterpret_cast<std::byte*>(tweak.data()), unit);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return make_error(Errc::kNoSpace, "AES-XTS unit: out of memory");
  int outl = 0;
  auto* d = reinterpret_cast<unsigned char*>(data.data());
  const bool good =
      EVP_DecryptInit_ex(ctx, c, nullptr, reinterpret_cast<const unsigned char*>(key.data()),
                         tweak.data()) == 1 &&
      EVP_DecryptUpdate(ctx, d, &outl, d, static_cast<int>(data.size())) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!good) return make_error(Errc::kInvalid, "AES-XTS unit: OpenSSL refused the key");
  return ok();
}

Result<void> bitlk_stretch(std::span<const std::byte> initial, std::span<const std::byte> salt,
                           std::uint32_t iterations, std::span<std::byte> out) {
  if (initial.size() != 32 || salt.size() != 16 || out.size() != 32)
    return make_error(Errc::kInvalid, "BitLocker KDF: sizes (initial 32, salt 16, out 32)");
  CRYPTMAP_TRY(state, SecretBytes::allocate(88));
  std::byte* s = state.data();
  std::memcpy(s + 32, initial.data(), 32);
  std::memcpy(s + 64, salt.data(), 16);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return make_error(Errc::kNoSpace, "BitLocker KDF: out of memory");
  const EVP_MD* md = EVP_sha256();
  bool ok_all = true;
  for (std::uint32_t i = 0; i < iterations && ok_all; ++i) {
    store_le64(s + 80, i);
    unsigned int len = 0;
    ok_all = EVP_DigestInit_ex(ctx, md, nullptr) == 1 && EVP_DigestUpdate(ctx, s, 88) == 1 &&
             EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(s), &len) == 1;
  }
  EVP_MD_CTX_free(ctx);
  if (!ok_all) return make_error(Errc::kIo, "BitLocker KDF: SHA-256 failed");
  std::memcpy(out.data(), s, 32);
  return ok();
}

std::uint32_t crc32_ieee(std::span<const std::byte> data) noexcept {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (std::byte b : data) {
    crc ^= std::to_integer<std::uint32_t>(b);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

std::uint32_t crc32c(std::uint32_t seed, std::span<const std::byte> data) noexcept {
  std::uint32_t crc = seed;
  for (std::byte b : data) {
    crc ^= std::to_integer<std::uint32_t>(b);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return crc;
}

}  // namespace cryptmap::crypto

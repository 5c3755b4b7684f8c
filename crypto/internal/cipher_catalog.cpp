#include "crypto/internal/cipher_catalog.h"

#include <crypto++/aes.h>
#include <crypto++/blowfish.h>
#include <crypto++/camellia.h>
#include <crypto++/cast.h>
#include <crypto++/des.h>
#include <crypto++/serpent.h>
#include <crypto++/twofish.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <string>

#include "base/check.h"
#include "base/secret.h"
#include "crypto/internal/kuznyechik.h"

namespace cryptmap::crypto::internal {
namespace {

// Key sizes: what both the Linux crypto API and Crypto++ accept.
constexpr std::array<BlockCipherInfo, 11> kCiphers{{
    {"aes", 16, 16, 32, 8},
    {"serpent", 16, 16, 32, 8},
    {"twofish", 16, 16, 32, 8},
    {"camellia", 16, 16, 32, 8},
    {"cast5", 8, 5, 16, 1},
    {"cast6", 16, 16, 32, 4},
    {"blowfish", 8, 4, 56, 1},
    {"blowfish_le", 8, 4, 56, 1},  // TrueCrypt's byte order (docs/tcrypt.md §5)
    {"des3_ede", 8, 24, 24, 1},
    {"cipher_null", 16, 0, 0, 1},
    {"kuznyechik", 16, 32, 32, 8},  // cryptmap's own (internal/kuznyechik.h)
}};

template <class Cipher>
class CryptoppBlockCipher final : public BlockCipher {
 public:
  explicit CryptoppBlockCipher(std::span<const std::byte> key) {
    const auto* k = reinterpret_cast<const CryptoPP::byte*>(key.data());
    enc_.SetKey(k, key.size());
    dec_.SetKey(k, key.size());
  }
  std::size_t block_size() const noexcept override { return Cipher::BLOCKSIZE; }
  void encrypt(const std::byte* in, const std::byte* xor_out, std::byte* out,
               std::size_t len) override {
    enc_.AdvancedProcessBlocks(b(in), b(xor_out), b(out), len,
                               CryptoPP::BlockTransformation::BT_AllowParallel);
  }
  void decrypt(const std::byte* in, const std::byte* xor_out, std::byte* out,
               std::size_t len) override {
    dec_.AdvancedProcessBlocks(b(in), b(xor_out), b(out), len,
                               CryptoPP::BlockTransformation::BT_AllowParallel);
  }

 private:
  static const CryptoPP::byte* b(const std::byte* p) {
    return reinterpret_cast<const CryptoPP::byte*>(p);
  }
  static CryptoPP::byte* b(std::byte* p) { return reinterpret_cast<CryptoPP::byte*>(p); }
  typename Cipher::Encryption enc_;
  typename Cipher::Decryption dec_;
};

// OpenSSL EVP ECB as a block primitive: used for Camellia, where OpenSSL's x86-64 assembly is
// several times faster than Crypto++'s C++ (the chain modes stay ours).
class EvpBlockCipher final : public BlockCipher {
 public:
  static std::unique_ptr<BlockCipher> create(const EVP_CIPHER* c, std::size_t block,
                                             std::span<const std::byte> key) {
    auto b = std::unique_ptr<EvpBlockCipher>(new EvpBlockCipher(block));
    b->enc_ = EVP_CIPHER_CTX_new();
    b->dec_ = EVP_CIPHER_CTX_new();
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    if (b->enc_ == nullptr || b->dec_ == nullptr ||
        EVP_CipherInit_ex(b->enc_, c, nullptr, k, nullptr, 1) != 1 ||
        EVP_CipherInit_ex(b->dec_, c, nullptr, k, nullptr, 0) != 1)
      return nullptr;
    EVP_CIPHER_CTX_set_padding(b->enc_, 0);
    EVP_CIPHER_CTX_set_padding(b->dec_, 0);
    return b;
  }
  ~EvpBlockCipher() override {
    secure_zero(tmp_.data(), tmp_.size());  // may hold CTR keystream
    EVP_CIPHER_CTX_free(enc_);              // cleanses
    EVP_CIPHER_CTX_free(dec_);
  }
  std::size_t block_size() const noexcept override { return block_; }
  void encrypt(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) override {
    run(enc_, in, x, out, len);
  }
  void decrypt(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) override {
    run(dec_, in, x, out, len);
  }

 private:
  explicit EvpBlockCipher(std::size_t block) : block_(block) {}
  // out = E(in) XOR x; `x` may alias `out` (CTR passes the data as both), so the cipher output
  // goes through a scratch buffer when there is an XOR operand.
  void run(EVP_CIPHER_CTX* c, const std::byte* in, const std::byte* x, std::byte* out,
           std::size_t len) {
    for (std::size_t off = 0; off < len; off += tmp_.size()) {
      const std::size_t n = std::min(tmp_.size(), len - off);
      std::byte* dst = x != nullptr ? tmp_.data() : out + off;
      int outl = 0;
      // ECB on whole blocks cannot fail once keyed: an invariant.
      CRYPTMAP_CHECK(EVP_CipherUpdate(c, reinterpret_cast<unsigned char*>(dst), &outl,
                                      reinterpret_cast<const unsigned char*>(in + off),
                                      static_cast<int>(n)) == 1);
      CRYPTMAP_CHECK(static_cast<std::size_t>(outl) == n);
      if (x != nullptr)
        for (std::size_t i = 0; i < n; ++i) out[off + i] = tmp_[i] ^ x[off + i];
    }
  }
  std::array<std::byte, 4096> tmp_{};
  std::size_t block_;
  EVP_CIPHER_CTX* enc_ = nullptr;
  EVP_CIPHER_CTX* dec_ = nullptr;
};

// Blowfish as TrueCrypt 1.x-4.x runs it (cryptsetup's "blowfish_le", docs/tcrypt.md §5): each
// 32-bit half of a block is read and written little-endian, where standard Blowfish (the
// kernel's, Crypto++'s) is big-endian. So the block's two halves are byte-reversed around the
// standard cipher.
class BlowfishLeBlockCipher final : public BlockCipher {
 public:
  explicit BlowfishLeBlockCipher(std::span<const std::byte> key) : inner_(key) {}
  std::size_t block_size() const noexcept override { return 8; }
  void encrypt(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) override {
    run(true, in, x, out, len);
  }
  void decrypt(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) override {
    run(false, in, x, out, len);
  }

 private:
  static void swap_halves(std::byte* b) {
    std::swap(b[0], b[3]);
    std::swap(b[1], b[2]);
    std::swap(b[4], b[7]);
    std::swap(b[5], b[6]);
  }
  // `x` may alias `out` (as for every BlockCipher), so each block goes through `t`.
  void run(bool enc, const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) {
    std::array<std::byte, 8> t{};
    for (std::size_t off = 0; off < len; off += 8) {
      std::memcpy(t.data(), in + off, 8);
      swap_halves(t.data());
      if (enc)
        inner_.encrypt(t.data(), nullptr, t.data(), 8);
      else
        inner_.decrypt(t.data(), nullptr, t.data(), 8);
      swap_halves(t.data());
      if (x != nullptr)
        for (std::size_t i = 0; i < 8; ++i) t[i] ^= x[off + i];
      std::memcpy(out + off, t.data(), 8);
    }
    secure_zero(t.data(), t.size());
  }
  CryptoppBlockCipher<CryptoPP::Blowfish> inner_;
};

class NullBlockCipher final : public BlockCipher {
 public:
  std::size_t block_size() const noexcept override { return 16; }
  void encrypt(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) override {
    copy_xor(in, x, out, len);
  }
  void decrypt(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) override {
    copy_xor(in, x, out, len);
  }

 private:
  static void copy_xor(const std::byte* in, const std::byte* x, std::byte* out, std::size_t len) {
    if (in != out) std::memmove(out, in, len);
    if (x != nullptr)
      for (std::size_t i = 0; i < len; ++i) out[i] ^= x[i];
  }
};

}  // namespace

const BlockCipherInfo* find_block_cipher(std::string_view name) noexcept {
  for (const auto& c : kCiphers)
    if (c.name == name) return &c;
  return nullptr;
}

bool valid_cipher_key(const BlockCipherInfo& info, std::size_t key_bytes) noexcept {
  return key_bytes >= info.min_key && key_bytes <= info.max_key &&
         (key_bytes - info.min_key) % info.key_step == 0;
}

Result<KeyLayout> key_layout(const CipherSpec& spec, std::size_t key_bytes) {
  KeyLayout l;
  l.cipher = find_block_cipher(spec.cipher);
  if (l.cipher == nullptr)
    return make_error_fmt(Errc::kUnsupported, "cipher", kNoObject, "'%.40s' is not supported",
                          spec.cipher.c_str());
  const std::size_t bs = l.cipher->block_size;
  const bool ecb = spec.chain_mode == "ecb";
  if ((spec.chain_mode == "xts" || spec.chain_mode == "lrw") && bs != 16)
    return make_error_fmt(Errc::kUnsupported, "cipher spec: chain mode", kNoObject,
                          "%s needs a 16-byte block cipher; %s has %zu-byte blocks",
                          spec.chain_mode.c_str(), spec.cipher.c_str(), bs);
  if (spec.cipher == "cipher_null" && !ecb)
    return make_error(Errc::kUnsupported, "cipher spec: cipher_null only works as cipher_null-ecb");
  l.iv_size = ecb ? 0 : (bs < 8 ? 8 : bs);
  l.tfm_count = spec.keycount;
  std::size_t parts = spec.keycount;
  if (spec.iv_mode == "tcw") {
    l.extra_bytes = l.iv_size + 16;
  } else if (spec.iv_mode == "elephant") {
    l.extra_bytes = key_bytes / 2;  // dm-crypt: the second half keys the sector-key cipher
  } else if (spec.iv_mode == "lmk" && key_bytes % parts != 0) {
    ++parts;  // loop-AES v3: a 65th key of the same size is the IV seed
    l.extra_bytes = key_bytes / parts;
  }
  if (key_bytes < l.extra_bytes || (key_bytes - l.extra_bytes) % l.tfm_count != 0)
    return make_error_fmt(Errc::kInvalid, "key size", kNoObject,
                          "%zu bytes cannot be split into %zu keys (+%zu extra) for %s", key_bytes,
                          l.tfm_count, l.extra_bytes, spec.to_string().c_str());
  l.subkey_bytes = (key_bytes - l.extra_bytes) / l.tfm_count;
  if (spec.chain_mode == "xts") {
    l.cipher_key_bytes = l.subkey_bytes / 2;
    if (l.subkey_bytes % 2 != 0 || !valid_cipher_key(*l.cipher, l.cipher_key_bytes))
      return make_error_fmt(Errc::kInvalid, "key size", kNoObject,
                            "%zu bytes per key is not twice a valid %s key (XTS)", l.subkey_bytes,
                            spec.cipher.c_str());
  } else if (spec.chain_mode == "lrw") {
    if (l.subkey_bytes < bs || !valid_cipher_key(*l.cipher, l.subkey_bytes - bs))
      return make_error_fmt(Errc::kInvalid, "key size", kNoObject,
                            "%zu bytes per key is not a valid %s key + 16-byte LRW tweak key",
                            l.subkey_bytes, spec.cipher.c_str());
    l.cipher_key_bytes = l.subkey_bytes - bs;
  } else {
    l.cipher_key_bytes = l.subkey_bytes;
    if (!valid_cipher_key(*l.cipher, l.cipher_key_bytes))
      return make_error_fmt(Errc::kInvalid, "key size", kNoObject,
                            "%zu bytes per key is not valid for %s (%zu..%zu)", l.subkey_bytes,
                            spec.cipher.c_str(), l.cipher->min_key, l.cipher->max_key);
  }
  if (spec.iv_mode == "tcw" && l.iv_size != 16 && l.iv_size != 8)
    return make_error(Errc::kUnsupported, "cipher spec: tcw IV size");
  if (spec.iv_mode == "lmk" && l.iv_size != 16)
    return make_error(Errc::kUnsupported, "cipher spec: lmk needs a 16-byte block cipher");
  if (spec.iv_mode == "benbi" && (bs > 512 || (bs & (bs - 1)) != 0))
    return make_error(Errc::kUnsupported, "cipher spec: benbi block size");
  return l;
}

Result<std::unique_ptr<BlockCipher>> make_block_cipher(std::string_view name,
                                                       std::span<const std::byte> key) {
  const BlockCipherInfo* info = find_block_cipher(name);
  if (info == nullptr)
    return make_error_fmt(Errc::kUnsupported, "block cipher", kNoObject, "'%.40s' unknown",
                          std::string(name).c_str());
  if (!valid_cipher_key(*info, key.size()))
    return make_error_fmt(Errc::kInvalid, "block cipher key size", kNoObject,
                          "%zu bytes is not valid for %.20s", key.size(),
                          std::string(name).c_str());
  try {
    if (name == "aes")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::AES>(key));
    if (name == "serpent")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::Serpent>(key));
    if (name == "twofish")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::Twofish>(key));
    if (name == "camellia") {
      const EVP_CIPHER* c = key.size() == 16   ? EVP_camellia_128_ecb()
                            : key.size() == 24 ? EVP_camellia_192_ecb()
                                               : EVP_camellia_256_ecb();
      if (auto b = EvpBlockCipher::create(c, 16, key)) return b;
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::Camellia>(key));
    }
    if (name == "cast5")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::CAST128>(key));
    if (name == "cast6")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::CAST256>(key));
    if (name == "blowfish")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::Blowfish>(key));
    if (name == "blowfish_le") return std::unique_ptr<BlockCipher>(new BlowfishLeBlockCipher(key));
    if (name == "des3_ede")
      return std::unique_ptr<BlockCipher>(new CryptoppBlockCipher<CryptoPP::DES_EDE3>(key));
    if (name == "cipher_null") return std::unique_ptr<BlockCipher>(new NullBlockCipher);
    if (name == "kuznyechik") return make_kuznyechik(key);
  } catch (const std::bad_alloc&) {
    return make_error(Errc::kNoSpace, "block cipher: out of memory");
  } catch (const std::exception&) {
    return make_error_fmt(Errc::kInvalid, "block cipher: Crypto++ rejected the key", kNoObject,
                          "%.20s, %zu bytes", std::string(name).c_str(), key.size());
  }
  return make_error(Errc::kUnsupported, "block cipher: no implementation");
}

}  // namespace cryptmap::crypto::internal

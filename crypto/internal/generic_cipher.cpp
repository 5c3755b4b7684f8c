// Generic sector cipher: any catalogued block cipher (Crypto++), chain modes implemented here
// over its ECB primitive (xts, cbc, ecb, ctr, lrw), any IvGenerator, keycount multi-key, lmk/tcw
// extra keys. Per-thread state (keyed ciphers, IV generators) lives in a ContextPool.
// The same machinery with OpenSSL EVP chain modes is the "openssl" engine for AES
// (cbc/ecb/ctr/xts with any IV mode): CBC encryption is latency-bound, and OpenSSL's AES-NI CBC
// runs one EVP call per sector instead of one Crypto++ call per 16-byte block.
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/check.h"
#include "base/secret.h"
#include "crypto/internal/aesni_cbc.h"
#include "crypto/internal/cipher_catalog.h"
#include "crypto/internal/context_pool.h"
#include "crypto/internal/engines.h"
#include "crypto/internal/iv_generator.h"
#include "crypto/internal/sector_numbering.h"

namespace cryptmap::crypto::internal {
namespace {

constexpr std::size_t kMaxUnit = 4096;

void xor_bytes(std::byte* dst, const std::byte* src, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) dst[i] ^= src[i];
}

// A chain mode over one transform's key. Not thread-safe. `unit` is a whole encryption unit.
class ChainMode {
 public:
  virtual ~ChainMode() = default;
  virtual void encrypt(std::span<std::byte> unit, std::span<const std::byte> iv) = 0;
  virtual void decrypt(std::span<std::byte> unit, std::span<const std::byte> iv) = 0;
};

class EcbMode final : public ChainMode {
 public:
  explicit EcbMode(std::unique_ptr<BlockCipher> c) : c_(std::move(c)) {}
  void encrypt(std::span<std::byte> u, std::span<const std::byte>) override {
    c_->encrypt(u.data(), nullptr, u.data(), u.size());
  }
  void decrypt(std::span<std::byte> u, std::span<const std::byte>) override {
    c_->decrypt(u.data(), nullptr, u.data(), u.size());
  }

 private:
  std::unique_ptr<BlockCipher> c_;
};

class CbcMode final : public ChainMode {
 public:
  explicit CbcMode(std::unique_ptr<BlockCipher> c) : c_(std::move(c)), bs_(c_->block_size()) {}
  void encrypt(std::span<std::byte> u, std::span<const std::byte> iv) override {
    const std::byte* prev = iv.data();
    for (std::size_t off = 0; off < u.size(); off += bs_) {
      xor_bytes(u.data() + off, prev, bs_);
      c_->encrypt(u.data() + off, nullptr, u.data() + off, bs_);
      prev = u.data() + off;
    }
  }
  void decrypt(std::span<std::byte> u, std::span<const std::byte> iv) override {
    // P_i = D(C_i) XOR C_{i-1}: one parallel pass with the shifted ciphertext as XOR input.
    std::memcpy(prev_.data(), iv.data(), bs_);
    std::memcpy(prev_.data() + bs_, u.data(), u.size() - bs_);
    c_->decrypt(u.data(), prev_.data(), u.data(), u.size());
  }

 private:
  std::unique_ptr<BlockCipher> c_;
  std::size_t bs_;
  alignas(16) std::array<std::byte, kMaxUnit> prev_{};
};

// Linux ctr(): the IV is a big-endian counter over the whole block, +1 per block.
class CtrMode final : public ChainMode {
 public:
  explicit CtrMode(std::unique_ptr<BlockCipher> c) : c_(std::move(c)), bs_(c_->block_size()) {}
  void encrypt(std::span<std::byte> u, std::span<const std::byte> iv) override {
    std::byte* ctr = ks_.data();
    std::memcpy(ctr, iv.data(), bs_);
    for (std::size_t off = bs_; off < u.size(); off += bs_) {
      std::memcpy(ctr + off, ctr + off - bs_, bs_);
      for (std::size_t i = bs_; i-- > 0;)  // increment big-endian
      {
        ctr[off + i] =
            std::byte(static_cast<unsigned char>(std::to_integer<unsigned>(ctr[off + i]) + 1));
        if (ctr[off + i] != std::byte{0}) break;
      }
    }
    c_->encrypt(ks_.data(), u.data(), u.data(), u.size());  // E(ctr) XOR data
  }
  void decrypt(std::span<std::byte> u, std::span<const std::byte> iv) override { encrypt(u, iv); }

 private:
  std::unique_ptr<BlockCipher> c_;
  std::size_t bs_;
  alignas(16) std::array<std::byte, kMaxUnit> ks_{};
};

// Tweaked modes (XTS, LRW): out = E(in XOR T_j) XOR T_j with a per-block tweak buffer.
class TweakedMode : public ChainMode {
 public:
  explicit TweakedMode(std::unique_ptr<BlockCipher> c) : c_(std::move(c)) {}
  ~TweakedMode() override { secure_zero(t_.data(), t_.size()); }  // tweaks are key-derived
  void encrypt(std::span<std::byte> u, std::span<const std::byte> iv) override {
    tweaks(iv, u.size());
    xor_bytes(u.data(), t_.data(), u.size());
    c_->encrypt(u.data(), t_.data(), u.data(), u.size());
  }
  void decrypt(std::span<std::byte> u, std::span<const std::byte> iv) override {
    tweaks(iv, u.size());
    xor_bytes(u.data(), t_.data(), u.size());
    c_->decrypt(u.data(), t_.data(), u.data(), u.size());
  }

 protected:
  virtual void tweaks(std::span<const std::byte> iv, std::size_t len) = 0;
  std::unique_ptr<BlockCipher> c_;
  alignas(16) std::array<std::byte, kMaxUnit> t_{};
};

// XTS (IEEE 1619): T_0 = E_K2(iv), T_{j+1} = T_j * alpha in GF(2^128), little-endian.
class XtsMode final : public TweakedMode {
 public:
  XtsMode(std::unique_ptr<BlockCipher> data, std::unique_ptr<BlockCipher> tweak)
      : TweakedMode(std::move(data)), k2_(std::move(tweak)) {}

 private:
  void tweaks(std::span<const std::byte> iv, std::size_t len) override {
    k2_->encrypt(iv.data(), nullptr, t_.data(), 16);
    std::uint64_t lo, hi;
    std::memcpy(&lo, t_.data(), 8);  // x86-64: little-endian host
    std::memcpy(&hi, t_.data() + 8, 8);
    for (std::size_t off = 16; off < len; off += 16) {
      const std::uint64_t carry = hi >> 63;
      hi = (hi << 1) | (lo >> 63);
      lo = (lo << 1) ^ (0x87 & (0 - carry));
      std::memcpy(t_.data() + off, &lo, 8);
      std::memcpy(t_.data() + off + 8, &hi, 8);
    }
  }
  std::unique_ptr<BlockCipher> k2_;
};

// GF(2^128) element in the "bbe" convention of Linux lrw (big-endian 128-bit integer, bit i =
// coefficient of x^i, modulus x^128 + x^7 + x^2 + x + 1).
struct Gf128 {
  std::uint64_t hi = 0, lo = 0;
  static Gf128 load(const std::byte* p) { return {load_be64(p), load_be64(p + 8)}; }
  void store(std::byte* p) const {
    store_be64(p, hi);
    store_be64(p + 8, lo);
  }
  Gf128 times_x() const {
    const std::uint64_t carry = hi >> 63;
    return {(hi << 1) | (lo >> 63), (lo << 1) ^ (0x87 & (0 - carry))};
  }
  Gf128 operator^(const Gf128& o) const { return {hi ^ o.hi, lo ^ o.lo}; }
  Gf128 mul(const Gf128& b) const {
    Gf128 r;
    for (int i = 127; i >= 0; --i) {
      r = r.times_x();
      const std::uint64_t bit = i >= 64 ? (b.hi >> (i - 64)) & 1 : (b.lo >> i) & 1;
      if (bit) r = r ^ *this;
    }
    return r;
  }
};

// LRW (Linux lrw(), IEEE P1619 draft): T_j = K2 (x) (I + j) with I the IV as a 128-bit
// big-endian block index. I+1 = I XOR (2^(t+1) - 1), t = trailing ones of I, so
// T_{j+1} = T_j XOR K2 (x) (2^(t+1) - 1): 128 products precomputed per key.
class LrwMode final : public TweakedMode {
 public:
  LrwMode(std::unique_ptr<BlockCipher> data, std::span<const std::byte> tweak_key)
      : TweakedMode(std::move(data)) {
    const Gf128 k2 = Gf128::load(tweak_key.data());
    Gf128 mask;
    for (int t = 0; t < 128; ++t) {
      if (t < 64)
        mask.lo |= std::uint64_t{1} << t;
      else
        mask.hi |= std::uint64_t{1} << (t - 64);
      inc_[static_cast<std::size_t>(t)] = k2.mul(mask);
    }
    k2_ = k2;
  }
  ~LrwMode() override {
    secure_zero(inc_.data(), sizeof inc_);
    secure_zero(&k2_, sizeof k2_);
  }

 private:
  void tweaks(std::span<const std::byte> iv, std::size_t len) override {
    Gf128 idx = Gf128::load(iv.data());
    Gf128 t = k2_.mul(idx);
    for (std::size_t off = 0; off < len; off += 16) {
      t.store(t_.data() + off);
      t = t ^ inc_[trailing_ones(idx)];
      // idx + 1 (wrapping)
      if (++idx.lo == 0) ++idx.hi;
    }
  }
  static std::size_t trailing_ones(const Gf128& v) {
    if (v.lo != ~0ULL) return static_cast<std::size_t>(__builtin_ctzll(~v.lo));
    if (v.hi != ~0ULL) return 64 + static_cast<std::size_t>(__builtin_ctzll(~v.hi));
    return 127;  // all ones: +1 wraps to zero, XOR with 2^128 - 1
  }
  Gf128 k2_;
  std::array<Gf128, 128> inc_{};
};

// OpenSSL EVP chain mode (AES only): one context per direction keyed once; per unit only the IV
// is re-initialised. Linux ctr() and OpenSSL CTR both count with a 128-bit big-endian counter.
class EvpMode final : public ChainMode {
 public:
  static Result<std::unique_ptr<ChainMode>> create(const std::string& chain,
                                                   std::span<const std::byte> key) {
    const EVP_CIPHER* c = pick(chain, key.size());
    if (c == nullptr)
      return make_error_fmt(Errc::kUnsupported, "OpenSSL AES mode", kNoObject,
                            "no %s with a %zu-byte key", chain.c_str(), key.size());
    auto m = std::unique_ptr<EvpMode>(new EvpMode);
    m->enc_ = EVP_CIPHER_CTX_new();
    m->dec_ = EVP_CIPHER_CTX_new();
    if (m->enc_ == nullptr || m->dec_ == nullptr)
      return make_error(Errc::kNoSpace, "OpenSSL AES mode: allocate cipher context");
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_CipherInit_ex(m->enc_, c, nullptr, k, nullptr, 1) != 1 ||
        EVP_CipherInit_ex(m->dec_, c, nullptr, k, nullptr, 0) != 1)
      return make_error(Errc::kInvalid, "OpenSSL AES mode: key rejected (XTS halves equal?)");
    EVP_CIPHER_CTX_set_padding(m->enc_, 0);
    EVP_CIPHER_CTX_set_padding(m->dec_, 0);
    return std::unique_ptr<ChainMode>(std::move(m));
  }
  ~EvpMode() override {
    EVP_CIPHER_CTX_free(enc_);  // cleanses the key schedule
    EVP_CIPHER_CTX_free(dec_);
  }
  void encrypt(std::span<std::byte> u, std::span<const std::byte> iv) override { run(enc_, u, iv); }
  void decrypt(std::span<std::byte> u, std::span<const std::byte> iv) override { run(dec_, u, iv); }

 private:
  EvpMode() = default;
  static const EVP_CIPHER* pick(const std::string& chain, std::size_t k) {
    if (chain == "cbc")
      return k == 16   ? EVP_aes_128_cbc()
             : k == 24 ? EVP_aes_192_cbc()
             : k == 32 ? EVP_aes_256_cbc()
                       : nullptr;
    if (chain == "ecb")
      return k == 16   ? EVP_aes_128_ecb()
             : k == 24 ? EVP_aes_192_ecb()
             : k == 32 ? EVP_aes_256_ecb()
                       : nullptr;
    if (chain == "ctr")
      return k == 16   ? EVP_aes_128_ctr()
             : k == 24 ? EVP_aes_192_ctr()
             : k == 32 ? EVP_aes_256_ctr()
                       : nullptr;
    if (chain == "xts") return k == 32 ? EVP_aes_128_xts() : k == 64 ? EVP_aes_256_xts() : nullptr;
    return nullptr;
  }
  static void run(EVP_CIPHER_CTX* ctx, std::span<std::byte> u, std::span<const std::byte> iv) {
    auto* p = reinterpret_cast<unsigned char*>(u.data());
    const auto* v = iv.empty() ? nullptr : reinterpret_cast<const unsigned char*>(iv.data());
    int outl = 0;
    // Both calls only fail on a broken context or a length OpenSSL cannot take (a unit is at
    // most 4096 bytes of whole blocks): an invariant, not input.
    CRYPTMAP_CHECK(EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, v, -1) == 1);
    CRYPTMAP_CHECK(EVP_CipherUpdate(ctx, p, &outl, p, static_cast<int>(u.size())) == 1);
    CRYPTMAP_CHECK(static_cast<std::size_t>(outl) == u.size());
  }
  EVP_CIPHER_CTX* enc_ = nullptr;
  EVP_CIPHER_CTX* dec_ = nullptr;
};

struct Transform {
  std::unique_ptr<ChainMode> mode;
  std::unique_ptr<IvGenerator> iv;
};

struct GenericContext {
  std::vector<Transform> tfms;
  std::unique_ptr<AesniCbcEncryptor> cbc_lanes;  // AES-CBC encryption across units, or null
  std::unique_ptr<AesniCbcDecryptor> cbc_dec;    // AES-CBC decryption, 8 blocks in flight
};

class GenericCipher final : public SectorCipher {
 public:
  GenericCipher(const SectorCipherConfig& config, const KeyLayout& layout, SecretBytes key,
                bool openssl_modes)
      : openssl_modes_(openssl_modes),
        // Multi-lane CBC encryption needs IVs that do not depend on the data (not lmk/tcw) and
        // one key for every unit of a run.
        cbc_lanes_(openssl_modes && config.spec.cipher == "aes" &&
                   config.spec.chain_mode == "cbc" && layout.tfm_count == 1 &&
                   config.spec.iv_mode != "lmk" && config.spec.iv_mode != "tcw" &&
                   config.spec.iv_mode != "elephant" && aesni_available()),
        spec_(config.spec),
        layout_(layout),
        key_(std::move(key)),
        numbering_(SectorNumbering::of(config)),
        pool_([this] { return make_context(); }) {}

  Result<void> init() {
    CRYPTMAP_TRY(ctx, make_context());
    pool_.seed(std::move(ctx));
    return ok();
  }

  Result<void> encrypt(const SectorRun& run) const override { return crypt(run, true); }
  Result<void> decrypt(const SectorRun& run) const override { return crypt(run, false); }
  std::uint32_t sector_size() const noexcept override { return numbering_.sector_size; }
  const char* engine_name() const noexcept override {
    if (cbc_lanes_) return "aesni-cbc";
    if (openssl_modes_) return "openssl";
    // Camellia's block primitive comes from OpenSSL (see cipher_catalog.cpp).
    if (spec_.cipher == "kuznyechik") return "generic+cryptmap";  // internal/kuznyechik.cpp
    return spec_.cipher == "camellia" ? "generic+openssl-ecb" : "cryptopp";
  }

 private:
  Result<std::unique_ptr<ChainMode>> make_mode(std::span<const std::byte> subkey) const {
    const std::string& m = spec_.chain_mode;
    const std::size_t ck = layout_.cipher_key_bytes;
    if (openssl_modes_) return EvpMode::create(m, subkey);
    if (m == "xts") {
      CRYPTMAP_TRY(k1, make_block_cipher(spec_.cipher, subkey.first(ck)));
      CRYPTMAP_TRY(k2, make_block_cipher(spec_.cipher, subkey.subspan(ck, ck)));
      return std::unique_ptr<ChainMode>(new XtsMode(std::move(k1), std::move(k2)));
    }
    CRYPTMAP_TRY(c, make_block_cipher(spec_.cipher, subkey.first(ck)));
    if (m == "cbc") return std::unique_ptr<ChainMode>(new CbcMode(std::move(c)));
    if (m == "ecb") return std::unique_ptr<ChainMode>(new EcbMode(std::move(c)));
    if (m == "ctr") return std::unique_ptr<ChainMode>(new CtrMode(std::move(c)));
    if (m == "lrw")
      return std::unique_ptr<ChainMode>(new LrwMode(std::move(c), subkey.subspan(ck, 16)));
    return make_error_fmt(Errc::kUnsupported, "cipher spec: chain mode", kNoObject,
                          "'%s' is not supported", m.c_str());
  }

  Result<std::unique_ptr<GenericContext>> make_context() const {
    try {
      return make_context_or_throw();
    } catch (const std::bad_alloc&) {
      return make_error(Errc::kNoSpace, "sector cipher: out of memory for a cipher context");
    }
  }

  Result<std::unique_ptr<GenericContext>> make_context_or_throw() const {
    auto ctx = std::make_unique<GenericContext>();
    for (std::size_t i = 0; i < layout_.tfm_count; ++i) {
      auto subkey = key_.span().subspan(i * layout_.subkey_bytes, layout_.subkey_bytes);
      Transform t;
      CRYPTMAP_TRY(mode, make_mode(subkey));
      t.mode = std::move(mode);
      IvGeneratorArgs args{&spec_,
                           &layout_,
                           key_.span(),
                           subkey,
                           subkey.first(layout_.cipher_key_bytes),
                           numbering_.sector_size};
      CRYPTMAP_TRY(iv, make_iv_generator(args));
      t.iv = std::move(iv);
      ctx->tfms.push_back(std::move(t));
    }
    if (cbc_lanes_) {
      ctx->cbc_lanes =
          std::make_unique<AesniCbcEncryptor>(key_.span().first(layout_.cipher_key_bytes));
      ctx->cbc_dec =
          std::make_unique<AesniCbcDecryptor>(key_.span().first(layout_.cipher_key_bytes));
    }
    return ctx;
  }

  Result<void> crypt(const SectorRun& run, bool enc) const {
    CRYPTMAP_TRY(count, numbering_.begin_run(run));
    if (count == 0) return ok();
    const std::size_t ss = numbering_.sector_size;
    CRYPTMAP_TRY(lease, pool_.acquire());
    if (enc && lease->cbc_lanes) return encrypt_cbc_lanes(*lease, run, count);
    if (!enc && lease->cbc_dec) return decrypt_cbc_aesni(*lease, run, count);
    const std::uint64_t mask = layout_.tfm_count - 1;
    alignas(16) std::array<std::byte, 16> iv{};
    auto ivs = std::span(iv).first(layout_.iv_size);
    for (std::size_t k = 0; k < count; ++k) {
      auto unit = run.data.subspan(k * ss, ss);
      const std::uint64_t cc = numbering_.cc_sector(run.first.value + k);
      const std::uint64_t s = numbering_.iv_sector(cc).value;
      Transform& t = lease->tfms[cc & mask];
      if (t.iv) t.iv->generate(s, ivs, unit, enc);
      if (enc)
        t.mode->encrypt(unit, ivs);
      else
        t.mode->decrypt(unit, ivs);
      if (t.iv) t.iv->post(s, ivs, unit, enc);
    }
    secure_zero(iv.data(), iv.size());
    return ok();
  }

  // Up to 8 units at a time through AesniCbcEncryptor; IVs from the (data-independent) generator.
  Result<void> encrypt_cbc_lanes(GenericContext& ctx, const SectorRun& run,
                                 std::size_t count) const {
    constexpr std::size_t kLanes = AesniCbcEncryptor::kLanes;
    const std::size_t ss = numbering_.sector_size;
    Transform& t = ctx.tfms[0];
    alignas(16) std::array<std::array<std::byte, 16>, kLanes> ivs{};
    std::array<std::byte*, kLanes> units{};
    std::array<const std::byte*, kLanes> iv_ptrs{};
    for (std::size_t k = 0; k < count; k += kLanes) {
      const std::size_t n = std::min(kLanes, count - k);
      for (std::size_t l = 0; l < n; ++l) {
        auto unit = run.data.subspan((k + l) * ss, ss);
        const std::uint64_t s =
            numbering_.iv_sector(numbering_.cc_sector(run.first.value + k + l)).value;
        t.iv->generate(s, ivs[l], unit, true);
        units[l] = unit.data();
        iv_ptrs[l] = ivs[l].data();
      }
      ctx.cbc_lanes->encrypt(units.data(), iv_ptrs.data(), n, ss);
    }
    secure_zero(ivs.data(), sizeof ivs);
    return ok();
  }

  Result<void> decrypt_cbc_aesni(GenericContext& ctx, const SectorRun& run,
                                 std::size_t count) const {
    const std::size_t ss = numbering_.sector_size;
    Transform& t = ctx.tfms[0];
    alignas(16) std::array<std::byte, 16> iv{};
    for (std::size_t k = 0; k < count; ++k) {
      auto unit = run.data.subspan(k * ss, ss);
      const std::uint64_t s = numbering_.iv_sector(numbering_.cc_sector(run.first.value + k)).value;
      t.iv->generate(s, iv, unit, false);
      ctx.cbc_dec->decrypt(unit.data(), ss, iv.data());
    }
    secure_zero(iv.data(), iv.size());
    return ok();
  }

  bool openssl_modes_;
  bool cbc_lanes_;
  CipherSpec spec_;
  KeyLayout layout_;
  SecretBytes key_;
  SectorNumbering numbering_;
  ContextPool<GenericContext> pool_;
};

}  // namespace

namespace {

Result<std::unique_ptr<SectorCipher>> make_mode_cipher(const SectorCipherConfig& config,
                                                       const KeyLayout& layout,
                                                       std::span<const std::byte> key,
                                                       bool openssl_modes) {
  CRYPTMAP_TRY(secret, SecretBytes::copy_of(key));
  try {
    auto c = std::make_unique<GenericCipher>(config, layout, std::move(secret), openssl_modes);
    CRYPTMAP_TRY_VOID(c->init());
    return std::unique_ptr<SectorCipher>(std::move(c));
  } catch (const std::bad_alloc&) {
    return make_error(Errc::kNoSpace, "sector cipher: out of memory");
  }
}

}  // namespace

bool generic_supports(const SectorCipherConfig&, const KeyLayout&) { return true; }

Result<std::unique_ptr<SectorCipher>> make_generic_cipher(const SectorCipherConfig& config,
                                                          const KeyLayout& layout,
                                                          std::span<const std::byte> key) {
  return make_mode_cipher(config, layout, key, false);
}

bool openssl_modes_supports(const SectorCipherConfig& config, const KeyLayout&) {
  const std::string& m = config.spec.chain_mode;
  return config.spec.cipher == "aes" && (m == "cbc" || m == "ecb" || m == "ctr" || m == "xts");
}

Result<std::unique_ptr<SectorCipher>> make_openssl_modes_cipher(const SectorCipherConfig& config,
                                                                const KeyLayout& layout,
                                                                std::span<const std::byte> key) {
  return make_mode_cipher(config, layout, key, true);
}

}  // namespace cryptmap::crypto::internal

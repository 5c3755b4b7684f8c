// Generic sector cipher: any catalogued block cipher (Crypto++), chain modes implemented here
// over its ECB primitive (xts, cbc, ecb, ctr, lrw), any IvGenerator, keycount multi-key, lmk/tcw
// extra keys. Per-thread state (keyed ciphers, IV generators) lives in a ContextPool.
#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
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
        ctr[off + i] = std::byte(static_cast<unsigned char>(std::to_integer<unsigned>(ctr[off + i]) + 1));
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
      if (t < 64) mask.lo |= std::uint64_t{1} << t;
      else mask.hi |= std::uint64_t{1} << (t - 64);
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

struct Transform {
  std::unique_ptr<ChainMode> mode;
  std::unique_ptr<IvGenerator> iv;
};

struct GenericContext {
  std::vector<Transform> tfms;
};

class GenericCipher final : public SectorCipher {
 public:
  GenericCipher(const SectorCipherConfig& config, const KeyLayout& layout, SecretBytes key)
      : spec_(config.spec),
        layout_(layout),
        key_(std::move(key)),
        numbering_{config.sector_size,
                   static_cast<std::uint32_t>(__builtin_ctz(config.sector_size / 512)),
                   config.iv_large_sectors, config.iv_offset},
        pool_([this] { return make_context(); }) {}

  Result<void> init() {
    CRYPTMAP_TRY(ctx, make_context());
    pool_.seed(std::move(ctx));
    return ok();
  }

  Result<void> encrypt(const SectorRun& run) const override { return crypt(run, true); }
  Result<void> decrypt(const SectorRun& run) const override { return crypt(run, false); }
  std::uint32_t sector_size() const noexcept override { return numbering_.sector_size; }
  const char* engine_name() const noexcept override { return "cryptopp"; }

 private:
  Result<std::unique_ptr<ChainMode>> make_mode(std::span<const std::byte> subkey) const {
    const std::string& m = spec_.chain_mode;
    const std::size_t ck = layout_.cipher_key_bytes;
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
      IvGeneratorArgs args{&spec_, &layout_, key_.span(), subkey.first(layout_.cipher_key_bytes),
                           numbering_.sector_size};
      CRYPTMAP_TRY(iv, make_iv_generator(args));
      t.iv = std::move(iv);
      ctx->tfms.push_back(std::move(t));
    }
    return ctx;
  }

  Result<void> crypt(const SectorRun& run, bool enc) const {
    CRYPTMAP_TRY_VOID(check_run_shape(run, numbering_.sector_size));
    const std::size_t ss = numbering_.sector_size;
    const std::size_t count = run.data.size() / ss;
    if (count == 0) return ok();
    CRYPTMAP_TRY_VOID(numbering_.check_run(run.first.value, count));
    CRYPTMAP_TRY(lease, pool_.acquire());
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

  CipherSpec spec_;
  KeyLayout layout_;
  SecretBytes key_;
  SectorNumbering numbering_;
  ContextPool<GenericContext> pool_;
};

}  // namespace

bool generic_supports(const SectorCipherConfig&, const KeyLayout&) { return true; }

Result<std::unique_ptr<SectorCipher>> make_generic_cipher(const SectorCipherConfig& config,
                                                          const KeyLayout& layout,
                                                          std::span<const std::byte> key) {
  CRYPTMAP_TRY(secret, SecretBytes::copy_of(key));
  try {
    auto c = std::make_unique<GenericCipher>(config, layout, std::move(secret));
    CRYPTMAP_TRY_VOID(c->init());
    return std::unique_ptr<SectorCipher>(std::move(c));
  } catch (const std::bad_alloc&) {
    return make_error(Errc::kNoSpace, "sector cipher: out of memory");
  }
}

}  // namespace cryptmap::crypto::internal

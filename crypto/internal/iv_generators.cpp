// IV generators, restating dm-crypt's crypt_iv_*_gen/post (docs/formats.md §3.4).
#define OPENSSL_SUPPRESS_DEPRECATED  // MD5_CTX: lmk needs the raw MD5 state, not a digest
#include <openssl/md5.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/hash_backend.h"
#include "crypto/internal/iv_generator.h"

namespace cryptmap::crypto::internal {
namespace {

void zero(std::span<std::byte> iv) { std::fill(iv.begin(), iv.end(), std::byte{0}); }

class PlainIv final : public IvGenerator {  // LE32(s mod 2^32), zero padded
 public:
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
    store_le32(iv.data(), static_cast<std::uint32_t>(s));
  }
};

class Plain64Iv final : public IvGenerator {  // LE64(s), zero padded
 public:
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
    store_le64(iv.data(), s);
  }
};

class Plain64BeIv final : public IvGenerator {  // zeros, BE64(s) in the last 8 bytes
 public:
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
    store_be64(iv.data() + iv.size() - 8, s);
  }
};

class NullIv final : public IvGenerator {
 public:
  void generate(std::uint64_t, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
  }
};

class BenbiIv final : public IvGenerator {  // BE64((s << (9 - log2(bs))) + 1): narrow-block count
 public:
  explicit BenbiIv(unsigned shift) : shift_(shift) {}
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
    store_be64(iv.data() + iv.size() - 8, (s << shift_) + 1);
  }

 private:
  unsigned shift_;
};

// ESSIV: E_salt(LE64(s) || 0), salt = H(key), same block cipher keyed with the salt.
class EssivIv final : public IvGenerator {
 public:
  explicit EssivIv(std::unique_ptr<BlockCipher> salt_cipher) : c_(std::move(salt_cipher)) {}
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
    store_le64(iv.data(), s);
    c_->encrypt(iv.data(), nullptr, iv.data(), iv.size());
  }

 private:
  std::unique_ptr<BlockCipher> c_;
};

// EBOIV (BitLocker CBC): E_K(LE64(s * sector_size) || 0) with the data key.
class EboivIv final : public IvGenerator {
 public:
  EboivIv(std::unique_ptr<BlockCipher> c, std::uint32_t sector_size)
      : c_(std::move(c)), sector_size_(sector_size) {}
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte>, bool) override {
    zero(iv);
    store_le64(iv.data(), s * sector_size_);
    c_->encrypt(iv.data(), nullptr, iv.data(), iv.size());
  }

 private:
  std::unique_ptr<BlockCipher> c_;
  std::uint32_t sector_size_;
};

// BitLocker's Elephant diffuser on top of EBOIV (dm-crypt "elephant", docs/bitlk.md §5).
// The key blob is data key || sector-key key (halves). Per sector: Ks = E_k2(LE64(s * ss) || 0)
// || E_k2(LE64(s * ss) || 0 .. 0x80) (32 bytes). Decryption: CBC with the EBOIV IV, then the
// sector as little-endian u32 words through diffuser B and diffuser A (their decrypt
// directions), then XOR with Ks repeated. Encryption runs the inverse before CBC.
class ElephantIv final : public IvGenerator {
 public:
  ElephantIv(std::unique_ptr<BlockCipher> data, std::unique_ptr<BlockCipher> sector_key,
             std::uint32_t sector_size)
      : eboiv_(std::move(data), sector_size),
        ks_cipher_(std::move(sector_key)),
        sector_size_(sector_size) {}
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte> unit,
                bool encrypt) override {
    if (encrypt) {
      xor_sector_key(s, unit);
      diffuse(unit, /*encrypt=*/true);
    }
    eboiv_.generate(s, iv, unit, encrypt);
  }
  void post(std::uint64_t s, std::span<std::byte>, std::span<std::byte> unit,
            bool encrypt) override {
    if (encrypt) return;
    diffuse(unit, /*encrypt=*/false);
    xor_sector_key(s, unit);
  }

 private:
  void xor_sector_key(std::uint64_t s, std::span<std::byte> unit) {
    std::array<std::byte, 32> ks{};
    store_le64(ks.data(), s * sector_size_);
    store_le64(ks.data() + 16, s * sector_size_);
    ks[31] = std::byte{0x80};
    ks_cipher_->encrypt(ks.data(), nullptr, ks.data(), ks.size());
    for (std::size_t off = 0; off + 32 <= unit.size(); off += 32)
      for (std::size_t i = 0; i < 32; ++i) unit[off + i] ^= ks[i];
    secure_zero(ks.data(), ks.size());
  }
  void diffuse(std::span<std::byte> unit, bool encrypt) {
    const std::size_t n = unit.size() / 4;
    words_.resize(n);
    for (std::size_t i = 0; i < n; ++i) words_[i] = load_le32(unit.data() + 4 * i);
    if (encrypt) {
      diffuser_a_encrypt(words_.data(), n);
      diffuser_b_encrypt(words_.data(), n);
    } else {
      diffuser_b_decrypt(words_.data(), n);
      diffuser_a_decrypt(words_.data(), n);
    }
    for (std::size_t i = 0; i < n; ++i) store_le32(unit.data() + 4 * i, words_[i]);
    secure_zero(words_.data(), n * 4);
  }
  static std::uint32_t rotl(std::uint32_t x, int r) {
    return r == 0 ? x : (x << r) | (x >> (32 - r));
  }
  // Diffuser A: 5 cycles, d[i] += d[i-2] ^ rotl(d[i-5], ra[i % 4]), ra = {9, 0, 13, 0}; indices
  // modulo n. Diffuser B: 3 cycles, d[i] += d[i+2] ^ rotl(d[i+5], rb[i % 4]), rb = {0, 10, 0, 25}.
  // Index i - k (k < n), wrapped into [0, n) without a division.
  static std::size_t back(std::size_t i, std::size_t k, std::size_t n) {
    return i >= k ? i - k : i + n - k;
  }
  static std::size_t fwd(std::size_t i, std::size_t k, std::size_t n) {
    return i + k < n ? i + k : i + k - n;
  }
  static void diffuser_a_decrypt(std::uint32_t* d, std::size_t n) {
    static constexpr int kRot[4] = {9, 0, 13, 0};
    for (int c = 0; c < 5; ++c)
      for (std::size_t i = 0; i < n; ++i)
        d[i] += d[back(i, 2, n)] ^ rotl(d[back(i, 5, n)], kRot[i % 4]);
  }
  static void diffuser_a_encrypt(std::uint32_t* d, std::size_t n) {
    static constexpr int kRot[4] = {9, 0, 13, 0};
    for (int c = 0; c < 5; ++c)
      for (std::size_t i = n; i-- > 0;)
        d[i] -= d[back(i, 2, n)] ^ rotl(d[back(i, 5, n)], kRot[i % 4]);
  }
  static void diffuser_b_decrypt(std::uint32_t* d, std::size_t n) {
    static constexpr int kRot[4] = {0, 10, 0, 25};
    for (int c = 0; c < 3; ++c)
      for (std::size_t i = 0; i < n; ++i)
        d[i] += d[fwd(i, 2, n)] ^ rotl(d[fwd(i, 5, n)], kRot[i % 4]);
  }
  static void diffuser_b_encrypt(std::uint32_t* d, std::size_t n) {
    static constexpr int kRot[4] = {0, 10, 0, 25};
    for (int c = 0; c < 3; ++c)
      for (std::size_t i = n; i-- > 0;)
        d[i] -= d[fwd(i, 2, n)] ^ rotl(d[fwd(i, 5, n)], kRot[i % 4]);
  }

  EboivIv eboiv_;
  std::unique_ptr<BlockCipher> ks_cipher_;
  std::uint32_t sector_size_;
  std::vector<std::uint32_t> words_;  // scratch, one sector; sized at the first sector
};

// loop-AES lmk (v2 without seed, v3 with a 64-byte seed area holding the first 16 bytes of the
// 65th key): IV = raw MD5 state after [seed] || plaintext[16..512) || sector words, no padding.
// The seeds below live inside the per-thread context like the key schedules do (one per key
// transform: 64 for lmk), wiped on destruction; mlocking each would exhaust RLIMIT_MEMLOCK.
class LmkIv final : public IvGenerator {
 public:
  explicit LmkIv(std::span<const std::byte> seed) : has_seed_(!seed.empty()) {
    std::copy(seed.begin(), seed.end(), seed_.begin());
  }
  ~LmkIv() override { secure_zero(seed_.data(), seed_.size()); }
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte> unit,
                bool encrypt) override {
    if (encrypt)
      compute(s, iv, unit);
    else
      zero(iv);
  }
  void post(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte> unit,
            bool encrypt) override {
    if (encrypt) return;
    compute(s, iv, unit);
    for (std::size_t i = 0; i < 16; ++i) unit[i] ^= iv[i];
  }

 private:
  void compute(std::uint64_t s, std::span<std::byte> iv, std::span<const std::byte> unit) {
    MD5_CTX ctx;
    MD5_Init(&ctx);
    if (has_seed_) MD5_Update(&ctx, seed_.data(), seed_.size());
    MD5_Update(&ctx, unit.data() + 16, 16 * 31);
    std::array<std::byte, 16> buf{};
    store_le32(buf.data(), static_cast<std::uint32_t>(s));
    store_le32(buf.data() + 4, static_cast<std::uint32_t>(((s >> 32) & 0x00FFFFFF) | 0x80000000));
    store_le32(buf.data() + 8, 4024);
    MD5_Update(&ctx, buf.data(), buf.size());
    // 64 (+64 seed) + 496 + 16 bytes: whole blocks, so the state is final without padding.
    store_le32(iv.data(), ctx.A);
    store_le32(iv.data() + 4, ctx.B);
    store_le32(iv.data() + 8, ctx.C);
    store_le32(iv.data() + 12, ctx.D);
    secure_zero(&ctx, sizeof ctx);
  }
  bool has_seed_;                     // v3 only
  std::array<std::byte, 64> seed_{};  // LMK_SEED_SIZE: 16 key bytes, zero padded
};

// Linux crypto "crc32": reflected CRC-32 (0xEDB88320), seed 0, no final inversion.
std::uint32_t crc32_le_raw(const std::byte* p, std::size_t n) {
  std::uint32_t crc = 0;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= std::to_integer<std::uint32_t>(p[i]);
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320U & (0U - (crc & 1U)));
  }
  return crc;
}

// TrueCrypt <= 4.1 (tcw): IV = iv_seed XOR LE64(s) (per 8 bytes); the ciphertext is XORed with
// an 8-byte whitening value derived by CRC32 from whitening-key XOR sector.
class TcwIv final : public IvGenerator {
 public:
  TcwIv(std::span<const std::byte> iv_seed, std::span<const std::byte> whitening) {
    std::copy(iv_seed.begin(), iv_seed.end(), iv_seed_.begin());
    std::copy(whitening.begin(), whitening.end(), whitening_.begin());
  }
  ~TcwIv() override {
    secure_zero(iv_seed_.data(), iv_seed_.size());
    secure_zero(whitening_.data(), whitening_.size());
  }
  void generate(std::uint64_t s, std::span<std::byte> iv, std::span<std::byte> unit,
                bool encrypt) override {
    if (!encrypt) whiten(s, unit);  // strip whitening from the ciphertext first
    std::array<std::byte, 8> sec{};
    store_le64(sec.data(), s);
    for (std::size_t i = 0; i < iv.size(); ++i) iv[i] = iv_seed_.data()[i] ^ sec[i % 8];
  }
  void post(std::uint64_t s, std::span<std::byte>, std::span<std::byte> unit,
            bool encrypt) override {
    if (encrypt) whiten(s, unit);
  }

 private:
  void whiten(std::uint64_t s, std::span<std::byte> unit) {
    std::array<std::byte, 16> buf{};
    std::array<std::byte, 8> sec{};
    store_le64(sec.data(), s);
    for (std::size_t i = 0; i < 16; ++i) buf[i] = whitening_.data()[i] ^ sec[i % 8];
    for (std::size_t i = 0; i < 4; ++i)
      store_le32(buf.data() + 4 * i, crc32_le_raw(buf.data() + 4 * i, 4));
    for (std::size_t i = 0; i < 4; ++i) {
      buf[i] ^= buf[12 + i];
      buf[4 + i] ^= buf[8 + i];
    }
    for (std::size_t off = 0; off + 8 <= unit.size(); off += 8)
      for (std::size_t i = 0; i < 8; ++i) unit[off + i] ^= buf[i];
    secure_zero(buf.data(), buf.size());
  }
  std::array<std::byte, 16> iv_seed_{};  // iv_size bytes used (8 or 16)
  std::array<std::byte, 16> whitening_{};
};

}  // namespace

Result<std::unique_ptr<IvGenerator>> make_iv_generator(const IvGeneratorArgs& a) {
  const CipherSpec& spec = *a.spec;
  const KeyLayout& l = *a.layout;
  using Ptr = std::unique_ptr<IvGenerator>;
  if (spec.chain_mode == "ecb") return Ptr{};
  const std::string& m = spec.iv_mode;
  if (m == "plain") return Ptr(new PlainIv);
  if (m == "plain64") return Ptr(new Plain64Iv);
  if (m == "plain64be") return Ptr(new Plain64BeIv);
  if (m == "null") return Ptr(new NullIv);
  if (m == "benbi") {
    const unsigned log2bs = static_cast<unsigned>(__builtin_ctz(l.cipher->block_size));
    return Ptr(new BenbiIv(9 - log2bs));
  }
  if (m == "essiv") {
    CRYPTMAP_TRY(h, Hasher::create(spec.iv_opts));
    CRYPTMAP_TRY(salt, SecretBytes::allocate(h.digest_size()));
    CRYPTMAP_TRY_VOID(h.digest({a.subkey}, salt.span()));
    if (!valid_cipher_key(*l.cipher, salt.size()))
      return make_error_fmt(Errc::kUnsupported, "cipher spec: ESSIV hash", kNoObject,
                            "%s gives %zu bytes, not a valid %s key", spec.iv_opts.c_str(),
                            salt.size(), spec.cipher.c_str());
    CRYPTMAP_TRY(c, make_block_cipher(spec.cipher, salt.span()));
    return Ptr(new EssivIv(std::move(c)));
  }
  if (m == "eboiv") {
    // Linux encrypts one zero block with the data transform and the IV; that is E_K(IV) for
    // cbc and ctr only (BitLocker uses cbc).
    if (spec.chain_mode != "cbc" && spec.chain_mode != "ctr")
      return make_error_fmt(Errc::kUnsupported, "cipher spec: IV mode", kNoObject,
                            "eboiv with %s is not supported (only cbc, ctr)",
                            spec.chain_mode.c_str());
    if (l.cipher->block_size != l.iv_size)
      return make_error(Errc::kUnsupported, "cipher spec: eboiv needs IV size == block size");
    CRYPTMAP_TRY(c, make_block_cipher(spec.cipher, a.cipher_key));
    return Ptr(new EboivIv(std::move(c), a.sector_size));
  }
  if (m == "elephant") {
    if (spec.chain_mode != "cbc" || l.cipher->block_size != 16 || l.extra_bytes == 0)
      return make_error(Errc::kUnsupported, "cipher spec: elephant needs a 16-byte block cbc");
    CRYPTMAP_TRY(c, make_block_cipher(spec.cipher, a.cipher_key));
    CRYPTMAP_TRY(
        k2, make_block_cipher(spec.cipher,
                              a.whole_key.subspan(l.tfm_count * l.subkey_bytes, l.extra_bytes)));
    return Ptr(new ElephantIv(std::move(c), std::move(k2), a.sector_size));
  }
  if (m == "lmk") {
    // v3: the seed is the first 16 bytes (MD5 size) of the 65th key; v2 has none.
    std::span<const std::byte> seed;
    if (l.extra_bytes != 0)
      seed = a.whole_key.subspan(l.tfm_count * l.subkey_bytes,
                                 std::min<std::size_t>(16, l.extra_bytes));
    return Ptr(new LmkIv(seed));
  }
  if (m == "tcw") {
    const std::size_t off = a.whole_key.size() - l.iv_size - 16;
    return Ptr(
        new TcwIv(a.whole_key.subspan(off, l.iv_size), a.whole_key.subspan(off + l.iv_size, 16)));
  }
  return make_error_fmt(Errc::kUnsupported, "cipher spec: IV mode", kNoObject,
                        "'%s' is not supported", m.c_str());
}

}  // namespace cryptmap::crypto::internal

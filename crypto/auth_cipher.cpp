// Authenticated sector encryption (docs/integrity.md §2) over OpenSSL EVP; HMAC over OpenSSL's
// SHA-256/SHA-512 block functions with the key's midstates computed once (HmacKey below).
#include "crypto/auth_cipher.h"

// SHA256_Init/Update/Final and the SHA-512 ones are deprecated in OpenSSL 3 in favour of EVP,
// whose contexts cannot be copied without an allocation in 3.0: HmacKey needs a hash state it
// can copy per sector. They stay available in every OpenSSL 3 release.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/internal/context_pool.h"
#include "crypto/internal/sha256_ni.h"
#include "crypto/random.h"

namespace cryptmap::crypto {
namespace {

enum class Kind { kXtsHmac, kGcm, kChaChaPoly };

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

const unsigned char* u8(const std::byte* p) { return reinterpret_cast<const unsigned char*>(p); }
unsigned char* u8(std::byte* p) { return reinterpret_cast<unsigned char*>(p); }

Error auth_failure(std::uint64_t object) {
  Error e = make_error(Errc::kAuth, "integrity tag", object);
  e.sys_errno = EILSEQ;
  return e;
}
Error openssl_error(const char* what) { return make_error(Errc::kIo, what); }

// SHA-NI unless the CPU lacks it or CRYPTMAP_TEST_HMAC_SHA256=openssl (read once, at the first
// cipher made: every cipher of the process uses the same code; hmac_sha256_implementation()).
// The fallback is what CPUs without SHA-NI run: tests force it here (auth_cipher.h).
bool hmac_sha256_on_ni() noexcept {
  static const bool yes = [] {
    const char* v = std::getenv("CRYPTMAP_TEST_HMAC_SHA256");
    const bool forced = v != nullptr && std::string_view(v) == "openssl";
    return !forced && internal::sha256_ni_available();
  }();
  return yes;
}

// HMAC-SHA-256/512 (RFC 2104) with the hash states after the key's inner and outer pad block
// computed once. A sector's MAC starts from copies of them: OpenSSL 3.0's EVP_MAC instead
// re-initialises by duplicating two provider contexts (two allocations and frees per sector).
// HMAC-SHA-256 on a CPU with SHA-NI runs SHA-256's block function directly
// (internal/sha256_ni.h) and hashes two sectors at once (mac2: the two messages' rounds
// interleaved: 1.8x the rate of one on the bench machine); otherwise OpenSSL's SHA256/SHA512
// contexts are copied per sector. The midstates are key material: locked, zeroed memory
// (SecretBytes); copies on the stack are wiped after use.
class HmacKey {
 public:
  static Result<HmacKey> create(bool sha512, std::span<const std::byte> key) {
    HmacKey h;
    h.sha512_ = sha512;
    h.ni_ = !sha512 && hmac_sha256_on_ni();
    CRYPTMAP_TRY(st, SecretBytes::allocate(2 * h.state_size()));
    h.states_ = std::move(st);
    const std::size_t block = sha512 ? SHA512_CBLOCK : SHA256_CBLOCK;
    CRYPTMAP_TRY(pad, SecretBytes::allocate(block));
    // A key longer than the block is hashed first (RFC 2104).
    if (key.size() > block) {
      if (sha512)
        SHA512(u8c(key.data()), key.size(), reinterpret_cast<unsigned char*>(pad.data()));
      else
        SHA256(u8c(key.data()), key.size(), reinterpret_cast<unsigned char*>(pad.data()));
    } else {
      std::memcpy(pad.data(), key.data(), key.size());
    }
    for (const std::byte x : {std::byte{0x36}, std::byte{0x5c}}) {
      CRYPTMAP_TRY(p, SecretBytes::copy_of(pad.span()));
      for (std::byte& b : p.span()) b ^= x;
      std::byte* state = h.states_.data() + (x == std::byte{0x36} ? 0 : h.state_size());
      if (sha512) {
        SHA512_CTX c;
        SHA512_Init(&c);
        SHA512_Update(&c, p.data(), p.size());
        std::memcpy(state, &c, sizeof c);
        OPENSSL_cleanse(&c, sizeof c);
      } else {
        SHA256_CTX c;  // after one whole block: h[] is the midstate, nothing buffered
        SHA256_Init(&c);
        SHA256_Update(&c, p.data(), p.size());
        std::memcpy(state, &c, sizeof c);
        OPENSSL_cleanse(&c, sizeof c);
      }
    }
    return h;
  }

  // Whether mac2 is faster than two mac calls.
  bool pairs() const noexcept { return ni_; }

  // out (at most the digest size) = HMAC(key, aad ‖ data), truncated.
  void mac(std::span<const std::byte> aad, std::span<const std::byte> data,
           std::span<std::byte> out) const {
    if (ni_ && fits_ni(aad, data)) {
      const Msg m[1] = {{aad, data, out}};
      ni_mac<1>(m);
      return;
    }
    std::array<unsigned char, 64> inner{};
    if (sha512_)
      run<SHA512_CTX>(aad, data, out, inner, SHA512_Update, SHA512_Final, SHA512_DIGEST_LENGTH);
    else
      run<SHA256_CTX>(aad, data, out, inner, SHA256_Update, SHA256_Final, SHA256_DIGEST_LENGTH);
    OPENSSL_cleanse(inner.data(), inner.size());
  }
  // Two MACs (each as mac), at once when pairs(). Both messages have the same sizes.
  void mac2(std::span<const std::byte> aad_a, std::span<const std::byte> data_a,
            std::span<std::byte> out_a, std::span<const std::byte> aad_b,
            std::span<const std::byte> data_b, std::span<std::byte> out_b) const {
    if (ni_ && fits_ni(aad_a, data_a) && aad_b.size() == aad_a.size() &&
        data_b.size() == data_a.size()) {
      const Msg m[2] = {{aad_a, data_a, out_a}, {aad_b, data_b, out_b}};
      ni_mac<2>(m);
      return;
    }
    mac(aad_a, data_a, out_a);
    mac(aad_b, data_b, out_b);
  }

 private:
  struct Msg {
    std::span<const std::byte> aad, data;
    std::span<std::byte> out;
  };
  static const unsigned char* u8c(const std::byte* p) {
    return reinterpret_cast<const unsigned char*>(p);
  }
  std::size_t state_size() const { return sha512_ ? sizeof(SHA512_CTX) : sizeof(SHA256_CTX); }
  // The SHA-NI path hashes the first block from the AAD and the data's head, whole blocks
  // straight from the data, and the tail with its padding from a block of its own.
  static bool fits_ni(std::span<const std::byte> aad, std::span<const std::byte> data) {
    return aad.size() < 64 && data.size() >= 64 - aad.size();
  }

  template <class Ctx, class Update, class Final>
  void run(std::span<const std::byte> aad, std::span<const std::byte> data,
           std::span<std::byte> out, std::array<unsigned char, 64>& inner, Update update,
           Final final, std::size_t digest) const {
    Ctx c;
    std::memcpy(&c, states_.data(), sizeof c);
    update(&c, aad.data(), aad.size());
    update(&c, data.data(), data.size());
    final(inner.data(), &c);
    std::memcpy(&c, states_.data() + sizeof c, sizeof c);
    update(&c, inner.data(), digest);
    final(inner.data(), &c);
    std::memcpy(out.data(), inner.data(), std::min(out.size(), digest));
    OPENSSL_cleanse(&c, sizeof c);
  }

  // N HMAC-SHA-256s (equal sizes) on SHA-NI, their blocks hashed together.
  template <int N>
  void ni_mac(const Msg* m) const {
    static_assert(N == 1 || N == 2);
    auto blocks = [](std::array<std::uint32_t, 8>* st, const std::byte* const* p, std::size_t n) {
      if constexpr (N == 1)
        internal::sha256_ni_blocks(st[0].data(), p[0], n);
      else
        internal::sha256_ni_blocks_x2(st[0].data(), p[0], st[1].data(), p[1], n);
    };
    const std::size_t a = m[0].aad.size(), n = m[0].data.size();
    const std::size_t head = 64 - a;  // data bytes in the first block
    const std::size_t full = (n - head) / 64, tail = (n - head) % 64;
    const std::size_t tail_blocks = tail + 9 <= 64 ? 1 : 2;
    const std::uint64_t bits = (64 + std::uint64_t{a} + n) * 8;  // the pad block included
    std::array<std::array<std::uint32_t, 8>, N> st;
    alignas(16) std::array<std::array<std::byte, 128>, N> blk;
    const std::byte* p[N];
    for (int i = 0; i < N; ++i) {
      std::memcpy(st[i].data(), states_.data() + offsetof(SHA256_CTX, h), 32);
      std::memcpy(blk[i].data(), m[i].aad.data(), a);
      std::memcpy(blk[i].data() + a, m[i].data.data(), head);
      p[i] = blk[i].data();
    }
    blocks(st.data(), p, 1);
    for (int i = 0; i < N; ++i) p[i] = m[i].data.data() + head;
    blocks(st.data(), p, full);
    for (int i = 0; i < N; ++i) {
      std::byte* b = blk[i].data();
      std::memcpy(b, m[i].data.data() + head + 64 * full, tail);
      b[tail] = std::byte{0x80};
      std::fill(b + tail + 1, b + 64 * tail_blocks - 8, std::byte{0});
      store_be64(b + 64 * tail_blocks - 8, bits);
      p[i] = b;
    }
    blocks(st.data(), p, tail_blocks);
    // Outer: the inner digest, padded, after the outer pad block.
    for (int i = 0; i < N; ++i) {
      std::byte* b = blk[i].data();
      for (int w = 0; w < 8; ++w) store_be32(b + 4 * w, st[i][w]);
      b[32] = std::byte{0x80};
      std::fill(b + 33, b + 56, std::byte{0});
      store_be64(b + 56, (64 + 32) * 8);
      std::memcpy(st[i].data(), states_.data() + sizeof(SHA256_CTX) + offsetof(SHA256_CTX, h), 32);
    }
    blocks(st.data(), p, 1);
    for (int i = 0; i < N; ++i) {
      std::array<std::byte, 32> d;
      for (int w = 0; w < 8; ++w) store_be32(d.data() + 4 * w, st[i][w]);
      std::memcpy(m[i].out.data(), d.data(), std::min<std::size_t>(m[i].out.size(), 32));
      OPENSSL_cleanse(d.data(), d.size());
    }
    OPENSSL_cleanse(st.data(), sizeof st);
    OPENSSL_cleanse(blk.data(), sizeof blk);
  }

  bool sha512_ = false;
  bool ni_ = false;     // HMAC-SHA-256 on SHA-NI (ni_mac)
  SecretBytes states_;  // inner state, then outer state (OpenSSL contexts)
};

// Keyed cipher contexts for one direction: the key schedule is set up once, then each sector
// only re-initialises the IV.
struct Contexts {
  CtxPtr cipher;
  int enc = 1;
};
struct ContextPair {
  Contexts enc, dec;
};

class EvpAuthCipher final : public AuthSectorCipher {
  static constexpr std::size_t kIvBatch = 64;  // random IVs drawn per getrandom call

 public:
  EvpAuthCipher(AuthComposition c, Kind kind, std::uint32_t sector_size, SecretBytes enc_key,
                HmacKey mac_key)
      : c_(std::move(c)),
        kind_(kind),
        sector_size_(sector_size),
        enc_key_(std::move(enc_key)),
        mac_key_(std::move(mac_key)),
        pool_([this]() -> Result<std::unique_ptr<ContextPair>> {
          auto p = std::make_unique<ContextPair>();
          CRYPTMAP_TRY(e, contexts(1));
          CRYPTMAP_TRY(d, contexts(0));
          p->enc = std::move(e);
          p->dec = std::move(d);
          return p;
        }) {}

  Result<void> init() {
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
    const bool pairs = kind_ == Kind::kXtsHmac && mac_key_.pairs();
    // Random-IV compositions: the fresh IVs of up to kIvBatch sectors from one getrandom call
    // (one call per sector cost about 0.2 CPU-seconds per GB written).
    std::array<std::byte, kIvBatch * 16> ivs;
    const std::size_t iv = c_.stored_iv_size != 0 ? c_.iv_size : 0;
    auto iv_of_sector = [&](std::size_t i) -> std::span<const std::byte> {
      if (iv == 0) return {};
      return std::span<const std::byte>(ivs).subspan(i % kIvBatch * iv, iv);
    };
    for (std::size_t i = 0; i < n;) {
      if (iv != 0 && i % kIvBatch == 0)
        CRYPTMAP_TRY_VOID(random_bytes(std::span(ivs).first(std::min(kIvBatch, n - i) * iv)));
      if (pairs && i + 1 < n && (i + 1) % kIvBatch != 0) {
        CRYPTMAP_TRY_VOID(encrypt_two(ctx, run, i, iv_of_sector(i), iv_of_sector(i + 1)));
        i += 2;
        continue;
      }
      CRYPTMAP_TRY_VOID(encrypt_one(ctx, aad_sector(run.first + i, sector_size_),
                                    run.data.subspan(i * sector_size_, sector_size_),
                                    run.meta.subspan(i * c_.tag_size, c_.tag_size),
                                    iv_of_sector(i)));
      ++i;
    }
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
    auto verdict = [&](std::size_t i, const Result<void>& r) {
      if (!failed.empty()) failed[i] = !r;
      if (!r) {
        Error e = r.error();
        if (e.code == Errc::kAuth) e.object = (run.first + i).value;
        if (!first) first = e;
      }
    };
    const bool pairs = kind_ == Kind::kXtsHmac && mac_key_.pairs();
    for (std::size_t i = 0; i < n;) {
      if (pairs && i + 1 < n) {
        const std::array<Result<void>, 2> r = decrypt_two(ctx, run, i);
        verdict(i, r[0]);
        verdict(i + 1, r[1]);
        i += 2;
        continue;
      }
      verdict(i, decrypt_one(ctx, aad_sector(run.first + i, sector_size_),
                             run.data.subspan(i * sector_size_, sector_size_),
                             run.meta.subspan(i * c_.tag_size, c_.tag_size)));
      ++i;
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
    return c;
  }

  using Aad = std::array<std::byte, 8 + 16>;  // LE64(s) ‖ IV (16 bytes for xts, 12 for AEADs)

  // Encryption: the sector's IV (fresh random, forced, or plain64's LE64(s)) into the AAD and
  // into the tuple after its tag (the rest of the tuple zeroed). Returns the AAD's length.
  Result<std::size_t> seal_aad(std::uint64_t s, std::span<std::byte> tuple,
                               std::span<const std::byte> forced_iv, Aad& aad) const {
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
    std::copy(iv.begin(), iv.begin() + static_cast<std::ptrdiff_t>(c_.stored_iv_size),
              tuple.begin() + static_cast<std::ptrdiff_t>(c_.auth_size));
    std::fill(tuple.begin() + static_cast<std::ptrdiff_t>(c_.auth_size + c_.stored_iv_size),
              tuple.end(), std::byte{0});
    return 8 + c_.iv_size;
  }
  // Decryption: the AAD from the sector number and its tuple's stored IV. Returns its length.
  std::size_t open_aad(std::uint64_t s, std::span<const std::byte> tuple, Aad& aad) const {
    store_le64(aad.data(), s);
    if (c_.stored_iv_size != 0)
      std::copy_n(tuple.begin() + static_cast<std::ptrdiff_t>(c_.auth_size), c_.stored_iv_size,
                  aad.begin() + 8);
    else
      store_le64(aad.data() + 8, s);
    return 8 + c_.iv_size;
  }
  std::span<const std::byte> iv_of(const Aad& aad) const {
    return std::span<const std::byte>(aad).subspan(8, c_.iv_size);
  }

  Result<void> encrypt_one(Contexts& ctx, std::uint64_t s, std::span<std::byte> data,
                           std::span<std::byte> tuple, std::span<const std::byte> forced_iv) const {
    if (data.size() != sector_size_ || tuple.size() != c_.tag_size)
      return fail(make_error(Errc::kInvalid, "authenticated sector: sizes", s));
    Aad aad{};
    CRYPTMAP_TRY(alen, seal_aad(s, tuple, forced_iv, aad));
    const std::span<const std::byte> a(aad.data(), alen);
    const std::span<std::byte> tag = tuple.first(c_.auth_size);
    if (kind_ == Kind::kXtsHmac) {
      CRYPTMAP_TRY_VOID(xts(ctx, data, iv_of(aad)));
      hmac(a, data, tag);
      return ok();
    }
    return aead(ctx, a, iv_of(aad), data, tag);
  }

  // Sectors i and i + 1 of `run` (an HMAC composition): each XTS-encrypted (with IVs iv0 and
  // iv1 when random-IV), then both MACs computed together (HmacKey::mac2).
  Result<void> encrypt_two(Contexts& ctx, const SectorRun& run, std::size_t i,
                           std::span<const std::byte> iv0, std::span<const std::byte> iv1) const {
    std::array<Aad, 2> aad{};
    std::array<std::span<const std::byte>, 2> a;
    std::array<std::span<std::byte>, 2> data, tuple;
    for (std::size_t j = 0; j < 2; ++j) {
      data[j] = run.data.subspan((i + j) * sector_size_, sector_size_);
      tuple[j] = run.meta.subspan((i + j) * c_.tag_size, c_.tag_size);
      CRYPTMAP_TRY(alen, seal_aad(aad_sector(run.first + i + j, sector_size_), tuple[j],
                                  j == 0 ? iv0 : iv1, aad[j]));
      a[j] = std::span<const std::byte>(aad[j]).first(alen);
      CRYPTMAP_TRY_VOID(xts(ctx, data[j], iv_of(aad[j])));
    }
    mac_key_.mac2(a[0], data[0], tuple[0].first(c_.auth_size), a[1], data[1],
                  tuple[1].first(c_.auth_size));
    return ok();
  }

  Result<void> decrypt_one(Contexts& ctx, std::uint64_t s, std::span<std::byte> data,
                           std::span<const std::byte> tuple) const {
    if (data.size() != sector_size_ || tuple.size() != c_.tag_size)
      return fail(make_error(Errc::kInvalid, "authenticated sector: sizes", s));
    Aad aad{};
    const std::span<const std::byte> a(aad.data(), open_aad(s, tuple, aad));
    std::array<std::byte, 64> tag{};
    std::copy_n(tuple.begin(), c_.auth_size, tag.begin());
    const std::span<std::byte> want(tag.data(), c_.auth_size);
    if (kind_ == Kind::kXtsHmac) {
      std::array<std::byte, 64> got{};
      hmac(a, data, std::span(got).first(c_.auth_size));
      if (CRYPTO_memcmp(got.data(), want.data(), c_.auth_size) != 0) return fail(auth_failure(s));
      return xts(ctx, data, iv_of(aad));
    }
    auto r = aead(ctx, a, iv_of(aad), data, want);
    if (!r) std::fill(data.begin(), data.end(), std::byte{0});  // never unverified plaintext
    return r;
  }

  // Sectors i and i + 1 of `run` (an HMAC composition): both MACs computed together, then each
  // sector whose tag verified decrypted (a failed one keeps its ciphertext: no plaintext).
  std::array<Result<void>, 2> decrypt_two(Contexts& ctx, const SectorRun& run,
                                          std::size_t i) const {
    std::array<Aad, 2> aad{};
    std::array<std::span<const std::byte>, 2> a, tuple;
    std::array<std::span<std::byte>, 2> data;
    std::array<std::array<std::byte, 64>, 2> got{};
    std::array<std::uint64_t, 2> s{};
    for (std::size_t j = 0; j < 2; ++j) {
      s[j] = aad_sector(run.first + i + j, sector_size_);
      data[j] = run.data.subspan((i + j) * sector_size_, sector_size_);
      tuple[j] = run.meta.subspan((i + j) * c_.tag_size, c_.tag_size);
      a[j] = std::span<const std::byte>(aad[j]).first(open_aad(s[j], tuple[j], aad[j]));
    }
    mac_key_.mac2(a[0], data[0], std::span(got[0]).first(c_.auth_size), a[1], data[1],
                  std::span(got[1]).first(c_.auth_size));
    std::array<Result<void>, 2> r;
    for (std::size_t j = 0; j < 2; ++j) {
      if (CRYPTO_memcmp(got[j].data(), tuple[j].data(), c_.auth_size) != 0)
        r[j] = fail(auth_failure(s[j]));
      else
        r[j] = xts(ctx, data[j], iv_of(aad[j]));
    }
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

  void hmac(std::span<const std::byte> aad, std::span<const std::byte> c,
            std::span<std::byte> out) const {
    mac_key_.mac(aad, c, out);
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
  HmacKey mac_key_;  // HMAC compositions only
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

const char* hmac_sha256_implementation() noexcept {
  return hmac_sha256_on_ni() ? "sha-ni" : "openssl";
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
  HmacKey mac_key;
  if (kind == Kind::kXtsHmac) {
    CRYPTMAP_TRY(h, HmacKey::create(c.integrity == "hmac(sha512)", key.subspan(enc_len)));
    mac_key = std::move(h);
  }
  auto cipher =
      std::make_unique<EvpAuthCipher>(c, kind, sector_size, std::move(enc_key), std::move(mac_key));
  CRYPTMAP_TRY_VOID(cipher->init());
  return std::unique_ptr<AuthSectorCipher>(std::move(cipher));
}

}  // namespace cryptmap::crypto

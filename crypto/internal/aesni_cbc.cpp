#include "crypto/internal/aesni_cbc.h"

#include <cpuid.h>
#include <immintrin.h>

#include <cstring>

#include "base/check.h"
#include "base/secret.h"

namespace cryptmap::crypto::internal {
namespace {

// SubWord (the AES S-box on each byte) via AESKEYGENASSIST: dword 0 of the result is
// SubWord(dword 1 of the input).
__attribute__((target("aes,sse2"))) std::uint32_t sub_word(std::uint32_t w) {
  const __m128i v = _mm_set_epi32(0, 0, static_cast<int>(w), 0);
  return static_cast<std::uint32_t>(_mm_cvtsi128_si32(_mm_aeskeygenassist_si128(v, 0)));
}

}  // namespace

bool aesni_available() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse2");
}

// FIPS-197 §5.2 key expansion. Words are the key bytes read little-endian, so RotWord is a right
// rotation by 8 and Rcon goes into the low byte; the byte layout is what AESENC expects.
int aesni_expand_key(std::span<const std::byte> key, std::uint8_t* round_keys) {
  const std::size_t nk = key.size() / 4;
  CRYPTMAP_CHECK(key.size() == 16 || key.size() == 24 || key.size() == 32);
  const int rounds = static_cast<int>(nk) + 6;
  const std::size_t total = 4 * static_cast<std::size_t>(rounds + 1);
  std::uint32_t w[60];
  std::memcpy(w, key.data(), key.size());
  std::uint32_t rcon = 1;
  for (std::size_t i = nk; i < total; ++i) {
    std::uint32_t t = w[i - 1];
    if (i % nk == 0) {
      t = sub_word((t >> 8) | (t << 24)) ^ rcon;
      rcon = (rcon << 1) ^ ((rcon & 0x80) ? 0x11b : 0);
    } else if (nk > 6 && i % nk == 4) {
      t = sub_word(t);
    }
    w[i] = w[i - nk] ^ t;
  }
  std::memcpy(round_keys, w, total * 4);
  secure_zero(w, sizeof w);
  return rounds;
}

AesniCbcEncryptor::AesniCbcEncryptor(std::span<const std::byte> key)
    : rounds_(aesni_expand_key(key, round_keys_)) {}

AesniCbcEncryptor::~AesniCbcEncryptor() { secure_zero(round_keys_, sizeof round_keys_); }

__attribute__((target("aes,sse2"))) void AesniCbcEncryptor::encrypt(std::byte* const* units,
                                                                    const std::byte* const* ivs,
                                                                    std::size_t n,
                                                                    std::size_t unit_len) const {
  CRYPTMAP_CHECK(n >= 1 && n <= kLanes && unit_len % 16 == 0);
  // Always run all 8 lanes with fixed bounds, so the chains stay in registers; missing lanes
  // repeat lane 0's input into a scratch block that is thrown away.
  alignas(16) std::uint8_t scratch[16];
  __m128i x[kLanes];
#pragma GCC unroll 8
  for (std::size_t l = 0; l < kLanes; ++l)
    x[l] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ivs[l < n ? l : 0]));
  for (std::size_t off = 0; off < unit_len; off += 16) {
    const __m128i rk0 = _mm_load_si128(reinterpret_cast<const __m128i*>(round_keys_));
#pragma GCC unroll 8
    for (std::size_t l = 0; l < kLanes; ++l) {
      const std::byte* src = units[l < n ? l : 0] + off;
      const __m128i p = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
      x[l] = _mm_xor_si128(_mm_xor_si128(x[l], p), rk0);
    }
    for (int r = 1; r < rounds_; ++r) {
      const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(round_keys_ + 16 * r));
#pragma GCC unroll 8
      for (std::size_t l = 0; l < kLanes; ++l) x[l] = _mm_aesenc_si128(x[l], k);
    }
    const __m128i kl = _mm_load_si128(reinterpret_cast<const __m128i*>(round_keys_ + 16 * rounds_));
#pragma GCC unroll 8
    for (std::size_t l = 0; l < kLanes; ++l) {
      x[l] = _mm_aesenclast_si128(x[l], kl);
      auto* dst =
          l < n ? reinterpret_cast<__m128i*>(units[l] + off) : reinterpret_cast<__m128i*>(scratch);
      _mm_storeu_si128(dst, x[l]);
    }
  }
}

namespace {

// Multiplication by alpha in GF(2^128), XTS little-endian convention, on one register:
// (lo, hi) << 1 with the carry out of bit 127 folded back as 0x87.
__attribute__((target("aes,sse2"))) inline __m128i mul_alpha(__m128i t) {
  const __m128i carries = _mm_shuffle_epi32(_mm_srli_epi64(t, 63), 0x4E);  // (hi>>63, lo>>63)
  const __m128i mask = _mm_sub_epi64(_mm_setzero_si128(), carries);        // all-ones where set
  return _mm_xor_si128(_mm_slli_epi64(t, 1), _mm_and_si128(mask, _mm_set_epi64x(1, 0x87)));
}

__attribute__((target("aes,sse2"))) __m128i tweak0(const std::uint8_t* tweak_keys, int rounds,
                                                   const std::byte* iv) {
  __m128i t = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(iv)),
                            _mm_load_si128(reinterpret_cast<const __m128i*>(tweak_keys)));
  for (int r = 1; r < rounds; ++r)
    t = _mm_aesenc_si128(t, _mm_load_si128(reinterpret_cast<const __m128i*>(tweak_keys + 16 * r)));
  return _mm_aesenclast_si128(
      t, _mm_load_si128(reinterpret_cast<const __m128i*>(tweak_keys + 16 * rounds)));
}

// AES-NI: groups of 8 blocks, then single blocks; `t` is the tweak of the first block.
// Reads `in` and writes `out` (the same memory for in place, or not overlapping at all).
template <bool kEncrypt>
__attribute__((target("aes,sse2"))) void xts_blocks_sse(const std::uint8_t* keys, int rounds,
                                                        const std::byte* in, std::byte* out,
                                                        std::size_t len, __m128i t) {
  constexpr std::size_t kLanes = 8;
  std::size_t off = 0;
  for (; off + 16 * kLanes <= len; off += 16 * kLanes) {
    __m128i tw[kLanes], x[kLanes];
    const __m128i k0 = _mm_load_si128(reinterpret_cast<const __m128i*>(keys));
#pragma GCC unroll 8
    for (std::size_t l = 0; l < kLanes; ++l) {
      tw[l] = t;
      t = mul_alpha(t);
      x[l] = _mm_xor_si128(
          _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + off + 16 * l)),
                        tw[l]),
          k0);
    }
    for (int r = 1; r < rounds; ++r) {
      const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(keys + 16 * r));
#pragma GCC unroll 8
      for (std::size_t l = 0; l < kLanes; ++l)
        x[l] = kEncrypt ? _mm_aesenc_si128(x[l], k) : _mm_aesdec_si128(x[l], k);
    }
    const __m128i kl = _mm_load_si128(reinterpret_cast<const __m128i*>(keys + 16 * rounds));
#pragma GCC unroll 8
    for (std::size_t l = 0; l < kLanes; ++l) {
      x[l] = kEncrypt ? _mm_aesenclast_si128(x[l], kl) : _mm_aesdeclast_si128(x[l], kl);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + off + 16 * l), _mm_xor_si128(x[l], tw[l]));
    }
  }
  for (; off < len; off += 16) {  // tail (never hit for 512..4096-byte units)
    __m128i x = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + off)), t);
    x = _mm_xor_si128(x, _mm_load_si128(reinterpret_cast<const __m128i*>(keys)));
    for (int r = 1; r < rounds; ++r) {
      const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(keys + 16 * r));
      x = kEncrypt ? _mm_aesenc_si128(x, k) : _mm_aesdec_si128(x, k);
    }
    const __m128i kl = _mm_load_si128(reinterpret_cast<const __m128i*>(keys + 16 * rounds));
    x = kEncrypt ? _mm_aesenclast_si128(x, kl) : _mm_aesdeclast_si128(x, kl);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + off), _mm_xor_si128(x, t));
    t = mul_alpha(t);
  }
}

template <bool kEncrypt>
__attribute__((target("aes,sse2"))) void xts_unit(const std::uint8_t* keys,
                                                  const std::uint8_t* tweak_keys, int rounds,
                                                  const std::byte* in, std::byte* out,
                                                  std::size_t len, const std::byte* iv) {
  xts_blocks_sse<kEncrypt>(keys, rounds, in, out, len, tweak0(tweak_keys, rounds, iv));
}

// VAES (256-bit, AVX2): 16 blocks in eight registers per step (two blocks per AESENC), then the
// AES-NI code for the rest. OpenSSL 3.0's XTS does not use VAES.
template <bool kEncrypt>
__attribute__((target("vaes,avx2,aes,sse2"))) void xts_unit_vaes(const std::uint8_t* keys,
                                                                 const std::uint8_t* tweak_keys,
                                                                 int rounds, const std::byte* in,
                                                                 std::byte* out, std::size_t len,
                                                                 const std::byte* iv) {
  __m128i t = tweak0(tweak_keys, rounds, iv);
  alignas(32) __m128i tw[16];
  std::size_t off = 0;
  for (; off + 256 <= len; off += 256) {
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) {
      tw[j] = t;
      t = mul_alpha(t);
    }
    const __m256i k0 =
        _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(keys)));
    __m256i x[8];
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      const __m256i tv = _mm256_load_si256(reinterpret_cast<const __m256i*>(&tw[2 * q]));
      x[q] = _mm256_xor_si256(
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + off + 32 * q)),
                           tv),
          k0);
    }
    for (int r = 1; r < rounds; ++r) {
      const __m256i k = _mm256_broadcastsi128_si256(
          _mm_load_si128(reinterpret_cast<const __m128i*>(keys + 16 * r)));
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q)
        x[q] = kEncrypt ? _mm256_aesenc_epi128(x[q], k) : _mm256_aesdec_epi128(x[q], k);
    }
    const __m256i kl = _mm256_broadcastsi128_si256(
        _mm_load_si128(reinterpret_cast<const __m128i*>(keys + 16 * rounds)));
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      x[q] = kEncrypt ? _mm256_aesenclast_epi128(x[q], kl) : _mm256_aesdeclast_epi128(x[q], kl);
      const __m256i tv = _mm256_load_si256(reinterpret_cast<const __m256i*>(&tw[2 * q]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + off + 32 * q),
                          _mm256_xor_si256(x[q], tv));
    }
  }
  secure_zero(tw, sizeof tw);
  if (off < len) xts_blocks_sse<kEncrypt>(keys, rounds, in + off, out + off, len - off, t);
}

// Equivalent inverse cipher (FIPS-197 §5.3.5): reversed round keys, InvMixColumns on the middle
// ones.
__attribute__((target("aes,sse2"))) void inverse_round_keys(const std::uint8_t* enc, int rounds,
                                                            std::uint8_t* dec) {
  std::memcpy(dec, enc + 16 * rounds, 16);
  for (int r = 1; r < rounds; ++r) {
    const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(enc + 16 * (rounds - r)));
    _mm_store_si128(reinterpret_cast<__m128i*>(dec + 16 * r), _mm_aesimc_si128(k));
  }
  std::memcpy(dec + 16 * rounds, enc, 16);
}

}  // namespace

AesniXts::AesniXts(std::span<const std::byte> key, bool allow_vaes)
    : vaes_(allow_vaes && vaes_available()) {
  CRYPTMAP_CHECK(key.size() == 32 || key.size() == 64);
  const std::size_t half = key.size() / 2;
  rounds_ = aesni_expand_key(key.first(half), enc_);
  aesni_expand_key(key.subspan(half), tweak_);
  inverse_round_keys(enc_, rounds_, dec_);
}

AesniXts::~AesniXts() {
  secure_zero(enc_, sizeof enc_);
  secure_zero(dec_, sizeof dec_);
  secure_zero(tweak_, sizeof tweak_);
}

void AesniXts::encrypt(const std::byte* in, std::byte* out, std::size_t len,
                       const std::byte* iv) const {
  if (vaes_)
    xts_unit_vaes<true>(enc_, tweak_, rounds_, in, out, len, iv);
  else
    xts_unit<true>(enc_, tweak_, rounds_, in, out, len, iv);
}

void AesniXts::decrypt(const std::byte* in, std::byte* out, std::size_t len,
                       const std::byte* iv) const {
  if (vaes_)
    xts_unit_vaes<false>(dec_, tweak_, rounds_, in, out, len, iv);
  else
    xts_unit<false>(dec_, tweak_, rounds_, in, out, len, iv);
}

AesniCbcDecryptor::AesniCbcDecryptor(std::span<const std::byte> key) {
  alignas(16) std::uint8_t enc[15 * 16];
  rounds_ = aesni_expand_key(key, enc);
  inverse_round_keys(enc, rounds_, dec_);
  secure_zero(enc, sizeof enc);
}

AesniCbcDecryptor::~AesniCbcDecryptor() { secure_zero(dec_, sizeof dec_); }

__attribute__((target("aes,sse2"))) void AesniCbcDecryptor::decrypt(std::byte* unit,
                                                                    std::size_t len,
                                                                    const std::byte* iv) const {
  constexpr std::size_t kLanes = 8;
  CRYPTMAP_CHECK(len % 16 == 0);
  __m128i prev = _mm_loadu_si128(reinterpret_cast<const __m128i*>(iv));
  std::size_t off = 0;
  for (; off + 16 * kLanes <= len; off += 16 * kLanes) {
    // Load the whole group of ciphertext first: the plaintext overwrites it in place.
    __m128i c[kLanes], x[kLanes];
    const __m128i k0 = _mm_load_si128(reinterpret_cast<const __m128i*>(dec_));
#pragma GCC unroll 8
    for (std::size_t l = 0; l < kLanes; ++l) {
      c[l] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(unit + off + 16 * l));
      x[l] = _mm_xor_si128(c[l], k0);
    }
    for (int r = 1; r < rounds_; ++r) {
      const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(dec_ + 16 * r));
#pragma GCC unroll 8
      for (std::size_t l = 0; l < kLanes; ++l) x[l] = _mm_aesdec_si128(x[l], k);
    }
    const __m128i kl = _mm_load_si128(reinterpret_cast<const __m128i*>(dec_ + 16 * rounds_));
#pragma GCC unroll 8
    for (std::size_t l = 0; l < kLanes; ++l) {
      x[l] = _mm_xor_si128(_mm_aesdeclast_si128(x[l], kl), l == 0 ? prev : c[l - 1]);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(unit + off + 16 * l), x[l]);
    }
    prev = c[kLanes - 1];
  }
  for (; off < len; off += 16) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(unit + off));
    __m128i x = _mm_xor_si128(c, _mm_load_si128(reinterpret_cast<const __m128i*>(dec_)));
    for (int r = 1; r < rounds_; ++r)
      x = _mm_aesdec_si128(x, _mm_load_si128(reinterpret_cast<const __m128i*>(dec_ + 16 * r)));
    x = _mm_aesdeclast_si128(x,
                             _mm_load_si128(reinterpret_cast<const __m128i*>(dec_ + 16 * rounds_)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(unit + off), _mm_xor_si128(x, prev));
    prev = c;
  }
}

// CPUID leaf 7 directly: clang 14's __builtin_cpu_supports does not know "vaes". VAES needs the
// OS to save the YMM state (OSXSAVE and XCR0 bits 1-2), as AVX2 does.
bool vaes_available() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & bit_OSXSAVE) == 0) return false;
  std::uint32_t xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return false;  // XMM and YMM state enabled by the OS
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  constexpr unsigned kAvx2 = 1u << 5;  // leaf 7 EBX
  constexpr unsigned kVaes = 1u << 9;  // leaf 7 ECX
  return (b & kAvx2) != 0 && (c & kVaes) != 0;
}

}  // namespace cryptmap::crypto::internal

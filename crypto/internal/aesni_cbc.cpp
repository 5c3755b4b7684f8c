#include "crypto/internal/aesni_cbc.h"

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
AesniCbcEncryptor::AesniCbcEncryptor(std::span<const std::byte> key) {
  const std::size_t nk = key.size() / 4;
  CRYPTMAP_CHECK(key.size() == 16 || key.size() == 24 || key.size() == 32);
  rounds_ = static_cast<int>(nk) + 6;
  const std::size_t total = 4 * static_cast<std::size_t>(rounds_ + 1);
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
  std::memcpy(round_keys_, w, total * 4);
  secure_zero(w, sizeof w);
}

AesniCbcEncryptor::~AesniCbcEncryptor() { secure_zero(round_keys_, sizeof round_keys_); }

__attribute__((target("aes,sse2"))) void AesniCbcEncryptor::encrypt(
    std::byte* const* units, const std::byte* const* ivs, std::size_t n,
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
      auto* dst = l < n ? reinterpret_cast<__m128i*>(units[l] + off)
                        : reinterpret_cast<__m128i*>(scratch);
      _mm_storeu_si128(dst, x[l]);
    }
  }
}

}  // namespace cryptmap::crypto::internal

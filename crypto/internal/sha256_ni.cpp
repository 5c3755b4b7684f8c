// SHA-256 on SHA-NI (see sha256_ni.h). The state is kept as the instructions want it: ABEF and
// CDGH in two registers; the message schedule in four registers, W[4g..4g+3] for round group g,
// advanced with sha256msg1/msg2. block<N> runs one block of N messages with their round groups
// interleaved, so the two messages' dependency chains overlap.
#include "crypto/internal/sha256_ni.h"

#include <cpuid.h>
#include <immintrin.h>

namespace cryptmap::crypto::internal {
namespace {

#define CRYPTMAP_SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

alignas(16) constexpr std::uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

struct State {
  __m128i abef, cdgh;
};

CRYPTMAP_SHA_TARGET State load(const std::uint32_t* st) {
  const __m128i abcd = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(st)),
                                         0xB1);  // CDAB
  const __m128i efgh =
      _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(st + 4)), 0x1B);  // HGFE
  return {_mm_alignr_epi8(abcd, efgh, 8), _mm_blend_epi16(efgh, abcd, 0xF0)};
}

CRYPTMAP_SHA_TARGET void save(const State& s, std::uint32_t* st) {
  const __m128i feba = _mm_shuffle_epi32(s.abef, 0x1B);
  const __m128i dchg = _mm_shuffle_epi32(s.cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(st), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(st + 4), _mm_alignr_epi8(dchg, feba, 8));
}

// One 64-byte block of each of N messages (p[i] for state s[i]).
template <int N>
CRYPTMAP_SHA_TARGET inline __attribute__((always_inline)) void block(State* s,
                                                                     const std::byte* const* p) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i w[N][4], abef0[N], cdgh0[N], m[N];
  for (int i = 0; i < N; ++i) {
    abef0[i] = s[i].abef;
    cdgh0[i] = s[i].cdgh;
  }
#pragma GCC unroll 16
  for (int g = 0; g < 16; ++g) {  // rounds 4g .. 4g+3
    const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK + 4 * g));
    for (int i = 0; i < N; ++i) {
      if (g < 4)
        w[i][g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i] + 16 * g)),
                                   bswap);
      m[i] = _mm_add_epi32(w[i][g & 3], k);
      s[i].cdgh = _mm_sha256rnds2_epu32(s[i].cdgh, s[i].abef, m[i]);
    }
    for (int i = 0; i < N; ++i) {
      if (g >= 3 && g <= 14) {  // W for group g + 1
        __m128i& next = w[i][(g + 1) & 3];
        next = _mm_add_epi32(next, _mm_alignr_epi8(w[i][g & 3], w[i][(g + 3) & 3], 4));
        next = _mm_sha256msg2_epu32(next, w[i][g & 3]);
      }
      s[i].abef = _mm_sha256rnds2_epu32(s[i].abef, s[i].cdgh, _mm_shuffle_epi32(m[i], 0x0E));
      if (g >= 1 && g <= 12)  // first half of W for group g + 3
        w[i][(g + 3) & 3] = _mm_sha256msg1_epu32(w[i][(g + 3) & 3], w[i][g & 3]);
    }
  }
  for (int i = 0; i < N; ++i) {
    s[i].abef = _mm_add_epi32(s[i].abef, abef0[i]);
    s[i].cdgh = _mm_add_epi32(s[i].cdgh, cdgh0[i]);
  }
}

}  // namespace

bool sha256_ni_available() noexcept {
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool ssse3 = (c & (1u << 9)) != 0, sse41 = (c & (1u << 19)) != 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return ssse3 && sse41 && (b & (1u << 29)) != 0;  // leaf 7 EBX bit 29: SHA
  }();
  return yes;
}

CRYPTMAP_SHA_TARGET void sha256_ni_blocks(std::uint32_t* state, const std::byte* data,
                                          std::size_t blocks) noexcept {
  State s = load(state);
  for (std::size_t b = 0; b < blocks; ++b) {
    const std::byte* p[1] = {data + 64 * b};
    block<1>(&s, p);
  }
  save(s, state);
}

CRYPTMAP_SHA_TARGET void sha256_ni_blocks_x2(std::uint32_t* state_a, const std::byte* a,
                                             std::uint32_t* state_b, const std::byte* b,
                                             std::size_t blocks) noexcept {
  State s[2] = {load(state_a), load(state_b)};
  for (std::size_t i = 0; i < blocks; ++i) {
    const std::byte* p[2] = {a + 64 * i, b + 64 * i};
    block<2>(s, p);
  }
  save(s[0], state_a);
  save(s[1], state_b);
}

}  // namespace cryptmap::crypto::internal

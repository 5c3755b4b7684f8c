// prototype: SHA-256 block function with SHA-NI, one stream and two interleaved streams
#include <immintrin.h>
#include <cstddef>
#include <cstdint>
namespace proto {
alignas(16) static const std::uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

struct Lane {
  __m128i s0, s1;  // ABEF, CDGH
};

__attribute__((target("sha,sse4.1,ssse3"))) static inline Lane load_state(const std::uint32_t* st) {
  __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(st));
  __m128i s1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(st + 4));
  tmp = _mm_shuffle_epi32(tmp, 0xB1);  // CDAB
  s1 = _mm_shuffle_epi32(s1, 0x1B);    // EFGH
  Lane l;
  l.s0 = _mm_alignr_epi8(tmp, s1, 8);     // ABEF
  l.s1 = _mm_blend_epi16(s1, tmp, 0xF0);  // CDGH
  return l;
}
__attribute__((target("sha,sse4.1,ssse3"))) static inline void store_state(const Lane& l,
                                                                           std::uint32_t* st) {
  __m128i tmp = _mm_shuffle_epi32(l.s0, 0x1B);  // FEBA
  __m128i s1 = _mm_shuffle_epi32(l.s1, 0xB1);   // DCHG
  __m128i s0 = _mm_blend_epi16(tmp, s1, 0xF0);  // DCBA
  s1 = _mm_alignr_epi8(s1, tmp, 8);             // ABEF
  _mm_storeu_si128(reinterpret_cast<__m128i*>(st), s0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(st + 4), s1);
}

// one block for N lanes, interleaved
template <int N>
__attribute__((target("sha,sse4.1,ssse3"), always_inline)) static inline void block(
    Lane* l, const unsigned char* const* p) {
  const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i m[N][4], save0[N], save1[N], msg[N], tmp[N];
  for (int i = 0; i < N; ++i) {
    save0[i] = l[i].s0;
    save1[i] = l[i].s1;
  }
#pragma GCC unroll 16
  for (int g = 0; g < 16; ++g) {
    const __m128i k = _mm_load_si128(reinterpret_cast<const __m128i*>(kK + 4 * g));
    for (int i = 0; i < N; ++i) {
      if (g < 4)
        m[i][g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[i] + 16 * g)),
                                   mask);
      msg[i] = _mm_add_epi32(m[i][g & 3], k);
      l[i].s1 = _mm_sha256rnds2_epu32(l[i].s1, l[i].s0, msg[i]);
    }
    for (int i = 0; i < N; ++i) {
      if (g >= 3 && g <= 14) {
        tmp[i] = _mm_alignr_epi8(m[i][g & 3], m[i][(g + 3) & 3], 4);
        m[i][(g + 1) & 3] = _mm_add_epi32(m[i][(g + 1) & 3], tmp[i]);
        m[i][(g + 1) & 3] = _mm_sha256msg2_epu32(m[i][(g + 1) & 3], m[i][g & 3]);
      }
      msg[i] = _mm_shuffle_epi32(msg[i], 0x0E);
      l[i].s0 = _mm_sha256rnds2_epu32(l[i].s0, l[i].s1, msg[i]);
      if (g >= 1 && g <= 12)
        m[i][(g + 3) & 3] = _mm_sha256msg1_epu32(m[i][(g + 3) & 3], m[i][g & 3]);
    }
  }
  for (int i = 0; i < N; ++i) {
    l[i].s0 = _mm_add_epi32(l[i].s0, save0[i]);
    l[i].s1 = _mm_add_epi32(l[i].s1, save1[i]);
  }
}

__attribute__((target("sha,sse4.1,ssse3"))) inline void blocks1(std::uint32_t* st,
                                                                const unsigned char* p,
                                                                std::size_t n) {
  Lane l = load_state(st);
  for (std::size_t b = 0; b < n; ++b) {
    const unsigned char* q[1] = {p + 64 * b};
    block<1>(&l, q);
  }
  store_state(l, st);
}
__attribute__((target("sha,sse4.1,ssse3"))) inline void blocks2(std::uint32_t* sa,
                                                                const unsigned char* a,
                                                                std::uint32_t* sb,
                                                                const unsigned char* b,
                                                                std::size_t n) {
  Lane l[2] = {load_state(sa), load_state(sb)};
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char* q[2] = {a + 64 * i, b + 64 * i};
    block<2>(l, q);
  }
  store_state(l[0], sa);
  store_state(l[1], sb);
}
}  // namespace proto

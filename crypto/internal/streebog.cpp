#include "crypto/internal/streebog.h"

#include <algorithm>
#include <cstring>

#include "base/secret.h"
#include "crypto/internal/gost_pi.h"

namespace cryptmap::crypto::internal {
namespace {

using U512 = std::array<std::uint64_t, 8>;

// RFC 6986 §6.4: the 64 rows of the matrix A of the linear transformation l, row 0 for the
// most significant bit of a 64-bit word.
constexpr std::array<std::uint64_t, 64> kA{
    0x8e20faa72ba0b470, 0x47107ddd9b505a38, 0xad08b0e0c3282d1c, 0xd8045870ef14980e,
    0x6c022c38f90a4c07, 0x3601161cf205268d, 0x1b8e0b0e798c13c8, 0x83478b07b2468764,
    0xa011d380818e8f40, 0x5086e740ce47c920, 0x2843fd2067adea10, 0x14aff010bdd87508,
    0x0ad97808d06cb404, 0x05e23c0468365a02, 0x8c711e02341b2d01, 0x46b60f011a83988e,
    0x90dab52a387ae76f, 0x486dd4151c3dfdb9, 0x24b86a840e90f0d2, 0x125c354207487869,
    0x092e94218d243cba, 0x8a174a9ec8121e5d, 0x4585254f64090fa0, 0xaccc9ca9328a8950,
    0x9d4df05d5f661451, 0xc0a878a0a1330aa6, 0x60543c50de970553, 0x302a1e286fc58ca7,
    0x18150f14b9ec46dd, 0x0c84890ad27623e0, 0x0642ca05693b9f70, 0x0321658cba93c138,
    0x86275df09ce8aaa8, 0x439da0784e745554, 0xafc0503c273aa42a, 0xd960281e9d1d5215,
    0xe230140fc0802984, 0x71180a8960409a42, 0xb60c05ca30204d21, 0x5b068c651810a89e,
    0x456c34887a3805b9, 0xac361a443d1c8cd2, 0x561b0d22900e4669, 0x2b838811480723ba,
    0x9bcf4486248d9f5d, 0xc3e9224312c8c1a0, 0xeffa11af0964ee50, 0xf97d86d98a327728,
    0xe4fa2054a80b329c, 0x727d102a548b194e, 0x39b008152acb8227, 0x9258048415eb419d,
    0x492c024284fbaec0, 0xaa16012142f35760, 0x550b8e9e21f7a530, 0xa48b474f9ef5dc18,
    0x70a6a56e2440598e, 0x3853dc371220a247, 0x1ca76e95091051ad, 0x0edd37c48a08a6d8,
    0x07e095624504536c, 0x8d70c431ac02a736, 0xc83862965601dd1b, 0x641c314b2b8ee083};

// RFC 6986 §6.5: the iteration constants C1..C12, as little-endian words.
constexpr std::array<U512, 12> kC{{
    {0xdd806559f2a64507, 0x05767436cc744d23, 0xa2422a08a460d315, 0x4b7ce09192676901,
     0x714eb88d7585c4fc, 0x2f6a76432e45d016, 0xebcb2f81c0657c1f, 0xb1085bda1ecadae9},
    {0xe679047021b19bb7, 0x55dda21bd7cbcd56, 0x5cb561c2db0aa7ca, 0x9ab5176b12d69958,
     0x61d55e0f16b50131, 0xf3feea720a232b98, 0x4fe39d460f70b5d7, 0x6fa3b58aa99d2f1a},
    {0x991e96f50aba0ab2, 0xc2b6f443867adb31, 0xc1c93a376062db09, 0xd3e20fe490359eb1,
     0xf2ea7514b1297b7b, 0x06f15e5f529c1f8b, 0x0a39fc286a3d8435, 0xf574dcac2bce2fc7},
    {0x220cbebc84e3d12e, 0x3453eaa193e837f1, 0xd8b71333935203be, 0xa9d72c82ed03d675,
     0x9d721cad685e353f, 0x488e857e335c3c7d, 0xf948e1a05d71e4dd, 0xef1fdfb3e81566d2},
    {0x601758fd7c6cfe57, 0x7a56a27ea9ea63f5, 0xdfff00b723271a16, 0xbfcd1747253af5a3,
     0x359e35d7800fffbd, 0x7f151c1f1686104a, 0x9a3f410c6ca92363, 0x4bea6bacad474799},
    {0xfa68407a46647d6e, 0xbf71c57236904f35, 0x0af21f66c2bec6b6, 0xcffaa6b71c9ab7b4,
     0x187f9ab49af08ec6, 0x2d66c4f95142a46c, 0x6fa4c33b7a3039c0, 0xae4faeae1d3ad3d9},
    {0x8886564d3a14d493, 0x3517454ca23c4af3, 0x06476983284a0504, 0x0992abc52d822c37,
     0xd3473e33197a93c9, 0x399ec6c7e6bf87c9, 0x51ac86febf240954, 0xf4c70e16eeaac5ec},
    {0xa47f0dd4bf02e71e, 0x36acc2355951a8d9, 0x69d18d2bd1a5c42f, 0xf4892bcb929b0690,
     0x89b4443b4ddbc49a, 0x4eb7f8719c36de1e, 0x03e7aa020c6e4141, 0x9b1f5b424d93c9a7},
    {0x7261445183235adb, 0x0e38dc92cb1f2a60, 0x7b2b8a9aa6079c54, 0x800a440bdbb2ceb1,
     0x3cd955b7e00d0984, 0x3a7d3a1b25894224, 0x944c9ad8ec165fde, 0x378f5a541631229b},
    {0x74b4c7fb98459ced, 0x3698fad1153bb6c3, 0x7a1e6c303b7652f4, 0x9fe76702af69334b,
     0x1fffe18a1b336103, 0x8941e71cff8a78db, 0x382ae548b2e4f3f3, 0xabbedea680056f52},
    {0x6bcaa4cd81f32d1b, 0xdea2594ac06fd85d, 0xefbacd1d7d476e98, 0x8a1d71efea48b9ca,
     0x2001802114846679, 0xd8fa6bbbebab0761, 0x3002c6cd635afe94, 0x7bcd9ed0efc889fb},
    {0x48bc924af11bd720, 0xfaf417d5d9b21b99, 0xe71da4aa88e12852, 0x5d80ef9d1891cc86,
     0xf82012d430219f9b, 0xcda43c32bcdf1d77, 0xd21380b00449b17a, 0x378ee767f11631ba},
}};

// LPS in one table per byte position j of a word: T[j][b] = l(pi(b) << 8j). The transposition
// p is the indexing in lps(): output word i takes byte i of every input word j.
struct Tables {
  std::array<std::array<std::uint64_t, 256>, 8> t{};
  Tables() noexcept {
    for (int j = 0; j < 8; ++j) {
      for (int b = 0; b < 256; ++b) {
        const std::uint64_t v = static_cast<std::uint64_t>(kPi[static_cast<std::size_t>(b)])
                                << (8 * j);
        std::uint64_t r = 0;
        for (int i = 0; i < 64; ++i)
          if ((v >> (63 - i)) & 1u) r ^= kA[static_cast<std::size_t>(i)];
        t[static_cast<std::size_t>(j)][static_cast<std::size_t>(b)] = r;
      }
    }
  }
};

const Tables& tables() noexcept {
  static const Tables t;
  return t;
}

// out = LPS(a ^ b)
inline void lpsx(const U512& a, const U512& b, U512& out) noexcept {
  const auto& t = tables().t;
  U512 x;
  for (std::size_t j = 0; j < 8; ++j) x[j] = a[j] ^ b[j];
  for (std::size_t i = 0; i < 8; ++i) {
    const unsigned s = static_cast<unsigned>(8 * i);
    std::uint64_t w = 0;
    for (std::size_t j = 0; j < 8; ++j) w ^= t[j][(x[j] >> s) & 0xff];
    out[i] = w;
  }
}

// h = g_N(h, m) = E(LPS(h ^ N), m) ^ h ^ m (RFC 6986 §7.1).
void g(U512& h, const U512& n, const U512& m) noexcept {
  U512 k;
  U512 s;
  lpsx(h, n, k);
  lpsx(k, m, s);  // round 1
  for (std::size_t i = 0; i < 11; ++i) {
    lpsx(k, kC[i], k);
    lpsx(k, s, s);
  }
  lpsx(k, kC[11], k);
  for (std::size_t j = 0; j < 8; ++j) h[j] ^= s[j] ^ k[j] ^ m[j];
  secure_zero(k.data(), sizeof k);
  secure_zero(s.data(), sizeof s);
}

void add512(U512& a, const U512& b) noexcept {
  unsigned carry = 0;
  for (std::size_t j = 0; j < 8; ++j) {
    const std::uint64_t s = a[j] + b[j];
    const unsigned c1 = s < a[j] ? 1u : 0u;
    a[j] = s + carry;
    carry = c1 | (a[j] < s ? 1u : 0u);
  }
}

U512 load(const std::byte* p) noexcept {
  U512 w;
  for (std::size_t j = 0; j < 8; ++j) {
    std::uint64_t v = 0;
    for (int k = 7; k >= 0; --k)
      v = (v << 8) | std::to_integer<std::uint64_t>(p[8 * j + static_cast<std::size_t>(k)]);
    w[j] = v;
  }
  return w;
}

}  // namespace

Streebog::Streebog(std::size_t digest_bytes) noexcept
    : digest_bytes_(digest_bytes == 32 ? 32 : 64) {
  reset();
}

Streebog::~Streebog() {
  secure_zero(h_.data(), sizeof h_);
  secure_zero(sigma_.data(), sizeof sigma_);
  secure_zero(buf_.data(), buf_.size());
}

void Streebog::reset() noexcept {
  h_.fill(digest_bytes_ == 32 ? 0x0101010101010101u : 0);  // the IVs of RFC 6986 §5
  n_.fill(0);
  sigma_.fill(0);
  secure_zero(buf_.data(), buf_.size());
  buf_len_ = 0;
}

void Streebog::compress(const U512& m) noexcept {
  g(h_, n_, m);
  add512(n_, U512{512, 0, 0, 0, 0, 0, 0, 0});
  add512(sigma_, m);
}

void Streebog::update(std::span<const std::byte> data) noexcept {
  while (!data.empty()) {
    if (buf_len_ == 0 && data.size() >= kBlockBytes) {
      U512 m = load(data.data());
      compress(m);
      secure_zero(m.data(), sizeof m);
      data = data.subspan(kBlockBytes);
      continue;
    }
    const std::size_t take = std::min(kBlockBytes - buf_len_, data.size());
    std::memcpy(buf_.data() + buf_len_, data.data(), take);
    buf_len_ += take;
    data = data.subspan(take);
    if (buf_len_ == kBlockBytes) {
      U512 m = load(buf_.data());
      compress(m);
      secure_zero(m.data(), sizeof m);
      buf_len_ = 0;
    }
  }
}

void Streebog::final(std::span<std::byte> out) noexcept {
  // RFC 6986 §8.3: pad with 0x01 then zeros, process, then fold in N and Sigma with N = 0.
  std::memset(buf_.data() + buf_len_, 0, kBlockBytes - buf_len_);
  buf_[buf_len_] = std::byte{1};
  U512 m = load(buf_.data());
  g(h_, n_, m);
  add512(n_, U512{8 * static_cast<std::uint64_t>(buf_len_), 0, 0, 0, 0, 0, 0, 0});
  add512(sigma_, m);
  const U512 zero{};
  g(h_, zero, n_);
  g(h_, zero, sigma_);
  std::array<std::byte, 64> digest;
  for (std::size_t j = 0; j < 8; ++j)
    for (std::size_t k = 0; k < 8; ++k)
      digest[8 * j + k] = static_cast<std::byte>((h_[j] >> (8 * k)) & 0xff);
  const std::size_t from = 64 - digest_bytes_;  // Streebog-256: the upper half
  std::memcpy(out.data(), digest.data() + from, std::min(out.size(), digest_bytes_));
  secure_zero(digest.data(), digest.size());
  secure_zero(m.data(), sizeof m);
  reset();
}

}  // namespace cryptmap::crypto::internal

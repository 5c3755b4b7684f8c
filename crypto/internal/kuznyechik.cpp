#include "crypto/internal/kuznyechik.h"

#include <array>
#include <cstdint>
#include <cstring>

#include "base/secret.h"
#include "crypto/internal/gost_pi.h"

namespace cryptmap::crypto::internal {
namespace {

using Block = std::array<std::uint8_t, 16>;

// RFC 7801 §4.2: the coefficients of l, for block bytes 0..15 (a15..a0).
constexpr Block kL{148, 32, 133, 16, 194, 192, 1, 251, 1, 192, 194, 16, 133, 32, 148, 1};

// Multiplication in GF(2^8) modulo x^8 + x^7 + x^6 + x + 1.
constexpr std::uint8_t gf_mul(std::uint8_t a, std::uint8_t b) {
  std::uint8_t r = 0;
  while (b != 0) {
    if ((b & 1) != 0) r ^= a;
    a = static_cast<std::uint8_t>((a << 1) ^ ((a & 0x80) != 0 ? 0xC3 : 0));
    b >>= 1;
  }
  return r;
}

// R: the linear combination becomes byte 0, the others move one place up (towards byte 15).
void r_step(Block& a) {
  std::uint8_t x = 0;
  for (int i = 0; i < 16; ++i) x ^= gf_mul(a[i], kL[i]);
  for (int i = 15; i > 0; --i) a[i] = a[i - 1];
  a[0] = x;
}
// R^-1: bytes move one place down; byte 15 is the one l makes from them and the old byte 0.
void r_inv_step(Block& a) {
  const std::uint8_t first = a[0];
  for (int i = 0; i < 15; ++i) a[i] = a[i + 1];
  std::uint8_t x = gf_mul(first, kL[15]);
  for (int i = 0; i < 15; ++i) x ^= gf_mul(a[i], kL[i]);
  a[15] = x;
}

struct Tables {
  std::array<std::uint8_t, 256> pi_inv{};
  // lin[i][v] = L(block with only byte i = v); L is linear, so L(a) = XOR over i of lin[i][a[i]].
  std::array<std::array<Block, 256>, 16> lin{};
  std::array<std::array<Block, 256>, 16> lin_inv{};
  Tables() {
    for (int v = 0; v < 256; ++v) pi_inv[kPi[v]] = static_cast<std::uint8_t>(v);
    for (int i = 0; i < 16; ++i)
      for (int v = 0; v < 256; ++v) {
        Block b{}, c{};
        b[i] = c[i] = static_cast<std::uint8_t>(v);
        for (int k = 0; k < 16; ++k) {
          r_step(b);
          r_inv_step(c);
        }
        lin[i][v] = b;
        lin_inv[i][v] = c;
      }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

Block linear(const std::array<std::array<Block, 256>, 16>& t, const Block& a) {
  Block out{};
  for (int i = 0; i < 16; ++i) {
    const Block& row = t[i][a[i]];
    for (int k = 0; k < 16; ++k) out[k] ^= row[k];
  }
  return out;
}

class Kuznyechik final : public BlockCipher {
 public:
  explicit Kuznyechik(SecretBytes round_keys) : keys_(std::move(round_keys)) {}

  std::size_t block_size() const noexcept override { return 16; }

  void encrypt(const std::byte* in, const std::byte* xor_out, std::byte* out,
               std::size_t len) override {
    const Tables& t = tables();
    for (std::size_t off = 0; off < len; off += 16) {
      Block a;
      std::memcpy(a.data(), in + off, 16);
      for (int r = 0; r < 9; ++r) {
        xor_key(a, r);
        for (auto& b : a) b = kPi[b];
        a = linear(t.lin, a);
      }
      xor_key(a, 9);
      finish(a, xor_out, out, off);
    }
  }

  void decrypt(const std::byte* in, const std::byte* xor_out, std::byte* out,
               std::size_t len) override {
    const Tables& t = tables();
    for (std::size_t off = 0; off < len; off += 16) {
      Block a;
      std::memcpy(a.data(), in + off, 16);
      xor_key(a, 9);
      for (int r = 8; r >= 0; --r) {
        a = linear(t.lin_inv, a);
        for (auto& b : a) b = t.pi_inv[b];
        xor_key(a, r);
      }
      finish(a, xor_out, out, off);
    }
  }

 private:
  void xor_key(Block& a, int r) const {
    const auto* k = reinterpret_cast<const std::uint8_t*>(keys_.data()) + 16 * r;
    for (int i = 0; i < 16; ++i) a[i] ^= k[i];
  }
  static void finish(Block& a, const std::byte* xor_out, std::byte* out, std::size_t off) {
    if (xor_out != nullptr)
      for (int i = 0; i < 16; ++i) a[i] ^= static_cast<std::uint8_t>(xor_out[off + i]);
    std::memcpy(out + off, a.data(), 16);
    secure_zero(a.data(), a.size());
  }
  SecretBytes keys_;  // K1..K10, 16 bytes each
};

}  // namespace

Result<std::unique_ptr<BlockCipher>> make_kuznyechik(std::span<const std::byte> key) {
  if (key.size() != 32)
    return make_error(Errc::kInvalid, "kuznyechik: key must be 32 bytes", key.size());
  const Tables& t = tables();
  CRYPTMAP_TRY(keys, SecretBytes::allocate(160));
  CRYPTMAP_TRY(work, SecretBytes::allocate(32));  // the Feistel pair (a1, a0)
  auto* k = reinterpret_cast<std::uint8_t*>(keys.data());
  std::memcpy(k, key.data(), 32);
  auto* a1 = reinterpret_cast<std::uint8_t*>(work.data());
  auto* a0 = a1 + 16;
  std::memcpy(a1, k, 16);
  std::memcpy(a0, k + 16, 16);
  for (int i = 1; i <= 32; ++i) {
    // C_i = L(Vec128(i)): i in the last (least significant) byte.
    Block c{};
    c[15] = static_cast<std::uint8_t>(i);
    c = linear(t.lin, c);
    // F[C](a1, a0) = (LSX[C](a1) xor a0, a1).
    Block x;
    for (int j = 0; j < 16; ++j) x[j] = kPi[a1[j] ^ c[j]];
    x = linear(t.lin, x);
    for (int j = 0; j < 16; ++j) {
      const std::uint8_t next = x[j] ^ a0[j];
      a0[j] = a1[j];
      a1[j] = next;
    }
    secure_zero(x.data(), x.size());
    if (i % 8 == 0) {
      std::memcpy(k + 32 * (i / 8), a1, 16);
      std::memcpy(k + 32 * (i / 8) + 16, a0, 16);
    }
  }
  return std::unique_ptr<BlockCipher>(new Kuznyechik(std::move(keys)));
}

}  // namespace cryptmap::crypto::internal

#include "crypto/hash.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <span>
#include <string>
#include <vector>

#include "crypto/internal/hash_backend.h"
#include "tests/support/data.h"

namespace cryptmap::crypto {
namespace {

using test::bytes_of;
using test::hex;
using test::hex_of;

std::string digest_hex(std::string_view hash, std::string_view msg) {
  auto size = hash_digest_size(hash);
  EXPECT_TRUE(size) << hash;
  if (!size) return {};
  std::vector<std::byte> out(*size);
  auto m = bytes_of(msg);
  EXPECT_TRUE(hash_digest(hash, {m}, out)) << hash;
  return hex_of(out);
}

TEST(Hash, KnownAnswersForAbc) {
  EXPECT_EQ(digest_hex("sha1", "abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(digest_hex("sha224", "abc"),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7");
  EXPECT_EQ(digest_hex("sha256", "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest_hex("sha384", "abc"),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358b"
            "aeca134c825a7");
  EXPECT_EQ(digest_hex("sha512", "abc"),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836b"
            "a3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(digest_hex("ripemd160", "abc"), "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc");
  EXPECT_EQ(digest_hex("whirlpool", "abc"),
            "4e2448a4c6f486bb16b6562c73b4020bf3043e3a731bce721ae1b303d97e6d4c7181eebdb6c57e277d0"
            "e34957114cbd6c797fc9d95d8b582d225292076d4eef5");
}

// GOST R 34.11-2012 (RFC 6986 §10): M1 (63 bytes) and M2 (72 bytes of CP1251 text), 512- and
// 256-bit digests as byte strings (the RFC prints them as numbers, i.e. reversed).
TEST(Hash, StreebogRfc6986) {
  const std::string m1 = "012345678901234567890123456789012345678901234567890123456789012";
  EXPECT_EQ(digest_hex("stribog512", m1),
            "1b54d01a4af5b9d5cc3d86d68d285462b19abc2475222f35c085122be4ba1ffa00ad30f8767b3a82384"
            "c6574f024c311e2a481332b08ef7f41797891c1646f48");
  EXPECT_EQ(digest_hex("stribog256", m1),
            "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500");
  const auto m2 = hex(
      "d1e520e2e5f2f0e82c20d1f2f0e8e1eee6e820e2edf3f6e82c20e2e5fef2fa20f120eceef0ff20f1f2f0e5ebe0"
      "ece820ede020f5f0e0e1f0fbff20efebfaeafb20c8e3eef0e5e2fb");
  const std::string m2s(reinterpret_cast<const char*>(m2.data()), m2.size());
  EXPECT_EQ(digest_hex("stribog512", m2s),
            "1e88e62226bfca6f9994f1f2d51569e0daf8475a3b0fe61a5300eee46d961376035fe83549ada2b8620"
            "fcd7c496ce5b33f0cb9dddc2b6460143b03dabac9fb28");
  EXPECT_EQ(digest_hex("stribog256", m2s),
            "9dd2fe4e90409e5da87f53976d7405b0c0cac628fc669a741d50063c557e8f50");
}

// The block boundary cases (empty, 63/64/65 bytes, many blocks) hashed in one piece and fed in
// pieces of every size agree; the sizes near 64 exercise the final padding and the N counter.
TEST(Hash, StreebogPiecesAgreeWithOneShot) {
  for (std::size_t len : {0u, 1u, 63u, 64u, 65u, 127u, 128u, 1000u}) {
    std::string msg(len, '\0');
    for (std::size_t i = 0; i < len; ++i) msg[i] = static_cast<char>((i * 131 + 7) & 0xff);
    const std::string whole = digest_hex("stribog512", msg);
    for (std::size_t piece : {1u, 7u, 64u, 100u}) {
      auto h = internal::Hasher::create("stribog512");
      ASSERT_TRUE(h);
      std::vector<std::byte> out(64);
      // Hasher takes a list of parts: split the message into `piece`-sized parts (up to 3 here,
      // the rest in the last part) to run Streebog::update across buffer boundaries.
      const auto b = bytes_of(msg);
      const std::span<const std::byte> all(b);
      const std::size_t a1 = std::min(piece, len);
      const std::size_t a2 = std::min(piece, len - a1);
      ASSERT_TRUE(h->digest({all.first(a1), all.subspan(a1, a2), all.subspan(a1 + a2)}, out));
      EXPECT_EQ(hex_of(out), whole) << "len " << len << " piece " << piece;
    }
  }
}

TEST(Hash, ConcatenatesParts) {
  auto a = bytes_of("ab");
  auto c = bytes_of("c");
  std::vector<std::byte> out(32);
  ASSERT_TRUE(hash_digest("sha256", {a, c}, out));
  EXPECT_EQ(hex_of(out), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

// docs/formats.md §7.3: ESSIV salt = sha256(key 00..1f).
TEST(Hash, EssivSaltKat) {
  auto key = test::iota_bytes(32);
  std::vector<std::byte> out(32);
  ASSERT_TRUE(hash_digest("sha256", {key}, out));
  EXPECT_EQ(hex_of(out), "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd");
}

// docs/formats.md §3.7: cryptsetup plain mode key = H(p) || H("A"||p) || ... truncated.
std::string plain_key(std::string_view hash, std::string_view pass, std::size_t len) {
  std::vector<std::byte> key;
  std::string prefix;
  auto p = bytes_of(pass);
  while (key.size() < len) {
    auto ds = hash_digest_size(hash);
    EXPECT_TRUE(ds);
    std::vector<std::byte> d(*ds);
    auto pre = bytes_of(prefix);
    EXPECT_TRUE(hash_digest(hash, {pre, p}, d));
    key.insert(key.end(), d.begin(), d.end());
    prefix += 'A';
  }
  key.resize(len);
  return hex_of(key);
}

TEST(Hash, PlainModeKats) {
  EXPECT_EQ(plain_key("sha256", "testpass", 32),
            "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c");
  EXPECT_EQ(plain_key("sha256", "testpass", 64),
            "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c"
            "6fd5631b16982796af4190cbdfc8635932c0208a239f303da4e273fbf0a91b2b");
  EXPECT_EQ(plain_key("ripemd160", "testpass", 32),
            "4cde7e0e408e4395607ae7bb74b9f4b6f92af5487fd9828f1955a92d5d6302a6");
}

TEST(Hash, UnknownHashIsNamed) {
  auto r = hash_digest_size("md4x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
  EXPECT_NE(r.error().message().find("md4x"), std::string::npos) << r.error().message();
}

TEST(Hash, WrongOutputSizeIsRejected) {
  std::vector<std::byte> out(31);
  auto m = bytes_of("abc");
  auto r = hash_digest("sha256", {m}, out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalid);
}

TEST(Hash, HasherTruncatesAndReuses) {
  auto h = internal::Hasher::create("sha512");
  ASSERT_TRUE(h);
  auto m = bytes_of("abc");
  std::vector<std::byte> a(10), b(10);
  ASSERT_TRUE(h->digest({m}, a));
  ASSERT_TRUE(h->digest({m}, b));  // the context resets between digests
  EXPECT_EQ(hex_of(a), "ddaf35a193617abacc41");
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace cryptmap::crypto

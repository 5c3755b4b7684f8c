#include "crypto/hash.h"

#include <gtest/gtest.h>

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

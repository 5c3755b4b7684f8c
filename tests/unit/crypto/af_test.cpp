#include "crypto/af.h"

#include <gtest/gtest.h>

#include <vector>

#include "crypto/hash.h"
#include "tests/support/data.h"

namespace cryptmap::crypto {
namespace {

using test::hex_of;

// docs/formats.md §7.3: diffuse(00..27) with sha256. With 2 stripes, a zero key and the "random"
// stripe S0 = 00..27, the last stripe is diffuse(S0) XOR 0 = diffuse(S0).
TEST(Af, DiffuseKat) {
  std::vector<std::byte> key(40);
  auto s0 = test::iota_bytes(40);
  std::vector<std::byte> material(80);
  ASSERT_TRUE(af_split_with(key, 2, "sha256", s0, material));
  EXPECT_EQ(hex_of(std::span(material).subspan(40)),
            "bff51a6d513395979e3a870c8483769a5a70002e6e32c146c53e1d2edc4670029168dfa0b824fbae");
}

// docs/formats.md §7.3: key 00..1f, 4000 stripes, sha256, all random stripes zero.
TEST(Af, SplitKat) {
  auto key = test::iota_bytes(32);
  std::vector<std::byte> zeros(32 * 3999);
  std::vector<std::byte> material(af_material_bytes(32, 4000));
  ASSERT_TRUE(af_split_with(key, 4000, "sha256", zeros, material));
  std::vector<std::byte> digest(32);
  ASSERT_TRUE(hash_digest("sha256", {material}, digest));
  EXPECT_EQ(hex_of(digest), "8350c413f76370ccd58ef587cf6571633581fc89354be25e42f0de9b02482b04");
  std::vector<std::byte> back(32);
  ASSERT_TRUE(af_merge(material, 4000, "sha256", back));
  EXPECT_EQ(back, key);
}

TEST(Af, RandomSplitMergesBackForEveryHash) {
  for (const char* h : {"sha1", "sha256", "sha512", "ripemd160", "whirlpool"}) {
    for (std::size_t n : {16u, 32u, 64u, 65u}) {
      auto key = test::deterministic_bytes(n, n);
      std::vector<std::byte> material(af_material_bytes(n, 4000));
      ASSERT_TRUE(af_split(key, 4000, h, material)) << h;
      std::vector<std::byte> back(n);
      ASSERT_TRUE(af_merge(material, 4000, h, back)) << h;
      EXPECT_EQ(back, key) << h << " " << n;
      // One flipped bit anywhere destroys the key (anti-forensic property).
      material[n * 17 + 3] ^= std::byte{1};
      ASSERT_TRUE(af_merge(material, 4000, h, back));
      EXPECT_NE(back, key) << h;
    }
  }
}

TEST(Af, SplitIsRandomized) {
  auto key = test::iota_bytes(32);
  std::vector<std::byte> a(af_material_bytes(32, 10)), b(a.size());
  ASSERT_TRUE(af_split(key, 10, "sha256", a));
  ASSERT_TRUE(af_split(key, 10, "sha256", b));
  EXPECT_NE(a, b);
}

TEST(Af, RejectsBadArguments) {
  auto key = test::iota_bytes(32);
  std::vector<std::byte> small(32 * 10 - 1);
  auto r = af_split(key, 10, "sha256", small);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalid);
  std::vector<std::byte> material(32 * 10);
  EXPECT_FALSE(af_split(key, 0, "sha256", material));
  auto u = af_split(key, 10, "nohash", material);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kUnsupported);
  std::vector<std::byte> out(32);
  EXPECT_FALSE(af_merge(small, 10, "sha256", out));
  std::vector<std::byte> few(32);
  EXPECT_FALSE(af_split_with(key, 10, "sha256", few, material));
}

}  // namespace
}  // namespace cryptmap::crypto

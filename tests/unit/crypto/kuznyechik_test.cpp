// Kuznyechik (GOST R 34.12-2015) against RFC 7801's published example (§5.4-5.6: key, the
// round keys derived from it, one block encrypted), and XTS over it round-tripping.
#include "crypto/internal/kuznyechik.h"

#include <gtest/gtest.h>

#include <vector>

#include "crypto/sector_cipher.h"
#include "tests/support/data.h"

namespace cryptmap::crypto {
namespace {

using test::hex;
using test::hex_of;

const std::vector<std::byte> kKey =
    hex("8899aabbccddeeff0011223344556677fedcba98765432100123456789abcdef");

TEST(Kuznyechik, EncryptsAndDecryptsRfc7801sExample) {
  auto c = internal::make_kuznyechik(kKey);
  ASSERT_TRUE(c) << c.error().message();
  const auto pt = hex("1122334455667700ffeeddccbbaa9988");
  std::vector<std::byte> ct(16), back(16);
  (*c)->encrypt(pt.data(), nullptr, ct.data(), 16);
  EXPECT_EQ(hex_of(ct), "7f679d90bebc24305a468d42b9d4edcd");
  (*c)->decrypt(ct.data(), nullptr, back.data(), 16);
  EXPECT_EQ(back, pt);
  // xor_out is applied after the block operation, and in == out works.
  std::vector<std::byte> inplace = pt;
  const auto mask = hex("ffffffffffffffffffffffffffffffff");
  (*c)->encrypt(inplace.data(), mask.data(), inplace.data(), 16);
  EXPECT_EQ(hex_of(inplace), "8098626f4143dbcfa5b972bd462b1232");
}

TEST(Kuznyechik, RefusesKeysThatAreNot256Bits) {
  EXPECT_EQ(internal::make_kuznyechik(std::span(kKey).first(16)).error().code, Errc::kInvalid);
}

TEST(Kuznyechik, XtsSectorsRoundTripAndDependOnTheSector) {
  SectorCipherConfig cfg;
  cfg.spec.cipher = "kuznyechik";
  cfg.spec.chain_mode = "xts";
  cfg.spec.iv_mode = "plain64";
  auto c = make_sector_cipher(cfg, test::deterministic_bytes(64, 9));
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_STREQ((*c)->engine_name(), "generic+cryptmap");
  const auto plain = test::deterministic_bytes(1024, 10);
  auto a = plain, b = plain;
  ASSERT_TRUE((*c)->encrypt({a, {}, SectorIndex{5}}));
  ASSERT_TRUE((*c)->encrypt({b, {}, SectorIndex{6}}));
  EXPECT_NE(std::vector(a.begin(), a.begin() + 512), std::vector(b.begin(), b.begin() + 512));
  ASSERT_TRUE((*c)->decrypt({a, {}, SectorIndex{5}}));
  EXPECT_EQ(a, plain);
}

}  // namespace
}  // namespace cryptmap::crypto

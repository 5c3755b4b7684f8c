// make_cascade_cipher: several sector ciphers applied in key order (TCRYPT cascades).
#include <gtest/gtest.h>

#include <vector>

#include "crypto/sector_cipher.h"
#include "tests/support/data.h"

namespace cryptmap::crypto {
namespace {

SectorCipherConfig xts(const char* cipher, std::uint64_t iv_offset) {
  SectorCipherConfig c;
  c.spec.cipher = cipher;
  c.spec.chain_mode = "xts";
  c.spec.iv_mode = "plain64";
  c.iv_offset = iv_offset;
  return c;
}

TEST(CascadeCipher, EncryptsWithTheFirstCipherFirstAndDecryptsInReverse) {
  const auto key = test::deterministic_bytes(192, 1);
  const std::vector<SectorCipherConfig> chain{xts("serpent", 256), xts("twofish", 256),
                                              xts("aes", 256)};
  auto cascade = make_cascade_cipher(chain, key);
  ASSERT_TRUE(cascade) << cascade.error().message();
  EXPECT_STREQ((*cascade)->engine_name(), "cascade");
  const auto plain = test::deterministic_bytes(4 * 512, 2);
  auto data = plain;
  ASSERT_TRUE((*cascade)->encrypt({data, {}, SectorIndex{7}}));
  // The same by hand, stage by stage with each cipher's 64-byte share of the key.
  auto manual = plain;
  for (std::size_t i = 0; i < chain.size(); ++i) {
    auto one = make_sector_cipher(chain[i], std::span(key).subspan(64 * i, 64));
    ASSERT_TRUE(one);
    ASSERT_TRUE((*one)->encrypt({manual, {}, SectorIndex{7}}));
  }
  EXPECT_EQ(data, manual);
  EXPECT_NE(data, plain);
  ASSERT_TRUE((*cascade)->decrypt({data, {}, SectorIndex{7}}));
  EXPECT_EQ(data, plain);
}

TEST(CascadeCipher, OneCipherIsThatCipherAndBadShapesAreRefused) {
  const auto key = test::deterministic_bytes(64, 3);
  const std::vector<SectorCipherConfig> one{xts("aes", 0)};
  auto c = make_cascade_cipher(one, key);
  ASSERT_TRUE(c);
  EXPECT_STRNE((*c)->engine_name(), "cascade");
  EXPECT_EQ(make_cascade_cipher({}, key).error().code, Errc::kInvalid);
  const std::vector<SectorCipherConfig> three{xts("aes", 0), xts("aes", 0), xts("aes", 0)};
  EXPECT_EQ(make_cascade_cipher(three, key).error().code, Errc::kInvalid);  // 64 % 3 != 0
  std::vector<SectorCipherConfig> mixed{xts("aes", 0), xts("serpent", 0)};
  mixed[1].sector_size = 4096;
  EXPECT_EQ(make_cascade_cipher(mixed, test::deterministic_bytes(128, 4)).error().code,
            Errc::kInvalid);
  const std::vector<SectorCipherConfig> unknown{xts("aes", 0), xts("nosuchcipher", 0)};
  EXPECT_FALSE(make_cascade_cipher(unknown, test::deterministic_bytes(128, 4)));
}

}  // namespace
}  // namespace cryptmap::crypto

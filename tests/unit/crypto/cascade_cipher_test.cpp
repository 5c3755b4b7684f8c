// make_cascade_cipher: several sector ciphers applied in key order (TCRYPT cascades).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "crypto/sector_cipher.h"
#include "crypto/tcrypt_cbc.h"
#include "tests/support/data.h"
#include "tests/unit/crypto/reference_cipher.h"

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

SectorCipherConfig tcw(const std::string& cipher, std::uint64_t iv_offset) {
  SectorCipherConfig c;
  c.spec.cipher = cipher;
  c.spec.chain_mode = "cbc";
  c.spec.iv_mode = "tcw";
  c.iv_offset = iv_offset;
  return c;
}

// TrueCrypt 1.x-4.x CBC cascades (docs/tcrypt.md §5), every chain cryptsetup lists: outer CBC
// (one block size) and inner CBC (blowfish_le with AES), against reference_cipher.py, which
// builds the modes by hand from ECB of python3-cryptography and libgcrypt.
TEST(TcryptCbcCascade, MatchesTheIndependentReferenceForOuterAndInnerCbc) {
  const std::vector<std::vector<std::string>> chains{{"twofish", "aes"},
                                                     {"serpent", "twofish", "aes"},
                                                     {"aes", "serpent"},
                                                     {"aes", "twofish", "serpent"},
                                                     {"serpent", "twofish"},
                                                     {"blowfish_le", "aes"},
                                                     {"serpent", "blowfish_le", "aes"}};
  std::vector<test::ReferenceJob> jobs;
  std::vector<std::vector<std::byte>> ours;
  std::uint64_t seed = 10;
  for (const auto& names : chains) {
    std::size_t key_bytes = 32;  // IV region: 16-byte seed + whitening key (AES in every chain)
    for (const auto& n : names) key_bytes += tcrypt_cbc_key_bytes(n);
    std::vector<SectorCipherConfig> configs;
    for (const auto& n : names) configs.push_back(tcw(n, 40));
    const auto key = test::deterministic_bytes(key_bytes, ++seed);
    auto c = make_cascade_cipher(configs, key);
    ASSERT_TRUE(c) << names.front() << ": " << c.error().message();
    EXPECT_STREQ((*c)->engine_name(), "tcrypt-cbc");
    const auto plain = test::deterministic_bytes(3 * 512, ++seed);
    auto data = plain;
    ASSERT_TRUE((*c)->encrypt({data, {}, SectorIndex{5}}));
    EXPECT_NE(data, plain);
    ours.push_back(data);
    ASSERT_TRUE((*c)->decrypt({data, {}, SectorIndex{5}}));
    EXPECT_EQ(data, plain);
    test::ReferenceJob j;
    j.config = configs.front();
    j.config.spec.cipher.clear();
    for (const auto& n : names)
      j.config.spec.cipher += (j.config.spec.cipher.empty() ? "" : "+") + n;
    j.key = key;
    j.first = 5;
    j.input = plain;
    jobs.push_back(j);
    j.encrypt = false;
    j.input = ours.back();
    jobs.push_back(std::move(j));
  }
  test::reference_batch(jobs);
  for (std::size_t i = 0; i < ours.size(); ++i) {
    EXPECT_TRUE(jobs[2 * i].output == ours[i]) << jobs[2 * i].config.spec.cipher << " encrypt";
    EXPECT_TRUE(jobs[2 * i + 1].output == jobs[2 * i].input)
        << jobs[2 * i].config.spec.cipher << " reference decrypt";
  }
}

TEST(TcryptCbcCascade, RefusesWrongKeysCiphersAndMixedModes) {
  const std::vector<SectorCipherConfig> two{tcw("twofish", 0), tcw("aes", 0)};
  auto ok = make_cascade_cipher(two, test::deterministic_bytes(96, 1));
  EXPECT_TRUE(ok);
  auto short_key = make_cascade_cipher(two, test::deterministic_bytes(95, 1));
  ASSERT_FALSE(short_key);
  EXPECT_EQ(short_key.error().code, Errc::kInvalid);
  const std::vector<SectorCipherConfig> camellia{tcw("camellia", 0), tcw("aes", 0)};
  EXPECT_EQ(make_cascade_cipher(camellia, test::deterministic_bytes(96, 1)).error().code,
            Errc::kUnsupported);
  const std::vector<SectorCipherConfig> mixed{tcw("twofish", 0), xts("aes", 0)};
  EXPECT_EQ(make_cascade_cipher(mixed, test::deterministic_bytes(96, 1)).error().code,
            Errc::kInvalid);
  EXPECT_EQ(tcrypt_cbc_key_bytes("blowfish_le"), 56u);
  EXPECT_EQ(tcrypt_cbc_key_bytes("des3_ede"), 24u);
  EXPECT_EQ(tcrypt_cbc_key_bytes("camellia"), 0u);
}

}  // namespace
}  // namespace cryptmap::crypto

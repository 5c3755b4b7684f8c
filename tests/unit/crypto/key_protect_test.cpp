// Known-answer tests for crypto/key_protect.h (AES-CCM, RFC 3394 key wrap, the BitLocker KDF,
// CRC-32/CRC-32C) and the Elephant diffuser IV mode (BitLocker CBC + Elephant).
#include "crypto/key_protect.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/bytes.h"
#include "crypto/cipher_spec.h"
#include "crypto/hash.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto {
namespace {

std::vector<std::byte> unhex(const std::string& h) {
  std::vector<std::byte> out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<std::byte>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}
std::vector<std::byte> iota(std::size_t n) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(i);
  return v;
}

// Expected value from python3-cryptography: AESCCM(key=0..31, tag_length=16)
// .encrypt(nonce=0..11, data=0..43, None) = ciphertext || tag.
const char* kCcmOut =
    "8ad4ba153a2acf90a4c0bb28013d524b2d6504662d604eae7dbc994e89053c6ce5ede85796fde7a3cba9213d"
    "f263234c194809f3eb97f4310115895f";

TEST(AesCcm, MatchesIndependentImplementationBothWays) {
  const auto key = iota(32), nonce = iota(12), plain = iota(44), want = unhex(kCcmOut);
  std::vector<std::byte> ct(44), tag(16), back(44);
  ASSERT_TRUE(aes_ccm_encrypt(key, nonce, plain, ct, tag));
  EXPECT_EQ(to_hex(ct) + to_hex(tag), kCcmOut);
  ASSERT_TRUE(
      aes_ccm_decrypt(key, nonce, std::span(want).first(44), std::span(want).subspan(44), back));
  EXPECT_EQ(back, plain);
}

TEST(AesCcm, WrongKeyOrTamperedDataIsBadKeyAndZeroesOutput) {
  auto key = iota(32);
  const auto nonce = iota(12);
  auto data = unhex(kCcmOut);
  std::vector<std::byte> out(44, std::byte{0x55});
  key[0] ^= std::byte{1};
  auto r = aes_ccm_decrypt(key, nonce, std::span(data).first(44), std::span(data).subspan(44), out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBadKey);
  EXPECT_EQ(out, std::vector<std::byte>(44));
  key[0] ^= std::byte{1};
  data[3] ^= std::byte{0x80};
  r = aes_ccm_decrypt(key, nonce, std::span(data).first(44), std::span(data).subspan(44), out);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBadKey);
}

TEST(AesCcm, BadSizesAreInvalid) {
  std::vector<std::byte> k(20), n(12), d(16), t(16), o(16);
  EXPECT_EQ(aes_ccm_decrypt(k, n, d, t, o).error().code, Errc::kInvalid);
  k.resize(32);
  EXPECT_EQ(aes_ccm_decrypt(k, n, d, std::span(t).first(8), o).error().code, Errc::kInvalid);
  EXPECT_EQ(aes_ccm_decrypt(k, std::span(n).first(4), d, t, o).error().code, Errc::kInvalid);
}

// RFC 3394 §4.1 and §4.6.
TEST(AesKeyWrap, Rfc3394Vectors) {
  const auto kek128 = unhex("000102030405060708090A0B0C0D0E0F");
  const auto key128 = unhex("00112233445566778899AABBCCDDEEFF");
  std::vector<std::byte> w(24), back(16);
  ASSERT_TRUE(aes_key_wrap(kek128, key128, w));
  EXPECT_EQ(to_hex(w), "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5");
  ASSERT_TRUE(aes_key_unwrap(kek128, w, back));
  EXPECT_EQ(back, key128);
  const auto kek256 = unhex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
  const auto key256 = unhex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
  std::vector<std::byte> w2(40), back2(32);
  ASSERT_TRUE(aes_key_wrap(kek256, key256, w2));
  EXPECT_EQ(to_hex(w2),
            "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21");
  ASSERT_TRUE(aes_key_unwrap(kek256, w2, back2));
  EXPECT_EQ(back2, key256);
  w2[5] ^= std::byte{1};
  auto r = aes_key_unwrap(kek256, w2, back2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBadKey);
  EXPECT_EQ(back2, std::vector<std::byte>(32));
  EXPECT_EQ(aes_key_unwrap(kek256, std::span(w2).first(12), std::span(back2).first(4)).error().code,
            Errc::kInvalid);
}

// The KDF restated by hand: two iterations of SHA-256 over the 88-byte state.
TEST(BitlkStretch, IsSha256ChainOverTheState) {
  const auto initial = iota(32), salt = unhex("8d7637cc5d885d5ff4f748dbc8440d2e");
  std::vector<std::byte> state(88), got(32);
  std::copy(initial.begin(), initial.end(), state.begin() + 32);
  std::copy(salt.begin(), salt.end(), state.begin() + 64);
  for (std::uint64_t i = 0; i < 2; ++i) {
    store_le64(state.data() + 80, i);
    ASSERT_TRUE(hash_digest("sha256", {state}, std::span(state).first(32)));
  }
  ASSERT_TRUE(bitlk_stretch(initial, salt, 2, got));
  EXPECT_EQ(got, std::vector<std::byte>(state.begin(), state.begin() + 32));
  EXPECT_EQ(bitlk_stretch(std::span(initial).first(16), salt, 2, got).error().code, Errc::kInvalid);
}

// One XTS unit of 512 bytes is what aes-xts-plain64 does to sector `unit`.
TEST(AesXtsUnit, EqualsTheSectorCipherOnOneSector) {
  SectorCipherConfig cc;
  cc.spec = *CipherSpec::parse("aes-xts-plain64");
  const auto key = iota(32);
  auto c = make_sector_cipher(cc, key);
  ASSERT_TRUE(c);
  auto plain = iota(512), buf = plain;
  ASSERT_TRUE((*c)->encrypt({buf, {}, SectorIndex{5}}));
  ASSERT_TRUE(aes_xts_decrypt_unit(key, 5, buf));
  EXPECT_EQ(buf, plain);
  EXPECT_EQ(aes_xts_decrypt_unit(std::span(key).first(16), 5, buf).error().code, Errc::kInvalid);
}

TEST(Crc, KnownValues) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32_ieee(as_bytes(s)), 0xCBF43926u);
  EXPECT_EQ(~crc32c(0xFFFFFFFFu, as_bytes(s)), 0xE3069283u);
}

// Sector 86376 of cryptsetup's bitlk-aes-cbc-elephant-128 image (the relocated NTFS boot
// sector) and the volume key `cryptsetup bitlkDump --dump-volume-key` prints for it.
const char* kElephantKey = "9d2733e172dc85e13e3de5aaa0e0501bfd22a3f27966c51c94c8e3adce517b6e";
const char* kElephantSector =
    "2175c8446934efd6c9602aeb990295e92143dfe7918377df463951b7e0d32116a2999ee8962ce8e07006e94d"
    "6c68fd4ecb7276654ca2768f6126db515c4dd868d49c07174237b9ff703d97580467ec7624f75fa4be17838e"
    "8ab51aedc49c9a6a80b188cfd52aa1616b0c147cab782503d7f437e276827d385c948601f8045dc362be605e"
    "9e6b2e4657842f43e75d0ea3efbe4b1b43936cc8256d4d7da06bc628ef1055309ebe575345464120c0d93ca0"
    "c7c09f1dc839a54a92ae074be5688149fd4b77b622b7b2042d6f07dd4d7a88e939feac607d871063165ad8e1"
    "e592b26d21e819f758d5a7191676bbb4e34be7ae57d04ef5008bc102f62080caca7e33de485bf6c03a949758"
    "ae4d763bd228042b5ef2983d48ab57ab8108026385144d7905027460b38b4ffdc55657975fd4a9f72205952e"
    "3690a500a589feb7f5e97fb2760b6822842b77161f434700f2dbae29e45f873cfc7657495c0bbc84bb687fa2"
    "c2467f2df8da9b3eacff1afb4a4bc3bbe2bc7115bd10f9772825b6643f25d47a447391b3c43adeb868fca767"
    "0a9e59194b1ca8be45bee55c5cb7b6a4cb68fe02386795eb8623f9f9c78e6ee964ed2d7dc14c3be6cd3fe6d9"
    "2a5a26800751ac8c3019df834b5c2bcfd323b5149c8be75c01415482e84fd2216cd9781c18a1671fbbb1693b"
    "dca4391c58f8cdd67fe3e54cd414f7b67633cf927b31b4acb33dafbe";

TEST(Elephant, DecryptsARealBitLockerSectorToAnNtfsBootSector) {
  SectorCipherConfig cc;
  cc.spec = *CipherSpec::parse("aes-cbc-elephant");
  cc.iv_offset = 86376;
  const auto key = unhex(kElephantKey);
  auto c = make_sector_cipher(cc, key);
  ASSERT_TRUE(c) << c.error().message();
  const auto ct = unhex(kElephantSector);
  auto buf = ct;
  ASSERT_TRUE((*c)->decrypt({buf, {}, SectorIndex{0}}));
  EXPECT_EQ(to_hex(std::span(buf).first(11)), "eb52904e54465320202020");  // jmp, "NTFS    "
  EXPECT_EQ(to_hex(std::span(buf).subspan(510, 2)), "55aa");
  ASSERT_TRUE((*c)->encrypt({buf, {}, SectorIndex{0}}));
  EXPECT_EQ(buf, ct);
}

TEST(Elephant, RoundTripsEveryKeySizeAndSectorSize) {
  for (std::size_t key_bytes : {32u, 64u}) {
    for (std::uint32_t ss : {512u, 4096u}) {
      SectorCipherConfig cc;
      cc.spec = *CipherSpec::parse("aes-cbc-elephant");
      cc.sector_size = ss;
      cc.iv_large_sectors = ss != 512;
      auto c = make_sector_cipher(cc, iota(key_bytes));
      ASSERT_TRUE(c) << c.error().message();
      auto buf = iota(ss * 3);
      const auto plain = buf;
      ASSERT_TRUE((*c)->encrypt({buf, {}, SectorIndex{7}}));
      EXPECT_NE(buf, plain);
      ASSERT_TRUE((*c)->decrypt({buf, {}, SectorIndex{7}}));
      EXPECT_EQ(buf, plain) << key_bytes << " " << ss;
    }
  }
}

}  // namespace
}  // namespace cryptmap::crypto

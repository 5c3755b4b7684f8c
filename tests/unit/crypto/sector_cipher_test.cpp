#include "crypto/sector_cipher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/support/data.h"
#include "tests/unit/crypto/reference_cipher.h"

namespace cryptmap::crypto {
namespace {

using test::hex;
using test::hex_of;

SectorCipherConfig config(const char* spec, std::uint32_t sector_size = 512,
                          std::uint64_t iv_offset = 0, bool large = false) {
  SectorCipherConfig c;
  auto s = CipherSpec::parse(spec);
  EXPECT_TRUE(s) << spec;
  if (s) c.spec = *s;
  c.sector_size = sector_size;
  c.iv_offset = iv_offset;
  c.iv_large_sectors = large;
  return c;
}

std::unique_ptr<SectorCipher> make(const SectorCipherConfig& c, std::span<const std::byte> key) {
  auto r = make_sector_cipher(c, key);
  EXPECT_TRUE(r) << c.spec.to_string() << ": " << (r ? "" : r.error().message());
  return r ? std::move(*r) : nullptr;
}

std::vector<std::byte> encrypt_copy(const SectorCipher& c, std::vector<std::byte> data,
                                    std::uint64_t first) {
  auto r = c.encrypt(SectorRun{data, {}, SectorIndex{first}});
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return data;
}

std::string head_hex(const std::vector<std::byte>& v, std::size_t n) {
  return hex_of(std::span(v).first(n));
}

const std::vector<std::byte> kPt512 = [] {
  std::vector<std::byte> v(512);
  for (std::size_t i = 0; i < 512; ++i) v[i] = std::byte(static_cast<unsigned char>(i));
  return v;
}();

// IEEE 1619-2007 Vector 4: AES-128-XTS, data unit 0, 512 bytes.
TEST(XtsVectors, Ieee1619Vector4) {
  auto key = hex("2718281828459045235360287471352631415926535897932384626433832795");
  auto c = make(config("aes-xts-plain64"), key);
  ASSERT_TRUE(c);
  EXPECT_EQ(hex_of(encrypt_copy(*c, kPt512, 0)),
            "27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89cc78cf7f5e543445f8333d8"
            "fa7f56000005279fa5d8b5e4ad40e736ddb4d35412328063fd2aab53e5ea1e0a9f332500a5df9487d07a5c"
            "92cc512c8866c7e860ce93fdf166a24912b422976146ae20ce846bb7dc9ba94a767aaef20c0d61ad02655e"
            "a92dc4c4e41a8952c651d33174be51a10c421110e6d81588ede82103a252d8a750e8768defffed9122810a"
            "aeb99f9172af82b604dc4b8e51bcb08235a6f4341332e4ca60482a4ba1a03b3e65008fc5da76b70bf1690d"
            "b4eae29c5f1badd03c5ccf2a55d705ddcd86d449511ceb7ec30bf12b1fa35b913f9f747a8afd1b130e94bf"
            "f94effd01a91735ca1726acd0b197c4e5b03393697e126826fb6bbde8ecc1e08298516e2c9ed03ff3c1b78"
            "60f6de76d4cecd94c8119855ef5297ca67e9f3e7ff72b1e99785ca0a7e7720c5b36dc6d72cac9574c8cbbc"
            "2f801e23e56fd344b07f22154beba0f08ce8891e643ed995c94d9a69c9f1b5f499027a78572aeebd74d20c"
            "c39881c213ee770b1010e4bea718846977ae119f7a023ab58cca0ad752afe656bb3c17256a9f6e9bf19fdd"
            "5a38fc82bbe872c5539edb609ef4f79c203ebb140f2e583cb2ad15b4aa5b655016a8449277dbd477ef2c8d"
            "6c017db738b18deb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568");
}

// IEEE 1619-2007 Vector 10: AES-256-XTS, data unit 0xff, 512 bytes.
TEST(XtsVectors, Ieee1619Vector10) {
  auto key =
      hex("2718281828459045235360287471352662497757247093699959574966967627"
          "3141592653589793238462643383279502884197169399375105820974944592");
  auto c = make(config("aes-xts-plain64"), key);
  ASSERT_TRUE(c);
  auto ct = encrypt_copy(*c, kPt512, 0xff);
  EXPECT_EQ(hex_of(ct),
            "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b5d31e276f8fe4a8d66b317"
            "f9ac683f44680a86ac35adfc3345befecb4bb188fd5776926c49a3095eb108fd1098baec70aaa66999a72a"
            "82f27d848b21d4a741b0c5cd4d5fff9dac89aeba122961d03a757123e9870f8acf1000020887891429ca2a"
            "3e7a7d7df7b10355165c8b9a6d0a7de8b062c4500dc4cd120c0f7418dae3d0b5781c34803fa75421c790df"
            "e1de1834f280d7667b327f6c8cd7557e12ac3a0f93ec05c52e0493ef31a12d3d9260f79a289d6a379bc70c"
            "50841473d1a8cc81ec583e9645e07b8d9670655ba5bbcfecc6dc3966380ad8fecb17b6ba02469a020a84e1"
            "8e8f84252070c13e9f1f289be54fbc481457778f616015e1327a02b140f1505eb309326d68378f8374595c"
            "849d84f4c333ec4423885143cb47bd71c5edae9be69a2ffeceb1bec9de244fbe15992b11b77c040f12bd8f"
            "6a975a44a0f90c29a9abc3d4d893927284c58754cce294529f8614dcd2aba991925fedc4ae74ffac6e333b"
            "93eb4aff0479da9a410e4450e0dd7ae4c6e2910900575da401fc07059f645e8b7e9bfdef33943054ff8401"
            "1493c27b3429eaedb4ed5376441a77ed43851ad77f16f541dfd269d50d6a5f14fb0aab1cbb4c1550be97f7"
            "ab4066193c4caa773dad38014bd2092fa755c824bb5e54c4f36ffda9fcea70b9c6e693e148c151");
  ASSERT_TRUE(c->decrypt(SectorRun{ct, {}, SectorIndex{0xff}}));
  EXPECT_EQ(ct, kPt512);
  // Out of place (the engine the volume's driver uses on writes): the same known answer.
  std::vector<std::byte> from(512);
  ASSERT_TRUE(c->encrypt_from(kPt512, SectorRun{from, {}, SectorIndex{0xff}}));
  EXPECT_EQ(from, encrypt_copy(*c, kPt512, 0xff));
  EXPECT_EQ(hex_of(std::span(from).first(32)),
            "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b");
}

// IEEE 1619-2007 Vectors 2 and 3 (32-byte data units): XTS is per block, so the first 32 bytes
// of a 512-byte unit with the same tweak must match. Vector 3's tweak is above 2^32.
TEST(XtsVectors, Ieee1619Vectors2And3FirstBlocks) {
  std::vector<std::byte> pt(512, std::byte{0x44});
  auto c2 = make(config("aes-xts-plain64"),
                 hex("1111111111111111111111111111111122222222222222222222222222222222"));
  ASSERT_TRUE(c2);
  EXPECT_EQ(head_hex(encrypt_copy(*c2, pt, 0x3333333333), 32),
            "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0");
  auto c3 = make(config("aes-xts-plain64"),
                 hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0"));
  ASSERT_TRUE(c3);
  EXPECT_EQ(head_hex(encrypt_copy(*c3, pt, 0x123456789a), 32),
            "b01f86f8edc1863706fa8a4253e34f28af319de38334870f4dd1f94cbe9832f1");
}

// docs/formats.md §7.3 KATs: key 00..3f, zero units; IV sectors 0, 1, 8.
TEST(XtsVectors, FormatsKats) {
  auto key = test::iota_bytes(64);
  const char* k0 = "cd6b103236fbd87dba93e9001e29bc3d";
  const char* k1 = "0c22ed7e2168a8500b30154c2ec00d26";
  const char* k8 = "32557c9efcea00dfdf521bbc053d1a7b";
  {
    auto c = make(config("aes-xts-plain64"), key);
    ASSERT_TRUE(c);
    EXPECT_NE(std::string(c->engine_name()).find("xts"), std::string::npos);  // aesni/openssl
    EXPECT_EQ(c->sector_size(), 512u);
    auto ct = encrypt_copy(*c, std::vector<std::byte>(9 * 512), 0);
    EXPECT_EQ(hex_of(std::span(ct).subspan(0, 16)), k0);
    EXPECT_EQ(hex_of(std::span(ct).subspan(512, 16)), k1);
    EXPECT_EQ(hex_of(std::span(ct).subspan(8 * 512, 16)), k8);
  }
  {  // LUKS2 4096-byte sectors count IVs in 512-byte units: unit 1 uses IV 8.
    auto c = make(config("aes-xts-plain64", 4096), key);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->sector_size(), 4096u);
    auto ct = encrypt_copy(*c, std::vector<std::byte>(2 * 4096), 0);
    EXPECT_EQ(hex_of(std::span(ct).subspan(0, 16)), k0);
    EXPECT_EQ(hex_of(std::span(ct).subspan(4096, 16)), k8);
  }
  {  // iv_large_sectors: unit 1 uses IV 1.
    auto c = make(config("aes-xts-plain64", 4096, 0, true), key);
    ASSERT_TRUE(c);
    auto ct = encrypt_copy(*c, std::vector<std::byte>(2 * 4096), 0);
    EXPECT_EQ(hex_of(std::span(ct).subspan(4096, 16)), k1);
  }
  {  // iv_offset (LUKS2 iv_tweak / plain --skip) is added in 512-byte units.
    auto c = make(config("aes-xts-plain64", 512, 8), key);
    ASSERT_TRUE(c);
    EXPECT_EQ(head_hex(encrypt_copy(*c, std::vector<std::byte>(512), 0), 16), k8);
    auto c4 = make(config("aes-xts-plain64", 4096, 8), key);
    ASSERT_TRUE(c4);
    EXPECT_EQ(head_hex(encrypt_copy(*c4, std::vector<std::byte>(4096), 0), 16), k8);
  }
}

// plain vs plain64 above 2^32 (docs/formats.md §3.4): plain wraps, plain64 does not.
TEST(XtsVectors, PlainWrapsAt32Bits) {
  auto key = test::deterministic_bytes(64, 157);
  auto p64 = make(config("aes-xts-plain64"), key);
  auto p32 = make(config("aes-xts-plain"), key);
  ASSERT_TRUE(p64 && p32);
  std::vector<std::byte> zero(512);
  const std::uint64_t s = (1ULL << 32) + 5;
  EXPECT_EQ(encrypt_copy(*p32, zero, s), encrypt_copy(*p64, zero, 5));
  EXPECT_NE(encrypt_copy(*p64, zero, s), encrypt_copy(*p64, zero, 5));
}

struct CrossCase {
  std::uint32_t sector_size;
  std::uint64_t iv_offset;
  bool large;
  std::uint64_t first;
};

// Cross-check against python3-cryptography (an independent XTS) at many sector numbers,
// including above 2^32, for 512- and 4096-byte sectors and nonzero iv_offset.
void cross_check(const char* spec, std::size_t key_bytes) {
  const CrossCase cases[] = {
      {512, 0, false, 0},
      {512, 0, false, 0xFFFFFFFEULL},  // crosses 2^32 inside the run
      {512, 0, false, (1ULL << 33) + 3},
      {512, 1000, false, 77},
      {512, (1ULL << 35) + 1, false, 1ULL << 40},
      {4096, 0, false, 0},
      {4096, 0, false, (1ULL << 29) - 1},  // IV sector crosses 2^32
      {4096, 8, false, 5},
      {4096, (1ULL << 34), false, (1ULL << 33) + 1},
      {4096, 16, true, (1ULL << 32) + 7},  // iv_large_sectors
      {1024, 2, false, 123456789},
      {2048, 4, true, 99},
  };
  std::vector<test::ReferenceJob> jobs;
  std::vector<std::vector<std::byte>> ours;
  for (const auto& cc : cases) {
    test::ReferenceJob j;
    j.config = config(spec, cc.sector_size, cc.iv_offset, cc.large);
    j.key = test::deterministic_bytes(key_bytes, 2 * ours.size() + 1);
    j.input = test::deterministic_bytes(std::size_t{cc.sector_size} * 5, 2 * ours.size() + 2);
    j.first = cc.first;
    auto c = make(j.config, j.key);
    ASSERT_TRUE(c);
    ours.push_back(encrypt_copy(*c, j.input, cc.first));
    auto back = ours.back();
    ASSERT_TRUE(c->decrypt(SectorRun{back, {}, SectorIndex{cc.first}}));
    EXPECT_EQ(back, j.input);
    jobs.push_back(j);
    j.encrypt = false;  // and the reference decrypts our ciphertext
    j.input = ours.back();
    jobs.push_back(std::move(j));
  }
  test::reference_batch(jobs);
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const auto& cc = cases[i];
    EXPECT_EQ(hex_of(ours[i]), hex_of(jobs[2 * i].output))
        << spec << " ss=" << cc.sector_size << " off=" << cc.iv_offset << " large=" << cc.large
        << " first=" << cc.first;
    EXPECT_EQ(jobs[2 * i + 1].output, jobs[2 * i].input) << spec << " case " << i;
  }
}

TEST(XtsCrossCheck, Aes256XtsPlain64MatchesPython) { cross_check("aes-xts-plain64", 64); }
TEST(XtsCrossCheck, Aes128XtsPlain64MatchesPython) { cross_check("aes-xts-plain64", 32); }
TEST(XtsCrossCheck, AesXtsPlainMatchesPython) { cross_check("aes-xts-plain", 64); }
TEST(XtsCrossCheck, AesXtsPlain64beMatchesPython) { cross_check("aes-xts-plain64be", 64); }

TEST(SectorCipher, KeySizeChecks) {
  auto spec = *CipherSpec::parse("aes-xts-plain64");
  EXPECT_TRUE(check_key_size(spec, 32));
  EXPECT_TRUE(check_key_size(spec, 48));
  EXPECT_TRUE(check_key_size(spec, 64));
  for (std::size_t bad : {0u, 16u, 33u, 40u, 128u}) {
    auto r = check_key_size(spec, bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalid);
    EXPECT_NE(r.error().message().find("key"), std::string::npos);
  }
  auto cbc = *CipherSpec::parse("aes-cbc-essiv:sha256");
  EXPECT_TRUE(check_key_size(cbc, 32));
  EXPECT_FALSE(check_key_size(cbc, 64));
  auto r = make_sector_cipher(config("aes-xts-plain64"), test::iota_bytes(40));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalid);
}

TEST(SectorCipher, RejectsBadConfigAndRuns) {
  auto key = test::iota_bytes(64);
  for (std::uint32_t ss : {0u, 256u, 768u, 8192u}) {
    auto r = make_sector_cipher(config("aes-xts-plain64", ss), key);
    ASSERT_FALSE(r) << ss;
    EXPECT_EQ(r.error().code, Errc::kInvalid);
  }
  auto r = make_sector_cipher(config("aes-xts-plain64", 4096, 3), key);  // not a multiple of 8
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("IV offset"), std::string::npos);

  auto c = make(config("aes-xts-plain64", 4096), key);
  ASSERT_TRUE(c);
  std::vector<std::byte> ragged(4096 + 512);
  auto e = c->encrypt(SectorRun{ragged, {}, SectorIndex{0}});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, Errc::kInvalid);
  std::vector<std::byte> data(4096), meta(16);
  EXPECT_FALSE(c->encrypt(SectorRun{data, meta, SectorIndex{0}}));
  EXPECT_FALSE(c->encrypt(SectorRun{data, {}, SectorIndex{~0ULL}}));  // cc_sector overflows
  EXPECT_TRUE(c->encrypt(SectorRun{{}, {}, SectorIndex{0}}));         // empty run is fine
}

}  // namespace
}  // namespace cryptmap::crypto

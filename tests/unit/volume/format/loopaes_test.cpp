// loop-AES (docs/loopaes.md): key-file parsing and key derivation, the mapping, and sector data,
// against known answers computed by the independent tests/integration/loopaes_reference.py
// (hashlib + python3-cryptography) from the format description.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "crypto/hash.h"
#include "crypto/sector_cipher.h"
#include "volume/format/loopaes.h"
#include "volume/format/unlock.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

const std::string kOneKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCD\n";

// n lines of 29 characters: "loop-AES KAT key line 00 ...." and so on.
std::string key_lines(int n, const std::string& eol = "\n") {
  std::string s;
  for (int i = 0; i < n; ++i) {
    char line[64];
    std::snprintf(line, sizeof line, "loop-AES KAT key line %02d ....", i);
    s += line;
    s += eol;
  }
  return s;
}

LoopaesOptions bits(std::uint32_t b, std::string hash = "") {
  LoopaesOptions o;
  o.key_bits = b;
  o.hash = std::move(hash);
  return o;
}

std::string key_hex(const std::string& file, const LoopaesOptions& o) {
  auto k = loopaes_parse_keyfile(as_bytes(file), o);
  EXPECT_TRUE(k) << k.error().message();
  return k ? to_hex(k->volume_key.span()) : "";
}

std::string sha256_hex(std::span<const std::byte> b) {
  std::array<std::byte, 32> d{};
  EXPECT_TRUE(crypto::hash_digest("sha256", {b}, d));
  return to_hex(d);
}

TEST(LoopaesKey, OneKeyIsTheLinesHashCutToTheKeySize) {
  EXPECT_EQ(key_hex(kOneKey, bits(128)), "86cd2d2a95a72152010970f791b1f8e5");  // sha256
  EXPECT_EQ(key_hex(kOneKey, bits(192)), "5fe85add77729b00bbc5186dbe30d143567f5194545b6afd");
  EXPECT_EQ(key_hex(kOneKey, bits(256)),
            "1ed6603c9660e0ffcee660b24a4959260333a8aba990fc9e615d83552a79ab28");       // sha512
  EXPECT_EQ(key_hex(kOneKey, bits(128, "sha1")), "e5e3689be0074bdaa62087570615090a");  // --hash
}

struct MultiKat {
  int lines;
  std::uint32_t bits;
  const char* first;
  const char* last;
  const char* sha256_of_all;
};

TEST(LoopaesKey, MultiKeyFilesTweakTheFirstByteOfEveryKey) {
  // 64 keys: byte 0 XOR 0x55; 65 keys: XOR 0xF4 (0x7b ^ 0x55 = 0x2e, 0x2e ^ 0xf4 = 0xda).
  const MultiKat kats[] = {
      {64, 128, "7bf2d85122b6ee596ad3a9f31b5b37a0", "9a405cfacf5b03b0fbf155e9d325cbc0",
       "580736ef8840278090b2e09fe85afa1ef6d49ddf76466e1dc72d7aa167e54a41"},
      {65, 128, "daf2d85122b6ee596ad3a9f31b5b37a0", "bc436e23e7381478067f062bebfc63d8",
       "ba7026349ac81238e21a056f349e3c8b1b76640e237b214fac460ec180674e6c"},
      {65, 256, "08d450265edc893675e678b64ea44c696f5cd99be1666b6d01e683989cf5aeec",
       "18aff92c0e06973120d17dc5c8803c04c582d79becc2b7bf4bf1518271eea163",
       "8df97540dd706a6024b292a9ba9b17f7050e74f753cc58d87badcaebf57d16a2"},
      {64, 192, "2846677963ad7fd428cbdaa7f8a9729eb2225abe2ba3d6bc",
       "f37d2ca0aaafc7e76180635170646ef35f11fa3142b14fa0",
       "e6dea19dd4f6f3b9871114c6f5cba99601a917cf13039c0fb8c100ba2f035ff7"},
  };
  for (const auto& kat : kats) {
    SCOPED_TRACE(std::to_string(kat.lines) + " keys, " + std::to_string(kat.bits) + " bits");
    auto k = loopaes_parse_keyfile(as_bytes(key_lines(kat.lines)), bits(kat.bits));
    ASSERT_TRUE(k) << k.error().message();
    const std::size_t kb = kat.bits / 8;
    ASSERT_EQ(k->key_count, static_cast<std::uint32_t>(kat.lines));
    ASSERT_EQ(k->volume_key.size(), kb * kat.lines);
    EXPECT_EQ(to_hex(k->volume_key.span().first(kb)), kat.first);
    EXPECT_EQ(to_hex(k->volume_key.span().last(kb)), kat.last);
    EXPECT_EQ(sha256_hex(k->volume_key.span()), kat.sha256_of_all);
  }
}

TEST(LoopaesKey, CrLfNulAndBlankLinesSeparateKeysAsLf) {
  const std::string lf = key_hex(key_lines(65), bits(128));
  ASSERT_FALSE(lf.empty());
  EXPECT_EQ(key_hex(key_lines(65, "\r\n"), bits(128)), lf);
  EXPECT_EQ(key_hex(key_lines(65, "\n\n"), bits(128)), lf);
  EXPECT_EQ(key_hex(key_lines(65, std::string(1, '\0')), bits(128)), lf);
}

struct Bad {
  const char* name;
  std::string file;
  const char* says;
};

TEST(LoopaesKeyFile, MalformedFilesAreRefusedWithTheReason) {
  std::string unequal = key_lines(64);
  unequal.replace(unequal.find("line 07"), 7, "line 7");  // one character shorter
  std::string nul_inside = key_lines(64);
  nul_inside[nul_inside.find("line 10") + 4] = '\0';  // splits key 11 in two: 65 keys, unequal
  const Bad bad[] = {
      {"empty", "", "empty"},
      {"no final newline", "abcdefghijklmnopqrst", "not terminated"},
      {"last line unterminated", key_lines(64).substr(0, key_lines(64).size() - 1),
       "key 64 is not terminated"},
      {"leading newline", "\n" + key_lines(1), "key 1 is empty"},
      {"two keys", key_lines(2), "2 keys"},
      {"63 keys", key_lines(63), "63 keys"},
      {"66 keys", key_lines(66), "more than 65 keys"},
      {"huge", std::string(1u << 20, 'k') + "\n" + std::string(1u << 20, 'k'), "not terminated"},
      {"unequal lengths", unequal, "key 8 has 28 characters, key 1 has 29"},
      {"NUL inside a line", nul_inside, "key 11 has 21 characters"},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.name);
    auto k = loopaes_parse_keyfile(as_bytes(b.file), bits(128));
    ASSERT_FALSE(k);
    EXPECT_EQ(k.error().code, Errc::kInvalid);
    EXPECT_STREQ(k.error().what, "Incompatible loop-AES keyfile detected");
    EXPECT_NE(k.error().message().find(b.says), std::string::npos) << k.error().message();
  }
  auto gpg = loopaes_parse_keyfile(
      as_bytes("-----BEGIN PGP MESSAGE-----\n\nhQEMA\n-----END PGP MESSAGE-----\n"), bits(128));
  ASSERT_FALSE(gpg);
  EXPECT_STREQ(gpg.error().what, "Detected not yet supported GPG encrypted keyfile");
}

TEST(LoopaesOptions, InvalidOptionsAreRefusedNamingTheOption) {
  LoopaesOptions o = bits(512);
  auto r = loopaes_check_options(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalid);
  EXPECT_NE(r.error().message().find("--key-size"), std::string::npos);
  o = bits(128);
  o.cipher = "aes-cbc-plain";
  ASSERT_FALSE(loopaes_check_options(o));
  EXPECT_NE(loopaes_check_options(o).error().message().find("--cipher"), std::string::npos);
  o = bits(128, "nosuchhash");
  ASSERT_FALSE(loopaes_check_options(o));
  EXPECT_EQ(loopaes_check_options(o).error().code, Errc::kUnsupported);
  o = bits(256, "sha1");  // 20 bytes cannot make a 32-byte key
  ASSERT_FALSE(loopaes_check_options(o));
  EXPECT_NE(loopaes_check_options(o).error().message().find("less than"), std::string::npos);
  o = bits(256);
  o.cipher = "twofish";
  EXPECT_TRUE(loopaes_check_options(o)) << loopaes_check_options(o).error().message();
  // The key-file parser applies the same checks.
  EXPECT_FALSE(loopaes_parse_keyfile(as_bytes(kOneKey), bits(100)));
}

TEST(LoopaesLayout, KeyCountPicksTheCipherAndOffsetDefaultsTheSkip) {
  LoopaesOptions o = bits(128);
  o.offset_sectors = 8;
  auto one = loopaes_layout(o, 1, 1u << 20);
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_EQ(one->type, VolumeType::kLoopaes);
  EXPECT_EQ(one->cipher.to_string(), "aes-cbc-plain64");
  EXPECT_EQ(one->key_bytes, 16u);
  EXPECT_EQ(one->sector_size, 512u);
  EXPECT_EQ(one->data_offset_bytes, 4096u);
  EXPECT_EQ(one->iv_offset, 8u);  // loop-AES counts IV sectors from the start of the device
  EXPECT_EQ(one->size_bytes, 0u);
  auto v2 = loopaes_layout(o, 64, 1u << 20);
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->cipher.to_string(), "aes:64-cbc-lmk");
  EXPECT_EQ(v2->key_bytes, 1024u);
  o.skip_sectors = 0;
  o.key_bits = 256;
  auto v3 = loopaes_layout(o, 65, 1u << 20);
  ASSERT_TRUE(v3);
  EXPECT_EQ(v3->key_bytes, 65u * 32);
  EXPECT_EQ(v3->iv_offset, 0u);
  EXPECT_FALSE(loopaes_layout(o, 2, 1u << 20));
  o.offset_sectors = 2048;
  auto past = loopaes_layout(o, 1, 1u << 20);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().code, Errc::kNoSpace);
}

struct DataKat {
  const char* name;
  std::string keyfile;
  std::uint32_t bits;
  std::uint64_t offset;
  std::optional<std::uint64_t> skip;
  const char* sha256_of_ciphertext;
  const char* first_block;
};

// Four sectors of byte (7i+3) mod 251, whose first IV sector is 8 (offset 8, skip defaulting to
// it) or 130 (skip 130), encrypted through the unlock path and the sector cipher the layout
// names; the answers come from loopaes_reference.py.
TEST(LoopaesData, SectorsEncryptToTheReferenceCiphertext) {
  const DataKat kats[] = {
      {"single key", kOneKey, 128, 8, std::nullopt,
       "2fe63a05cddfe0a5318bcdb1b3808d4b6a821543752a572a6dc64a95a17b1247",
       "c04a2c654965b00f45f91ddb7acb5424"},
      {"multi-key-v2", key_lines(64), 128, 8, std::nullopt,
       "11bbbd3bf065a4225f380a3b6c0cce70c63deae2592f40dc89a20e2ba3d2b7d6",
       "3cca9ef5a53c2cb4b66d34d2f9c0ae5c"},
      {"multi-key-v3, 256-bit", key_lines(65), 256, 8, std::nullopt,
       "6de0eeae8443eda506d677acd5ce6c82cc9a8f924d125df84195983f86dc23fb",
       "e658fd277b87c6685ee8d3ca3b064380"},
      {"multi-key-v3, --skip 130", key_lines(65), 128, 0, 130,
       "89ee09265ae301a7d1d739202df7fb1c795f670356761426bb6badd7dc4d2e85",
       "5acca39a1371647be7f57af42d585f86"},
  };
  std::vector<std::byte> plain(4 * 512);
  for (std::size_t i = 0; i < plain.size(); ++i)
    plain[i] = static_cast<std::byte>((i * 7 + 3) % 251);
  MemBackingStore image(1u << 20, "mem:loopaes");
  for (const auto& kat : kats) {
    SCOPED_TRACE(kat.name);
    UnlockOptions uo;
    uo.type = VolumeType::kLoopaes;
    uo.loopaes = bits(kat.bits);
    uo.loopaes.offset_sectors = kat.offset;
    uo.loopaes.skip_sectors = kat.skip;
    auto u = unlock_volume(image, image, uo, as_bytes(kat.keyfile));
    ASSERT_TRUE(u) << u.error().message();
    EXPECT_EQ(u->layout.type, VolumeType::kLoopaes);
    crypto::SectorCipherConfig cfg;
    cfg.spec = u->layout.cipher;
    cfg.iv_offset = u->layout.iv_offset;
    auto c = crypto::make_sector_cipher(cfg, u->volume_key.span());
    ASSERT_TRUE(c) << c.error().message();
    std::vector<std::byte> buf = plain;
    ASSERT_TRUE((*c)->encrypt({buf, {}, SectorIndex{0}}));
    EXPECT_EQ(sha256_hex(buf), kat.sha256_of_ciphertext);
    EXPECT_EQ(to_hex(std::span(buf).first(16)), kat.first_block);
    ASSERT_TRUE((*c)->decrypt({buf, {}, SectorIndex{0}}));
    EXPECT_EQ(buf, plain);
  }
}

TEST(LoopaesData, AWrongKeyFileOpensAndReadsOtherData) {
  // No header, no key check (as cryptsetup): another key file unlocks, the data differs.
  MemBackingStore image(1u << 20, "mem:loopaes");
  UnlockOptions uo;
  uo.type = VolumeType::kLoopaes;
  auto right = unlock_volume(image, image, uo, as_bytes(key_lines(65)));
  std::string other = key_lines(65);
  other[0] = 'L';
  auto wrong = unlock_volume(image, image, uo, as_bytes(other));
  ASSERT_TRUE(right);
  ASSERT_TRUE(wrong);
  EXPECT_NE(to_hex(right->volume_key.span()), to_hex(wrong->volume_key.span()));
}

TEST(LoopaesUnlock, AnOffsetPastTheImageIsRefusedBeforeTheKeyFile) {
  MemBackingStore image(64u << 10, "mem:small");
  UnlockOptions uo;
  uo.type = VolumeType::kLoopaes;
  uo.loopaes.offset_sectors = 128;
  auto u = Unlocker::prepare(image, image, uo);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kNoSpace);
}

}  // namespace
}  // namespace cryptmap::volume

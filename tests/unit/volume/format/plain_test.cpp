// Plain mode: key derivation KATs from docs/formats.md §3.7 (checked against libcryptsetup) and the
// layout rules of `cryptsetup open --type plain`.
#include <gtest/gtest.h>

#include "base/bytes.h"
#include "volume/format/plain.h"

namespace cryptmap::volume {
namespace {

std::string hash_hex(const std::string& spec, std::size_t len) {
  auto k = plain_hash(spec, as_bytes(std::string("testpass")), len);
  EXPECT_TRUE(k) << spec;
  return k ? to_hex(k->span()) : "";
}

TEST(PlainKey, KnownAnswers) {
  EXPECT_EQ(hash_hex("sha256", 32),
            "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c");
  EXPECT_EQ(hash_hex("sha256", 64),
            "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c"
            "6fd5631b16982796af4190cbdfc8635932c0208a239f303da4e273fbf0a91b2b");
  EXPECT_EQ(hash_hex("ripemd160", 32),
            "4cde7e0e408e4395607ae7bb74b9f4b6f92af5487fd9828f1955a92d5d6302a6");
  // H:len hashes len bytes, the rest is zero.
  EXPECT_EQ(hash_hex("sha256:16", 32), "13d249f2cb4127b40cfa757866850278" + std::string(32, '0'));
  EXPECT_EQ(hash_hex("plain", 8), to_hex(as_bytes(std::string("testpass"))));
}

TEST(PlainKey, Errors) {
  EXPECT_FALSE(plain_hash("sha256:40", as_bytes(std::string("x")), 32));
  EXPECT_FALSE(plain_hash("sha256:", as_bytes(std::string("x")), 32));
  EXPECT_FALSE(plain_hash("plain", as_bytes(std::string("short")), 32));
  auto r = plain_hash("nosuchhash", as_bytes(std::string("x")), 32);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
}

TEST(PlainKey, KeyFileIsRawAndZeroPadded) {
  PlainOptions o;
  o.key_bits = 256;
  o.hash = "sha256";
  auto k = plain_volume_key(o, as_bytes(std::string("abc")), /*from_key_file=*/true);
  ASSERT_TRUE(k);
  EXPECT_EQ(to_hex(k->span()), "616263" + std::string(58, '0'));
  auto h = plain_volume_key(o, as_bytes(std::string("testpass")), false);
  ASSERT_TRUE(h);
  EXPECT_EQ(to_hex(h->span()), "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c");
  o.hash = "plain";
  auto p = plain_volume_key(o, as_bytes(std::string("abc")), false);
  ASSERT_TRUE(p);
  EXPECT_EQ(to_hex(p->span()), "616263" + std::string(58, '0'));
}

TEST(PlainLayout, OptionsMapToTheTable) {
  PlainOptions o;
  o.cipher = "aes-xts-plain64";
  o.key_bits = 512;
  o.offset_sectors = 2048;
  o.skip_sectors = 16;
  o.size_sectors = 4096;
  o.sector_size = 4096;
  o.iv_large_sectors = true;
  auto l = plain_layout(o, 16u << 20);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->type, VolumeType::kPlain);
  EXPECT_EQ(l->data_offset_bytes, 2048u * 512);
  EXPECT_EQ(l->iv_offset, 16u);
  EXPECT_EQ(l->size_bytes, 4096u * 512);
  EXPECT_EQ(l->sector_size, 4096u);
  EXPECT_TRUE(l->iv_large_sectors);
  EXPECT_EQ(l->key_bytes, 64u);
  EXPECT_EQ(l->cipher.to_string(), "aes-xts-plain64");
}

TEST(PlainLayout, Rejections) {
  PlainOptions o;
  o.cipher = "aes-xts-plain64";
  o.sector_size = 1000;
  EXPECT_FALSE(plain_layout(o, 1u << 20));
  o.sector_size = 4096;
  o.skip_sectors = 3;
  EXPECT_FALSE(plain_layout(o, 1u << 20));
  o.skip_sectors = 0;
  EXPECT_FALSE(plain_layout(o, (1u << 20) + 512));  // not aligned to 4096
  o.sector_size = 512;
  o.offset_sectors = 1u << 20;
  EXPECT_FALSE(plain_layout(o, 1u << 20));  // offset beyond the end
  o.offset_sectors = 0;
  o.size_sectors = 4096;
  EXPECT_FALSE(plain_layout(o, 1u << 20));  // size beyond the end
  o.size_sectors = 0;
  o.cipher = "nonsense-";
  EXPECT_FALSE(plain_layout(o, 1u << 20));
}

}  // namespace
}  // namespace cryptmap::volume

#include "base/bytes.h"

#include <gtest/gtest.h>

#include <array>

namespace cryptmap {
namespace {

TEST(Bytes, BigEndianRoundTrip) {
  std::byte buf[8];
  store_be64(buf, 0x0102030405060708ull);
  EXPECT_EQ(std::to_integer<int>(buf[0]), 1);
  EXPECT_EQ(load_be64(buf), 0x0102030405060708ull);
  store_be32(buf, 0xAABBCCDDu);
  EXPECT_EQ(load_be32(buf), 0xAABBCCDDu);
  EXPECT_EQ(load_be16(buf), 0xAABBu);
}

TEST(Bytes, HexRoundTripAndErrors) {
  auto v = from_hex("00ff10Ab");
  ASSERT_TRUE(v);
  EXPECT_EQ(to_hex(*v), "00ff10ab");
  EXPECT_EQ(from_hex("abc").error().code, Errc::kInvalid);
  EXPECT_EQ(from_hex("zz").error().object, 0u);
}

// cryptsetup's dump layout: "xx " per byte, 16 a line, continuation lines after the indent.
TEST(Bytes, HexLinesBreakEvery16BytesAfterTheIndentAndKeepOneLineWithoutIt) {
  std::array<std::byte, 17> b{};
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = std::byte(i);
  const std::string first = "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f ";
  EXPECT_EQ(to_hex_lines(b, "\t\t"), first + "\n\t\t10 ");
  EXPECT_EQ(to_hex_lines(b, ""), first + "10 ");
  EXPECT_EQ(to_hex_lines(std::span(b).first(16), "\t"), first);
  EXPECT_EQ(to_hex_lines({}, "\t"), "");
}

// LUKS string fields: at most len-1 characters, the last byte always NUL.
TEST(CstrField, WritesPaddedAndTruncatedAndReadsBackUpToTheFirstNul) {
  std::array<std::byte, 8> f{};
  f.fill(std::byte{0x55});
  write_cstr_field(f.data(), f.size(), "aes");
  EXPECT_EQ(read_cstr_field(f.data(), f.size()), "aes");
  EXPECT_EQ(f[3], std::byte{0});
  EXPECT_EQ(f[7], std::byte{0});
  write_cstr_field(f.data(), f.size(), "0123456789");
  EXPECT_EQ(read_cstr_field(f.data(), f.size()), "0123456");
  EXPECT_EQ(f[7], std::byte{0});
  f.fill(std::byte{'x'});  // no NUL at all (hostile header): stops at len-1
  EXPECT_EQ(read_cstr_field(f.data(), f.size()), "xxxxxxx");
}

}  // namespace
}  // namespace cryptmap

#include "base/bytes.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace cryptmap

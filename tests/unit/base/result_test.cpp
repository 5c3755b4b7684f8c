#include "base/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace cryptmap {
namespace {

Result<int> parse_positive(int v) {
  if (v <= 0)
    return make_error(Errc::kInvalid, "value must be positive", static_cast<std::uint64_t>(-v));
  return v;
}

Result<int> doubled(int v) {
  CRYPTMAP_TRY(x, parse_positive(v));
  return x * 2;
}

Result<void> check_only(int v) {
  CRYPTMAP_TRY_VOID(parse_positive(v));
  return ok();
}

TEST(Result, HoldsTheValueItWasGiven) {
  auto r = parse_positive(3);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 3);
}

TEST(Result, CarriesTheErrorItWasGiven) {
  auto r = parse_positive(-4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalid);
  EXPECT_EQ(r.error().object, 4u);
}

TEST(Result, TryPropagatesErrorsAndValues) {
  EXPECT_EQ(*doubled(5), 10);
  EXPECT_FALSE(doubled(0));
  EXPECT_TRUE(check_only(1));
  EXPECT_EQ(check_only(-1).error().code, Errc::kInvalid);
}

TEST(Result, HoldsMoveOnlyValues) {
  Result<std::unique_ptr<std::string>> r = std::make_unique<std::string>("k");
  auto p = std::move(r).value();
  EXPECT_EQ(*p, "k");
}

TEST(Result, AndThenChains) {
  auto r =
      parse_positive(2).and_then([](int v) -> Result<std::string> { return std::to_string(v); });
  EXPECT_EQ(*r, "2");
  auto e =
      parse_positive(-2).and_then([](int v) -> Result<std::string> { return std::to_string(v); });
  EXPECT_FALSE(e);
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
  auto r = parse_positive(-1);
  EXPECT_DEATH((void)r.value(), "");
}

}  // namespace
}  // namespace cryptmap

#include "base/inline_function.h"

#include <gtest/gtest.h>

#include <memory>

namespace cryptmap {
namespace {

TEST(InlineFunction, CallsCapturedState) {
  int hits = 0;
  InlineFunction<void(int), 32> f = [&hits](int n) { hits += n; };
  f(3);
  f(4);
  EXPECT_EQ(hits, 7);
}

TEST(InlineFunction, MovesOwnershipOfMoveOnlyCaptures) {
  auto p = std::make_unique<int>(5);
  InlineFunction<int(), 32> f = [q = std::move(p)] { return *q; };
  InlineFunction<int(), 32> g = std::move(f);
  EXPECT_FALSE(f);
  EXPECT_EQ(g(), 5);
}

TEST(InlineFunction, DestroysCaptureExactlyOnce) {
  auto counter = std::make_shared<int>(0);
  {
    InlineFunction<void(), 32> f = [c = counter] { ++*c; };
    InlineFunction<void(), 32> g = std::move(f);
    g();
    EXPECT_EQ(counter.use_count(), 2);
  }
  EXPECT_EQ(counter.use_count(), 1);
  EXPECT_EQ(*counter, 1);
}

}  // namespace
}  // namespace cryptmap

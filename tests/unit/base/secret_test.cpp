#include "base/secret.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

namespace cryptmap {
namespace {

TEST(SecretBytes, CopiesAndCompares) {
  auto s = SecretBytes::copy_of(std::string_view("passphrase"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->as_chars(), "passphrase");
  s->truncate(4);
  EXPECT_EQ(s->as_chars(), "pass");
}

TEST(SecretBytes, MemoryIsLocked) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "the sanitizer runtime intercepts mlock() as a no-op, so VmLck stays 0";
#endif
  auto s = SecretBytes::allocate(100);
  ASSERT_TRUE(s);
  // mincore says resident; mlock is checked through /proc/self/status VmLck growing.
  std::ifstream st("/proc/self/status");
  std::string line;
  long locked_kb = -1;
  while (std::getline(st, line))
    if (line.rfind("VmLck:", 0) == 0) locked_kb = std::stol(line.substr(6));
  EXPECT_GE(locked_kb, 4);
}

TEST(SecretBytes, MoveLeavesSourceEmpty) {
  auto s = SecretBytes::copy_of(std::string_view("k"));
  ASSERT_TRUE(s);
  SecretBytes t = std::move(*s);
  EXPECT_TRUE(s->empty());
  EXPECT_EQ(t.as_chars(), "k");
}

TEST(SecretBytes, ConstantTimeEqual) {
  std::byte a[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  std::byte b[3] = {std::byte{1}, std::byte{2}, std::byte{4}};
  EXPECT_TRUE(constant_time_equal(a, a));
  EXPECT_FALSE(constant_time_equal(a, b));
  EXPECT_FALSE(constant_time_equal(std::span(a, 2), a));
}

}  // namespace
}  // namespace cryptmap

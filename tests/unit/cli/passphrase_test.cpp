// cli/terminal/passphrase.cpp (compiled into this binary directly): key files with --keyfile-offset
// /
// --keyfile-size, "-" for stdin, piped stdin stopping at the first newline, size limits.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include "cli/terminal/passphrase.h"
#include "tests/support/temp_dir.h"

namespace cryptmap::cli {
namespace {

std::string str(const SecretBytes& s) { return std::string(s.as_chars()); }

// Runs `f` with stdin replaced by a pipe holding `content`.
template <class F>
auto with_stdin(const std::string& content, F f) {
  int p[2];
  EXPECT_EQ(::pipe(p), 0);
  EXPECT_EQ(::write(p[1], content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ::close(p[1]);
  const int saved = ::dup(STDIN_FILENO);
  ::dup2(p[0], STDIN_FILENO);
  ::close(p[0]);
  auto r = f();
  ::dup2(saved, STDIN_FILENO);
  ::close(saved);
  return r;
}

TEST(Passphrase, KeyFileIsReadVerbatimWithOffsetAndSize) {
  test::TempDir d;
  KeySource s;
  s.key_file = d.write("k", std::string("abc\ndef\0ghi", 11));
  auto all = read_passphrase(s, "", false);
  ASSERT_TRUE(all);
  EXPECT_EQ(str(*all), std::string("abc\ndef\0ghi", 11));  // newlines and NULs are key bytes
  s.keyfile_offset = 2;
  s.keyfile_size = 4;
  auto part = read_passphrase(s, "", false);
  ASSERT_TRUE(part);
  EXPECT_EQ(str(*part), "c\nde");
  s.keyfile_size = 100;  // more than there is
  auto shortf = read_passphrase(s, "", false);
  ASSERT_FALSE(shortf);
  EXPECT_EQ(shortf.error().code, Errc::kInvalid);
  s.key_file = d.file("missing");
  auto missing = read_passphrase(s, "", false);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_FALSE(passphrase_is_interactive(s));
}

TEST(Passphrase, TooLargeKeyFileNeedsKeyfileSize) {
  test::TempDir d;
  KeySource s;
  s.key_file = d.write("big", std::string((8u << 20) + 1, 'x'));
  auto r = read_passphrase(s, "", false);
  ASSERT_FALSE(r);
  s.keyfile_size = 64;
  auto ok = read_passphrase(s, "", false);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->size(), 64u);
}

TEST(Passphrase, StdinDashReadsEverything) {
  KeySource s;
  s.key_file = "-";
  auto r = with_stdin("line1\nline2\n", [&] { return read_passphrase(s, "", false); });
  ASSERT_TRUE(r);
  EXPECT_EQ(str(*r), "line1\nline2\n");
}

TEST(Passphrase, PipedStdinStopsAtFirstNewline) {
  KeySource s;
  auto r =
      with_stdin("secret words\ntrailing", [&] { return read_passphrase(s, "prompt", false); });
  ASSERT_TRUE(r);
  EXPECT_EQ(str(*r), "secret words");
  auto empty = with_stdin("", [&] { return read_passphrase(s, "prompt", false); });
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->size(), 0u);
}

}  // namespace
}  // namespace cryptmap::cli

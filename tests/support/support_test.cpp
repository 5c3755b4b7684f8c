// The shared test helpers themselves: a broken generator or temp dir would make other suites
// pass for the wrong reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/support/cryptsetup.h"
#include "tests/support/data.h"
#include "tests/support/loop_device.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"

namespace cryptmap::test {
namespace {

TEST(DeterministicBytes, AreAPureFunctionOfSeedAndOffset) {
  const auto whole = deterministic_bytes(100, 7);
  EXPECT_EQ(whole, deterministic_bytes(100, 7));
  const auto tail = deterministic_bytes(37, 7, 63);
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), whole.begin() + 63));
  EXPECT_NE(whole, deterministic_bytes(100, 8));
  // The stream is splitmix64 words, little-endian: the engine tests' fill_pattern() stream.
  EXPECT_EQ(hex_of(deterministic_bytes(8, 0)), "afcd1d7b39a820e2");
}

TEST(Hex, RoundTripsAndReportsBadInput) {
  EXPECT_EQ(hex_of(hex("00ff10")), "00ff10");
  EXPECT_EQ(hex_of(iota_bytes(3, 254)), "feff00");
  EXPECT_EQ(bytes_of("ab"), hex("6162"));
}

TEST(TempDir, IsCreatedUnderTmpdirAndRemovedWithItsContents) {
  std::string path;
  {
    TempDir dir("cryptmap-support-test");
    path = dir.path();
    ASSERT_TRUE(std::filesystem::is_directory(path));
    const std::string p = dir.write("a", "hello");
    EXPECT_EQ(read_file(p), bytes_of("hello"));
    write_file(dir.file("b"), hex("0102"));
    EXPECT_EQ(read_file(dir.file("b")), hex("0102"));
    EXPECT_EQ(std::filesystem::file_size(dir.sized_file("c", 1 << 20)), 1u << 20);
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Run, CapturesStatusStdoutAndStderrApart) {
  const RunResult r = run("echo out; echo err >&2; exit 3");
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(run("kill -9 $$").status, 128 + 9);
}

TEST(FindTool, FindsShAndExplainsAMissingTool) {
  const Tool sh = find_tool("sh");
  ASSERT_TRUE(sh);
  EXPECT_EQ(sh.path.front(), '/');
  const Tool none = find_tool("cryptmap-no-such-tool", "no-such-package");
  EXPECT_FALSE(none);
  EXPECT_NE(none.missing.find("cryptmap-no-such-tool not found in"), std::string::npos);
  EXPECT_NE(none.missing.find("/usr/sbin"), std::string::npos);
  EXPECT_NE(none.missing.find("install no-such-package"), std::string::npos);
}

TEST(LoopDevice, AttachesAFileAndIsDetachedOnDestruction) {
  TempDir dir("cryptmap-support-test");
  std::string dev;
  {
    LoopDevice loop(dir.sized_file("img", 1 << 20));
    if (!loop) GTEST_SKIP() << loop.missing();
    dev = loop.path();
    const RunResult r = run("losetup " + dev);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find(dir.file("img")), std::string::npos) << r.out;
  }
  EXPECT_NE(run("losetup " + dev).status, 0) << dev << " still attached";
}

TEST(CryptsetupDump, VolumeKeyIsReadFromTheMkDumpBlock) {
  const std::string dump =
      "LUKS header information\nMK bits:\t256\nMK dump:\t01 23 45 67 89 AB cd ef 01 23 45 67 89 ab "
      "cd ef \n"
      "\t\t00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff \nOther:\t1\n";
  EXPECT_EQ(volume_key_hex_from_dump(dump),
            "0123456789abcdef0123456789abcdef00112233445566778899aabbccddeeff");
  EXPECT_EQ(volume_key_hex_from_dump("no key here\n"), "");
}

}  // namespace
}  // namespace cryptmap::test

#include "base/error.h"

#include "base/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstddef>
#include <string>

namespace cryptmap {
namespace {

struct ErrnoRow {
  Errc code;
  int expected;
};

class ToErrnoTest : public ::testing::TestWithParam<ErrnoRow> {};

TEST_P(ToErrnoTest, MapsEveryCodeToTheDocumentedErrno) {
  EXPECT_EQ(to_errno(make_error(GetParam().code, "x")), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ToErrnoTest,
    ::testing::Values(ErrnoRow{Errc::kIo, EIO}, ErrnoRow{Errc::kNoSpace, ENOSPC},
                      ErrnoRow{Errc::kReadOnly, EROFS}, ErrnoRow{Errc::kAuth, EIO},
                      ErrnoRow{Errc::kCorrupt, EIO}, ErrnoRow{Errc::kBadKey, EPERM},
                      ErrnoRow{Errc::kUnsupported, EOPNOTSUPP}, ErrnoRow{Errc::kInvalid, EINVAL},
                      ErrnoRow{Errc::kZoneOrder, EIO}, ErrnoRow{Errc::kBusy, EBUSY},
                      ErrnoRow{Errc::kCancelled, ECANCELED}, ErrnoRow{Errc::kNotFound, ENOENT}));

TEST(Error, MessageNamesWhatObjectDetailAndErrno) {
  Error e = make_sys_error(ENOENT, "open image", 7);
  EXPECT_EQ(e.code, Errc::kNotFound);
  EXPECT_EQ(e.message(), "open image [7] (No such file or directory)");
  Error f = make_error_fmt(Errc::kUnsupported, "cipher spec", kNoObject, "cipher '%s'", "blowfish");
  EXPECT_EQ(f.message(), "cipher spec: cipher 'blowfish'");
}

TEST(Error, DetailIsTruncatedNotOverflowed) {
  std::string longs(500, 'a');
  Error e = make_error_fmt(Errc::kInvalid, "x", kNoObject, "%s", longs.c_str());
  EXPECT_EQ(e.detail_view().size(), e.detail.size() - 1);
}

// A text that does not fit is cut visibly: it ends in the mark, and what is kept is its start.
TEST(Error, ACutDetailEndsInTheTruncationMark) {
  const std::string longs = "/dev/disk/by-id/" + std::string(400, 'x');
  Error e = make_error_fmt(Errc::kInvalid, "x", kNoObject, "%s is busy", longs.c_str());
  ASSERT_EQ(e.detail_view().size(), kDetailBytes - 1);
  EXPECT_TRUE(e.detail_view().ends_with(kTruncationMark)) << e.detail_view();
  EXPECT_TRUE(e.detail_view().starts_with("/dev/disk/by-id/xxx"));
  Error f = make_sys_error(ENOENT, "open image");
  set_detail(f, longs);
  EXPECT_EQ(f.detail_view().size(), kDetailBytes - 1);
  EXPECT_TRUE(f.detail_view().ends_with(kTruncationMark)) << f.detail_view();
  // A text of exactly the room left is not marked, one character more is.
  const std::string fits(kDetailBytes - 1, 'y');
  set_detail(f, fits);
  EXPECT_EQ(f.detail_view(), fits);
  Error g = make_error_fmt(Errc::kInvalid, "x", kNoObject, "%s", fits.c_str());
  EXPECT_EQ(g.detail_view(), fits);
  Error h = make_error_fmt(Errc::kInvalid, "x", kNoObject, "%sy", fits.c_str());
  EXPECT_TRUE(h.detail_view().ends_with(kTruncationMark));
}

// The longest detail shapes the code base builds, each with a 100-character path or the nested
// message it carries, reach the user whole (they were cut at 95 characters: the forced-uring
// refusal read "...use --fuse-transport=dev (or aut."). The formats are copied from their call
// sites, named in each case.
TEST(Error, TheLongestMessageShapesAreNotCut) {
  const std::string path = "/srv/images/" + std::string(79, 'p') + "/disk.img";  // 100 chars
  ASSERT_EQ(path.size(), 100U);
  struct Shape {
    const char* site;
    Error e;
    std::string_view tail;
  };
  // fs/volume_server.cpp prepare_uring: --fuse-transport=uring refused, with the reason nested.
  const std::string why_setup =
      "setting up io_uring failed: " +
      make_sys_error(EPERM, "io_uring_setup").message();  // as prepare_uring builds it
  const std::string why_switch =
      "/sys/module/fuse/parameters/enable_uring is N (root may write Y)";  // fuse_uring.cpp
  const Shape shapes[] = {
      {"prepare_uring, setup failed",
       make_error_fmt(Errc::kUnsupported, "FUSE over io_uring", kNoObject,
                      "%s; use --fuse-transport=dev (or auto)", why_setup.c_str()),
       "; use --fuse-transport=dev (or auto)"},
      {"prepare_uring, enable_uring N",
       make_error_fmt(Errc::kUnsupported, "FUSE over io_uring", kNoObject,
                      "%s; use --fuse-transport=dev (or auto)", why_switch.c_str()),
       "; use --fuse-transport=dev (or auto)"},
      {"integrity_volume.cpp, journal on a read-only image",
       make_error_fmt(Errc::kReadOnly, "dm-integrity journal", 12345,
                      "the journal holds %zu committed write(s) to replay (or needs "
                      "re-initialising) but %s is opened read-only: open it read-write once to "
                      "replay",
                      std::size_t{12345}, path.c_str()),
       "open it read-write once to replay"},
      {"reencrypt_commands.cpp, --encrypt over a header",
       make_error_fmt(Errc::kInvalid, "reencrypt --encrypt", kNoObject,
                      "%s already holds a LUKS header; --encrypt writes a new one (remove it "
                      "first, or --resume-only a started encryption)",
                      path.c_str()),
       "--resume-only a started encryption)"},
      {"volume_server.cpp, zoned volume into an unordered mount",
       make_error_fmt(Errc::kInvalid, "add volume", kNoObject,
                      "%s is zoned: it needs a mount directory whose daemon keeps arrival order; "
                      "use another --mount-dir",
                      path.c_str()),
       "use another --mount-dir"},
  };
  for (const Shape& s : shapes) {
    EXPECT_TRUE(s.e.detail_view().ends_with(s.tail)) << s.site << ": " << s.e.message();
    EXPECT_FALSE(s.e.detail_view().ends_with(kTruncationMark)) << s.site;
  }
}

// The detail lives in the Error (no heap), so it is in every Result on the I/O path: bounded.
TEST(Error, AResultStaysSmallEnoughForTheIoPath) {
  EXPECT_LE(sizeof(Error), 288U);
  EXPECT_LE(sizeof(Result<std::size_t>), 296U);
  EXPECT_LE(sizeof(Result<void>), 296U);
}

TEST(Error, SysErrorClassifiesCommonErrnos) {
  EXPECT_EQ(make_sys_error(ENOSPC, "w").code, Errc::kNoSpace);
  EXPECT_EQ(make_sys_error(EROFS, "w").code, Errc::kReadOnly);
  EXPECT_EQ(make_sys_error(EIO, "w").code, Errc::kIo);
  EXPECT_EQ(make_sys_error(EIO, "w").sys_errno, EIO);
}

}  // namespace
}  // namespace cryptmap

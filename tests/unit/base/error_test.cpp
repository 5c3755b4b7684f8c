#include "base/error.h"

#include <gtest/gtest.h>

#include <cerrno>

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

TEST(Error, SysErrorClassifiesCommonErrnos) {
  EXPECT_EQ(make_sys_error(ENOSPC, "w").code, Errc::kNoSpace);
  EXPECT_EQ(make_sys_error(EROFS, "w").code, Errc::kReadOnly);
  EXPECT_EQ(make_sys_error(EIO, "w").code, Errc::kIo);
  EXPECT_EQ(make_sys_error(EIO, "w").sys_errno, EIO);
}

}  // namespace
}  // namespace cryptmap

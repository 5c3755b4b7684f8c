// The one Error -> exit code table (base/exit_code.h), row by row: cryptsetup's return codes.
#include "base/exit_code.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace cryptmap {
namespace {

Error with_errno(Errc code, int err) {
  Error e = make_error(code, "test");
  e.sys_errno = err;
  return e;
}

TEST(ExitCode, ValuesAreCryptsetupsReturnCodes) {
  EXPECT_EQ(kExitOk, 0);
  EXPECT_EQ(kExitUsage, 1);
  EXPECT_EQ(kExitPermission, 2);
  EXPECT_EQ(kExitNoMemory, 3);
  EXPECT_EQ(kExitBadDevice, 4);
  EXPECT_EQ(kExitBusy, 5);
}

TEST(ExitCode, AWrongPassphraseIsNoPermission) {
  EXPECT_EQ(exit_code_for(make_error(Errc::kBadKey, "unlock")), kExitPermission);
}

TEST(ExitCode, BusyAndMissingObjectsMapToBusyAndBadDevice) {
  EXPECT_EQ(exit_code_for(make_error(Errc::kBusy, "close")), kExitBusy);
  EXPECT_EQ(exit_code_for(make_error(Errc::kNotFound, "status")), kExitBadDevice);
}

TEST(ExitCode, AnUnreachableDeviceIsBadDeviceAndOtherIoErrorsAreGeneric) {
  for (int err : {ENOENT, EACCES, ENOTDIR, ENXIO, EPERM})
    EXPECT_EQ(exit_code_for(with_errno(Errc::kIo, err)), kExitBadDevice) << err;
  EXPECT_EQ(exit_code_for(with_errno(Errc::kIo, EIO)), kExitUsage);
  EXPECT_EQ(exit_code_for(with_errno(Errc::kIo, 0)), kExitUsage);
}

// An mlock refusal (EAGAIN under RLIMIT_MEMLOCK, ENOMEM) exits 3 from every command; it used to
// exit 3 from `open` but 1 from `luksAddKey`, whose table lacked EAGAIN.
TEST(ExitCode, ALockedMemoryRefusalIsOutOfMemoryWhateverTheCommand) {
  EXPECT_EQ(exit_code_for(with_errno(Errc::kNoSpace, EAGAIN)), kExitNoMemory);
  EXPECT_EQ(exit_code_for(with_errno(Errc::kNoSpace, ENOMEM)), kExitNoMemory);
  EXPECT_EQ(exit_code_for(with_errno(Errc::kNoSpace, ENOSPC)), kExitUsage);
}

TEST(ExitCode, EverythingElseIsWrongParameters) {
  for (Errc c : {Errc::kReadOnly, Errc::kAuth, Errc::kCorrupt, Errc::kUnsupported, Errc::kInvalid,
                 Errc::kZoneOrder, Errc::kCancelled})
    EXPECT_EQ(exit_code_for(make_error(c, "x")), kExitUsage) << errc_name(c);
}

}  // namespace
}  // namespace cryptmap

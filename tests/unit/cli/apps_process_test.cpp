// Mount-table parsing for the application verbs (cli/apps/process.h).
#include "cli/apps/process.h"

#include <gtest/gtest.h>

namespace cryptmap::cli::apps {
namespace {

TEST(Mountinfo, FindsSuperOptionsOfTheTopmostMountAtDir) {
  const std::string text =
      "36 25 0:32 / /run/cryptmap rw,nosuid,nodev,relatime shared:1 - fuse.cryptmap cryptmap "
      "rw,user_id=0,group_id=0,default_permissions,allow_other\n"
      "37 25 0:33 / /srv/my\\040dir rw,relatime - fuse.cryptmap cryptmap "
      "rw,user_id=1000,group_id=1000,default_permissions\n"
      "38 25 0:34 / /tmp/stack rw - fuse.cryptmap cryptmap rw,allow_other\n"
      "39 38 0:35 / /tmp/stack rw - fuse.cryptmap cryptmap rw,user_id=0\n";
  EXPECT_TRUE(mountinfo_has_option(text, "/run/cryptmap", "allow_other"));
  EXPECT_TRUE(mountinfo_has_option(text, "/run/cryptmap", "default_permissions"));
  EXPECT_FALSE(mountinfo_has_option(text, "/run/cryptmap", "allow"));  // whole options only
  EXPECT_FALSE(mountinfo_has_option(text, "/srv/my dir", "allow_other"));
  EXPECT_TRUE(mountinfo_has_option(text, "/srv/my dir", "user_id=1000"));
  EXPECT_FALSE(mountinfo_has_option(text, "/tmp/stack", "allow_other"));  // covered by 39
  EXPECT_FALSE(mountinfo_has_option(text, "/nowhere", "rw"));
  // Mount options (before " - ") are not super options.
  EXPECT_FALSE(mountinfo_has_option(text, "/run/cryptmap", "nosuid"));
}

}  // namespace
}  // namespace cryptmap::cli::apps

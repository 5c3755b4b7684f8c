// BlockZonedStore and the open_zoned_store factory on what exists on this machine: no zoned
// device, but real loop devices (non-zoned), regular files and character devices. The blk_zone
// translation is tested on hand-built reports in zone_map_test.cpp.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "tests/support/loop_device.h"
#include "volume/zone/zoned_store.h"
#include "zone_test_util.h"

namespace cryptmap::volume {
namespace {

using testing::describe;
using testing::ScratchDir;

TEST(BlockZonedStoreTest, ANonZonedLoopDeviceIsRefusedWithAClearError) {
  ScratchDir dir;
  const std::string backing = dir.file("loop.img");
  std::ofstream(backing).close();
  ASSERT_EQ(::truncate(backing.c_str(), 8 << 20), 0);
  test::LoopDevice loop(backing);
  if (!loop) GTEST_SKIP() << loop.missing();
  auto model = block_device_zoned_model(loop.path());
  ASSERT_TRUE(model) << describe(model);
  EXPECT_EQ(*model, "none");
  ZonedStoreOptions o;
  auto s = open_zoned_store(loop.path(), o);  // the factory routes block devices here
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kUnsupported);
  const std::string msg = s.error().message();
  EXPECT_NE(msg.find("not a zoned block device"), std::string::npos) << msg;
  EXPECT_NE(msg.find(loop.path()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'none'"), std::string::npos) << msg;
  // Asking to create a zoned layout on a block device is refused before anything is touched.
  o.create = true;
  o.zone_size_bytes = 1 << 20;
  o.zone_count = 8;
  auto c = open_zoned_store(loop.path(), o);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kInvalid);
}

TEST(BlockZonedStoreTest, ZonedModelOfSomethingThatIsNotABlockDevice) {
  ScratchDir dir;
  std::ofstream(dir.file("f")) << "x";
  auto m = block_device_zoned_model(dir.file("f"));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Errc::kInvalid);
  auto missing = block_device_zoned_model(dir.file("nope"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  auto direct = open_block_zoned_store(dir.file("f"), ZonedStoreOptions{});
  ASSERT_FALSE(direct);
  EXPECT_EQ(direct.error().code, Errc::kInvalid);
}

TEST(OpenZonedStoreTest, ChoosesTheImplementationFromThePath) {
  ScratchDir dir;
  const std::string img = dir.file("plain.img");
  std::ofstream(img) << std::string(4096, 'a');
  // A regular file without a sidecar is not a zoned image.
  auto plain = open_zoned_store(img, ZonedStoreOptions{});
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().code, Errc::kNotFound);
  EXPECT_NE(plain.error().message().find("plain.img.zones"), std::string::npos)
      << plain.error().message();
  // Missing path.
  auto missing = open_zoned_store(dir.file("absent.img"), ZonedStoreOptions{});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_NE(missing.error().message().find("absent.img"), std::string::npos);
  // A character device.
  auto chr = open_zoned_store("/dev/null", ZonedStoreOptions{});
  ASSERT_FALSE(chr);
  EXPECT_EQ(chr.error().code, Errc::kInvalid);
  // create -> emulated; afterwards the sidecar makes the same path open as emulated.
  ZonedStoreOptions o;
  o.create = true;
  o.zone_size_bytes = 1 << 16;
  o.zone_count = 4;
  o.conventional_zones = 1;
  {
    auto s = open_zoned_store(img, o);
    ASSERT_TRUE(s) << describe(s);
    EXPECT_EQ((*s)->zone_map().conventional_count(), 1u);
    EXPECT_EQ((*s)->name(), img);
  }
  auto again = open_zoned_store(img, ZonedStoreOptions{});
  ASSERT_TRUE(again) << describe(again);
  EXPECT_EQ((*again)->zone_map().zone_count(), 4u);
  // The conventional zone kept the file's old bytes (a zoned image can wrap an existing file).
  std::vector<std::byte> head(4);
  ASSERT_TRUE((*again)->read_at(ByteOffset{0}, head));
  EXPECT_EQ(head[0], std::byte{'a'});
}

}  // namespace
}  // namespace cryptmap::volume

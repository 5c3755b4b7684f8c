// volume/open.h: which store probe_store picks (the decision on hand-written facts, since no
// zoned device exists here; the facts read from real files and a real non-zoned loop device),
// and the assembled volume: a zoned one orders its writes, an image cut before its data segment
// does not open, a formatted image opens with its passphrase and keeps what was written.
#include "volume/open.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/loop_device.h"
#include "volume/format/luks_admin.h"
#include "volume/store/backing_store.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {
namespace {

class Scratch {
 public:
  Scratch() {
    const char* base = std::getenv("TMPDIR");
    std::string t = std::string(base && *base ? base : "/tmp") + "/cryptmap-open-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = t;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string file(const std::string& name, std::uint64_t bytes = 0) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p).close();
    EXPECT_EQ(::truncate(p.c_str(), static_cast<off_t>(bytes)), 0);
    return p;
  }

 private:
  std::string path_;
};

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(ChooseStoreKind, AHostManagedOrHostAwareBlockDeviceIsServedAsZoned) {
  StoreFacts f;
  f.block_device = true;
  f.zoned_model = "host-managed\n";  // as sysfs has it
  EXPECT_EQ(choose_store_kind(f), StoreKind::kBlockZoned);
  f.zoned_model = "host-aware";
  EXPECT_EQ(choose_store_kind(f), StoreKind::kBlockZoned);
}

TEST(ChooseStoreKind, ABlockDeviceReportingAZoneSizeIsZonedWhateverItsModelSays) {
  StoreFacts f;
  f.block_device = true;
  f.zoned_model = "none";
  f.zone_sectors = 524288;  // 256 MiB zones
  EXPECT_EQ(choose_store_kind(f), StoreKind::kBlockZoned);
}

TEST(ChooseStoreKind, AConventionalBlockDeviceOrAPlainFileIsServedAsIs) {
  StoreFacts dev;
  dev.block_device = true;
  dev.zoned_model = "none\n";
  EXPECT_EQ(choose_store_kind(dev), StoreKind::kPosix);
  dev.zone_sidecar = true;  // a sidecar means nothing next to a block device
  EXPECT_EQ(choose_store_kind(dev), StoreKind::kPosix);
  EXPECT_EQ(choose_store_kind(StoreFacts{}), StoreKind::kPosix);
}

TEST(ChooseStoreKind, AFileWithAZoneSidecarIsAnEmulatedZonedDrive) {
  StoreFacts f;
  f.zone_sidecar = true;
  EXPECT_EQ(choose_store_kind(f), StoreKind::kEmulatedZoned);
}

// A 16 MiB emulated zoned drive: 4 conventional zones of 1 MiB, then sequential ones.
std::string emulated_zoned(const Scratch& dir, const std::string& name) {
  const std::string img = dir.file(name);
  ZonedStoreOptions zo;
  zo.create = true;
  zo.zone_size_bytes = 1 << 20;
  zo.zone_count = 16;
  zo.conventional_zones = 4;
  auto s = open_zoned_store(img, zo);
  EXPECT_TRUE(s) << s.error().message();
  return img;
}

TEST(ProbeStore, ReadsTheFactsOfRealFiles) {
  Scratch dir;
  const std::string plain = dir.file("plain.img", 1 << 20);
  StoreFacts f = read_store_facts(plain);
  EXPECT_FALSE(f.block_device);
  EXPECT_FALSE(f.zone_sidecar);
  const std::string zoned = emulated_zoned(dir, "zoned.img");
  EXPECT_TRUE(read_store_facts(zoned).zone_sidecar);
  EXPECT_EQ(choose_store_kind(read_store_facts(zoned)), StoreKind::kEmulatedZoned);
}

TEST(ProbeStore, OpensAnEmulatedZonedImageAsZonedAndHonoursReadOnly) {
  Scratch dir;
  const std::string img = emulated_zoned(dir, "z.img");
  auto s = probe_store(img, {.read_only = true});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_NE((*s)->zones(), nullptr);
  EXPECT_TRUE((*s)->read_only());
  std::vector<std::byte> b(4096);
  auto w = (*s)->write_at(ByteOffset{0}, b);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, Errc::kReadOnly);
  auto p = probe_store(dir.file("p.img", 1 << 20), {.read_only = false});
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ((*p)->zones(), nullptr);
  EXPECT_FALSE((*p)->read_only());
}

TEST(ProbeStore, AMissingImageIsAnErrorNamingIt) {
  Scratch dir;
  const std::string missing = dir.file("x") + ".missing";
  auto s = probe_store(missing, {});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find(missing), std::string::npos) << s.error().message();
}

TEST(ProbeStore, ARealNonZonedLoopDeviceIsAPlainBlockDevice) {
  Scratch dir;
  const std::string backing = dir.file("loop.img", 8 << 20);
  test::LoopDevice loop(backing);
  if (!loop) GTEST_SKIP() << loop.missing();
  const std::string& dev = loop.path();
  StoreFacts f = read_store_facts(dev);
  auto s = probe_store(dev, {.read_only = true});
  EXPECT_TRUE(f.block_device);
  EXPECT_EQ(f.zoned_model, "none");
  EXPECT_EQ(f.zone_sectors, 0u);
  EXPECT_EQ(choose_store_kind(f), StoreKind::kPosix);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)->zones(), nullptr);
}

// A plain-mode layout over the whole image (no header), AES-XTS with a fixed key.
VolumeLayout plain_layout_for_test() {
  VolumeLayout l;
  l.type = VolumeType::kPlain;
  l.cipher = *crypto::CipherSpec::parse("aes-xts-plain64");
  l.key_bytes = 64;
  l.sector_size = 4096;
  l.data_offset_bytes = 4 << 20;  // past the conventional zones
  return l;
}

TEST(OpenUnlocked, AVolumeOnAnEmulatedZonedImageOrdersItsWritesAndOneOnAFileDoesNot) {
  Scratch dir;
  const std::array<std::byte, 64> key{};
  const std::string zoned = emulated_zoned(dir, "z.img");
  auto z = open_unlocked(zoned, plain_layout_for_test(), key, VolumeOptions{}, nullptr);
  ASSERT_TRUE(z) << z.error().message();
  EXPECT_TRUE((*z)->orders_writes());
  EXPECT_NE((*z)->zones(), nullptr);
  VolumeOptions unordered;
  unordered.unordered_zone_writes = true;  // the debug switch: then nothing is ordered
  z->reset();
  auto u = open_unlocked(zoned, plain_layout_for_test(), key, unordered, nullptr);
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_FALSE((*u)->orders_writes());
  auto f = open_unlocked(dir.file("f.img", 16 << 20), plain_layout_for_test(), key, VolumeOptions{},
                         nullptr);
  ASSERT_TRUE(f) << f.error().message();
  EXPECT_FALSE((*f)->orders_writes());
}

// A LUKS2 image file of `bytes` with passphrase "right" (fast pbkdf2).
void format_luks(const std::string& path) {
  PosixStoreOptions so;
  auto s = open_posix_store(path, so);
  ASSERT_TRUE(s) << s.error().message();
  LuksFormatOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  o.data_device_bytes = (*s)->size_bytes();
  auto r = luks_format(**s, o, bytes_of("right"));
  ASSERT_TRUE(r) << r.error().message();
}

TEST(OpenWithPassphrase, AFormattedImageOpensAndKeepsWhatWasWritten) {
  Scratch dir;
  const std::string img = dir.file("luks.img", 24 << 20);
  format_luks(img);
  const std::string text = "kept across opens";
  {
    auto v = open_with_passphrase({.image = img, .header = {}}, {}, bytes_of("right"),
                                  VolumeOptions{}, nullptr);
    ASSERT_TRUE(v) << v.error().message();
    EXPECT_EQ((*v)->size_bytes(), 8u << 20);  // 24 MiB minus the 16 MiB LUKS2 header
    ASSERT_TRUE((*v)->write(ByteOffset{12345}, bytes_of(text)));
    ASSERT_TRUE((*v)->flush());
  }
  VolumeOptions ro;
  ro.read_only = true;
  auto v = open_with_passphrase({.image = img, .header = {}}, {}, bytes_of("right"), ro, nullptr);
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_TRUE((*v)->read_only());
  std::string back(text.size(), '\0');
  auto n = (*v)->read(ByteOffset{12345}, {reinterpret_cast<std::byte*>(back.data()), back.size()});
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(back, text);
  auto wrong = open_with_passphrase({.image = img, .header = {}}, {}, bytes_of("wrong"),
                                    VolumeOptions{}, nullptr);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::kBadKey);
}

TEST(OpenWithPassphrase, AnImageCutBeforeItsDataSegmentDoesNotOpen) {
  Scratch dir;
  const std::string img = dir.file("cut.img", 24 << 20);
  format_luks(img);
  ASSERT_EQ(::truncate(img.c_str(), 16 << 20), 0);  // the header only
  auto v = open_with_passphrase({.image = img, .header = {}}, {}, bytes_of("right"),
                                VolumeOptions{}, nullptr);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Errc::kNoSpace);
  EXPECT_NE(v.error().message().find("too small"), std::string::npos) << v.error().message();
}

}  // namespace
}  // namespace cryptmap::volume

// The one unlock path (volume/format/unlock.h) on images formatted in memory: the header is
// checked before any passphrase, the image must hold the data segment (except for
// --test-passphrase), and one prepared header serves several passphrase attempts.
#include "volume/format/unlock.h"

#include <gtest/gtest.h>

#include <string>

#include "base/bytes.h"
#include "volume/format/luks_admin.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// A LUKS2 image of `bytes` formatted with passphrase "right" (fast pbkdf2, 16 MiB data offset).
std::unique_ptr<MemBackingStore> formatted(std::uint64_t bytes) {
  auto store = std::make_unique<MemBackingStore>(bytes, "mem:luks.img");
  LuksFormatOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  o.data_device_bytes = bytes;
  auto r = luks_format(*store, o, bytes_of("right"));
  EXPECT_TRUE(r) << r.error().message();
  return store;
}

TEST(Unlocker, OnePreparedHeaderServesAWrongThenARightPassphrase) {
  auto img = formatted(32 << 20);
  auto u = Unlocker::prepare(*img, *img, UnlockOptions{});
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->layout().type, VolumeType::kLuks2);
  auto wrong = u->unlock(bytes_of("wrong"));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::kBadKey);
  auto right = u->unlock(bytes_of("right"));
  ASSERT_TRUE(right) << right.error().message();
  EXPECT_EQ(right->keyslot, 0);
  EXPECT_EQ(right->layout.key_bytes, 64u);
  EXPECT_EQ(right->volume_key.size(), 64u);
}

TEST(Unlocker, AnImageCutBeforeItsDataSegmentIsRefusedBeforeAnyPassphrase) {
  auto full = formatted(32 << 20);
  const std::uint64_t data_off = Unlocker::prepare(*full, *full, {})->layout().data_offset_bytes;
  // The header alone: the same bytes up to the data offset, nothing after.
  MemBackingStore cut(data_off, "mem:cut.img");
  std::vector<std::byte> head(data_off);
  ASSERT_TRUE(full->read_at(ByteOffset{0}, head));
  ASSERT_TRUE(cut.write_at(ByteOffset{0}, head));
  auto u = Unlocker::prepare(cut, cut, UnlockOptions{});
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kNoSpace);
  const std::string msg = u.error().message();
  EXPECT_NE(msg.find("too small"), std::string::npos) << msg;
  EXPECT_NE(msg.find("mem:cut.img"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(data_off)), std::string::npos) << msg;
  // unlock_volume is the same path.
  EXPECT_EQ(unlock_volume(cut, cut, {}, bytes_of("right")).error().code, Errc::kNoSpace);
  // --test-passphrase checks the key only, as cryptsetup does.
  UnlockOptions key_only;
  key_only.key_only = true;
  auto k = unlock_volume(cut, cut, key_only, bytes_of("right"));
  ASSERT_TRUE(k) << k.error().message();
}

TEST(Unlocker, SomethingThatIsNotLuksIsInvalidBeforeAnyPassphrase) {
  MemBackingStore zeros(4 << 20, "mem:zeros.img");
  auto u = Unlocker::prepare(zeros, zeros, UnlockOptions{});
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kInvalid);
}

TEST(Unlocker, PlainModeHasItsLayoutBeforeThePassphraseAndItsKeyAfter) {
  MemBackingStore data(4 << 20, "mem:plain.img");
  UnlockOptions p;
  p.type = VolumeType::kPlain;
  p.plain.cipher = "aes-xts-plain64";
  p.plain.key_bits = 256;
  p.plain.hash = "sha256";
  p.plain.offset_sectors = 8;
  auto u = Unlocker::prepare(data, data, p);
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->layout().data_offset_bytes, 4096u);
  auto v = u->unlock(bytes_of("testpass"));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->keyslot, -1);
  EXPECT_EQ(to_hex(v->volume_key.span()),
            "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c");
  // An offset past the image is the options' error, found before any passphrase.
  p.plain.offset_sectors = 1u << 20;
  EXPECT_FALSE(Unlocker::prepare(data, data, p));
}

}  // namespace
}  // namespace cryptmap::volume

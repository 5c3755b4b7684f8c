// LUKS1/LUKS2 images made by the real cryptsetup 2.6.1: layouts, unlock with every KDF, keyslot
// selection and priorities, detached headers, the volume key against luksDump, and damaged
// copies of those images (label "interop").
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

#include "base/bytes.h"
#include "tests/support/cryptsetup.h"
#include "tests/support/data.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"
#include "volume/format/luks.h"
#include "volume/format/luks_admin.h"
#include "volume/format/unlock.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using test::run;

const char* kFastPbkdf2 = "--pbkdf pbkdf2 --pbkdf-force-iterations 1000";
const char* kFastArgon = "--pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4";

class LuksInteropTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const auto cs = test::find_tool("cryptsetup", "cryptsetup-bin"); !cs)
      GTEST_SKIP() << cs.missing;
    key_ = dir_.write("key", "correct horse battery staple");
    wrong_ = dir_.write("wrong", "correct horse battery stapler");
  }
  std::string format(const std::string& name, const std::string& args, std::uint64_t mib = 20) {
    const std::string img = dir_.file(name);
    run("truncate -s " + std::to_string(mib) + "M " + img);
    auto [rc, out, out_err] =
        run("cryptsetup luksFormat --batch-mode --key-file " + key_ + " " + args + " " + img);
    EXPECT_EQ(rc, 0) << "luksFormat " << args;
    return img;
  }
  std::unique_ptr<BackingStore> open(const std::string& path) {
    auto s = open_posix_store(path, PosixStoreOptions{.read_only = true});
    EXPECT_TRUE(s) << s.error().message();
    return std::move(*s);
  }
  // Loads `img` (header from `hdr` if given), unlocks with the key file and compares the key to
  // cryptsetup's dump.
  UnlockedKey unlock_and_compare(const std::string& img, const std::string& hdr = "",
                                 std::optional<int> slot = std::nullopt) {
    auto store = open(hdr.empty() ? img : hdr);
    auto h = load_luks_header(*store, std::nullopt);
    EXPECT_TRUE(h) << h.error().message();
    if (!h) return {};
    auto pass = test::read_file(key_);
    auto k = (*h)->unlock(pass, slot);
    EXPECT_TRUE(k) << k.error().message();
    if (!k) return {};
    const std::string want =
        test::dumped_volume_key(img, key_, hdr.empty() ? "" : "--header " + hdr);
    EXPECT_EQ(to_hex(k->volume_key.span()), want);
    return std::move(*k);
  }
  test::TempDir dir_;
  std::string key_, wrong_;
};

TEST_F(LuksInteropTest, Luks1DefaultLayoutAndKey) {
  auto img = format("l1.img", std::string("--type luks1 ") + kFastPbkdf2);
  auto store = open(img);
  auto h = load_luks_header(*store, std::nullopt);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ((*h)->type(), VolumeType::kLuks1);
  const VolumeLayout l = (*h)->layout();
  EXPECT_EQ(l.cipher.to_string(), "aes-xts-plain64");
  EXPECT_EQ(l.key_bytes, 64u);
  EXPECT_EQ(l.data_offset_bytes, 4096u * 512);
  EXPECT_EQ(l.sector_size, 512u);
  EXPECT_EQ(l.iv_offset, 0u);
  EXPECT_EQ(l.size_bytes, 0u);
  auto [rc, uuid, uuid_err] = run("cryptsetup luksUUID " + img);
  EXPECT_EQ(l.uuid + "\n", uuid);
  auto k = unlock_and_compare(img);
  EXPECT_EQ(k.keyslot, 0);
}

TEST_F(LuksInteropTest, Luks1Aes128AndSha1) {
  auto img =
      format("l1b.img", std::string("--type luks1 --key-size 256 --hash sha1 ") + kFastPbkdf2);
  auto k = unlock_and_compare(img);
  EXPECT_EQ(k.volume_key.size(), 32u);
}

TEST_F(LuksInteropTest, Luks2ArgonDefaultLayout) {
  auto img = format("l2.img", kFastArgon);
  auto store = open(img);
  auto h = load_luks_header(*store, VolumeType::kLuks2);
  ASSERT_TRUE(h) << h.error().message();
  const VolumeLayout l = (*h)->layout();
  EXPECT_EQ((*h)->type(), VolumeType::kLuks2);
  EXPECT_EQ(l.data_offset_bytes, 16u << 20);
  EXPECT_EQ(l.sector_size, 4096u);  // a regular file on a 4 KiB-block filesystem
  EXPECT_FALSE(l.iv_large_sectors);
  EXPECT_EQ(l.key_bytes, 64u);
  EXPECT_EQ(l.cipher.to_string(), "aes-xts-plain64");
  unlock_and_compare(img);
}

TEST_F(LuksInteropTest, Luks2Sector512AndLabel) {
  auto img = format("l2s.img",
                    std::string("--type luks2 --sector-size 512 --label mylabel ") + kFastPbkdf2);
  auto store = open(img);
  auto h = load_luks_header(*store, std::nullopt);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ((*h)->layout().sector_size, 512u);
  EXPECT_EQ((*h)->layout().label, "mylabel");
  unlock_and_compare(img);
}

TEST_F(LuksInteropTest, EveryKdfAndHash) {
  const char* variants[] = {
      "--pbkdf pbkdf2 --hash sha1 --pbkdf-force-iterations 1000",
      "--pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 1000",
      "--pbkdf pbkdf2 --hash sha512 --pbkdf-force-iterations 1000",
      "--pbkdf argon2i --pbkdf-memory 32768 --pbkdf-force-iterations 4",
      "--pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4 --pbkdf-parallel 1",
  };
  int i = 0;
  for (const char* v : variants) {
    SCOPED_TRACE(v);
    auto img = format("kdf" + std::to_string(i++) + ".img", std::string("--type luks2 ") + v);
    unlock_and_compare(img);
  }
}

TEST_F(LuksInteropTest, CbcEssivKeyslotCipher) {
  // The keyslot area is encrypted with the data cipher, here aes-cbc-essiv:sha256.
  auto img = format(
      "essiv.img",
      std::string("--type luks1 --cipher aes-cbc-essiv:sha256 --key-size 256 ") + kFastPbkdf2);
  unlock_and_compare(img);
}

TEST_F(LuksInteropTest, WrongPassphraseIsBadKey) {
  for (const char* type : {"luks1", "luks2"}) {
    auto img = format(std::string("w-") + type, std::string("--type ") + type + " " + kFastPbkdf2);
    auto store = open(img);
    auto h = load_luks_header(*store, std::nullopt);
    ASSERT_TRUE(h);
    auto k = (*h)->unlock(test::read_file(wrong_), std::nullopt);
    ASSERT_FALSE(k);
    EXPECT_EQ(k.error().code, Errc::kBadKey);
    EXPECT_NE(k.error().message().find("No key available with this passphrase."),
              std::string::npos);
    auto k2 = (*h)->unlock(test::read_file(wrong_), 0);
    ASSERT_FALSE(k2);
    EXPECT_EQ(k2.error().code, Errc::kBadKey);
  }
}

TEST_F(LuksInteropTest, KeySlotSelectionAndMultipleKeyslots) {
  for (const char* type : {"luks1", "luks2"}) {
    SCOPED_TRACE(type);
    auto img = format(std::string("ks-") + type,
                      std::string("--type ") + type + " --key-slot 5 " + kFastPbkdf2);
    const std::string second = dir_.write("second", "another secret");
    auto [rc, o, o_err] = run("cryptsetup luksAddKey --batch-mode " + std::string(kFastPbkdf2) +
                              " --key-slot 2 --key-file " + key_ + " " + img + " " + second);
    ASSERT_EQ(rc, 0);
    auto store = open(img);
    auto h = load_luks_header(*store, std::nullopt);
    ASSERT_TRUE(h) << h.error().message();
    auto k1 = (*h)->unlock(test::read_file(key_), std::nullopt);
    ASSERT_TRUE(k1);
    EXPECT_EQ(k1->keyslot, 5);
    auto k2 = (*h)->unlock(test::read_file(second), std::nullopt);
    ASSERT_TRUE(k2);
    EXPECT_EQ(k2->keyslot, 2);
    EXPECT_EQ(to_hex(k1->volume_key.span()), to_hex(k2->volume_key.span()));
    EXPECT_EQ(to_hex(k1->volume_key.span()), test::dumped_volume_key(img, key_));
    // Asking for the wrong slot fails even with a valid passphrase.
    auto k3 = (*h)->unlock(test::read_file(second), 5);
    ASSERT_FALSE(k3);
    EXPECT_EQ(k3.error().code, Errc::kBadKey);
    // An inactive slot: "No usable keyslot".
    auto k4 = (*h)->unlock(test::read_file(key_), 7);
    ASSERT_FALSE(k4);
    EXPECT_EQ(k4.error().code, Errc::kNotFound);
    auto k5 = (*h)->unlock(test::read_file(key_), 99);
    ASSERT_FALSE(k5);
    EXPECT_EQ(k5.error().code, Errc::kInvalid);
  }
}

TEST_F(LuksInteropTest, Luks2PriorityIgnoreIsSkippedUnlessNamed) {
  auto img = format("prio.img", std::string("--type luks2 ") + kFastPbkdf2);
  auto [rc, o, o_err] = run("cryptsetup config --priority ignore --key-slot 0 " + img);
  ASSERT_EQ(rc, 0);
  auto store = open(img);
  auto h = load_luks_header(*store, std::nullopt);
  ASSERT_TRUE(h) << h.error().message();
  auto any = (*h)->unlock(test::read_file(key_), std::nullopt);
  ASSERT_FALSE(any);
  EXPECT_EQ(any.error().code, Errc::kNotFound);
  auto named = (*h)->unlock(test::read_file(key_), 0);
  ASSERT_TRUE(named) << named.error().message();
}

TEST_F(LuksInteropTest, DetachedHeader) {
  for (const char* type : {"luks1", "luks2"}) {
    SCOPED_TRACE(type);
    const std::string img = dir_.file(std::string("data-") + type);
    const std::string hdr = dir_.file(std::string("hdr-") + type);
    run("truncate -s 8M " + img);
    auto [rc, o, o_err] =
        run("cryptsetup luksFormat --batch-mode --type " + std::string(type) + " " + kFastPbkdf2 +
            " --header " + hdr + " --key-file " + key_ + " " + img);
    ASSERT_EQ(rc, 0);
    auto store = open(hdr);
    auto h = load_luks_header(*store, std::nullopt);
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ((*h)->layout().data_offset_bytes, 0u);
    unlock_and_compare(img, hdr);
  }
}

TEST_F(LuksInteropTest, ExpectedTypeMismatchIsNotLuks) {
  auto img = format("t.img", std::string("--type luks2 ") + kFastPbkdf2);
  auto store = open(img);
  auto h = load_luks_header(*store, VolumeType::kLuks1);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kInvalid);
}

TEST_F(LuksInteropTest, UnlockVolumeApi) {
  const std::string img = dir_.file("uv-data");
  const std::string hdr = dir_.file("uv-hdr");
  run("truncate -s 8M " + img);
  ASSERT_EQ(run("cryptsetup luksFormat --batch-mode --type luks2 " + std::string(kFastPbkdf2) +
                " --header " + hdr + " --key-file " + key_ + " " + img)
                .status,
            0);
  auto hs = open(hdr);
  auto ds = open(img);
  UnlockOptions o;
  auto v = unlock_volume(*hs, *ds, o, test::read_file(key_));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->keyslot, 0);
  EXPECT_EQ(v->layout.key_bytes, 64u);
  EXPECT_EQ(to_hex(v->volume_key.span()), test::dumped_volume_key(img, key_, "--header " + hdr));
  o.type = VolumeType::kLuks1;
  auto wrong_type = unlock_volume(*hs, *ds, o, test::read_file(key_));
  ASSERT_FALSE(wrong_type);
  EXPECT_EQ(wrong_type.error().code, Errc::kInvalid);
  // Data offset beyond a too-small data image (in-image header, image cut after the header).
  auto full = format("uv-small", std::string("--type luks2 ") + kFastPbkdf2);
  run("truncate -s 16M " + full);
  auto fs = open(full);
  auto small = unlock_volume(*fs, *fs, UnlockOptions{}, test::read_file(key_));
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().code, Errc::kNoSpace);
  // Plain mode: the key is the hashed passphrase, the layout the options.
  UnlockOptions p;
  p.type = VolumeType::kPlain;
  p.plain.cipher = "aes-xts-plain64";
  p.plain.key_bits = 256;
  p.plain.hash = "sha256";
  p.plain.offset_sectors = 8;
  auto pv = unlock_volume(*ds, *ds, p, as_bytes(std::string("testpass")));
  ASSERT_TRUE(pv) << pv.error().message();
  EXPECT_EQ(to_hex(pv->volume_key.span()),
            "13d249f2cb4127b40cfa757866850278793f814ded3c587fe5889e889a7a9f6c");
  EXPECT_EQ(pv->layout.data_offset_bytes, 4096u);
  EXPECT_EQ(pv->layout.type, VolumeType::kPlain);
}

TEST_F(LuksInteropTest, ReencryptionInProgressIsRefusedButDumpable) {
  const std::string img = dir_.file("reenc.img");
  run("truncate -s 40M " + img);
  ASSERT_EQ(
      run("cryptsetup reencrypt --encrypt --init-only --type luks2 --reduce-device-size 32M " +
          std::string(kFastPbkdf2) + " --batch-mode --key-file " + key_ + " " + img)
          .status,
      0);
  auto store = open(img);
  auto h = load_luks_header(*store, std::nullopt);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kUnsupported);
  EXPECT_NE(h.error().message().find("reencryption"), std::string::npos) << h.error().message();
  auto dump = luks_dump(*store);  // inspection still works
  ASSERT_TRUE(dump) << dump.error().message();
  EXPECT_NE(dump->find("Requirements:\tonline-reencrypt-v2"), std::string::npos) << *dump;
  EXPECT_TRUE(is_luks(*store));
}

TEST_F(LuksInteropTest, ConvertedLuks2ToLuks1AndBack) {
  auto img = format("conv.img", std::string("--type luks2 --sector-size 512 ") + kFastPbkdf2);
  const std::string before = test::dumped_volume_key(img, key_);
  ASSERT_EQ(run("cryptsetup convert --batch-mode --type luks1 " + img).status, 0);
  {
    auto store = open(img);
    auto h = load_luks_header(*store, std::nullopt);
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ((*h)->type(), VolumeType::kLuks1);
    EXPECT_EQ((*h)->layout().data_offset_bytes, 16u << 20);
    auto k = (*h)->unlock(test::read_file(key_), std::nullopt);
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_EQ(to_hex(k->volume_key.span()), before);
  }
  ASSERT_EQ(run("cryptsetup convert --batch-mode --type luks2 " + img).status, 0);
  auto store = open(img);
  auto h = load_luks_header(*store, VolumeType::kLuks2);
  ASSERT_TRUE(h) << h.error().message();
  auto k = (*h)->unlock(test::read_file(key_), std::nullopt);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(to_hex(k->volume_key.span()), before);
}

// --- damaged copies of real images ---------------------------------------------------------

class LuksHostileTest : public LuksInteropTest {
 protected:
  std::string damaged(const std::string& img, const std::string& name,
                      std::function<void(std::vector<std::byte>&)> edit) {
    auto bytes = test::read_file(img);
    edit(bytes);
    const std::string out = dir_.file(name);
    test::write_file(out, bytes);
    return out;
  }
  Result<std::unique_ptr<LuksHeader>> load(const std::string& path) {
    auto s = open(path);
    return load_luks_header(*s, std::nullopt);
  }
};

TEST_F(LuksHostileTest, PrimaryDamagedUsesSecondary) {
  auto img = format("p.img", std::string("--type luks2 ") + kFastPbkdf2);
  auto bad = damaged(img, "p-bad.img", [](auto& b) { b[4096 + 10] ^= std::byte{0x20}; });
  auto h = load(bad);
  ASSERT_TRUE(h) << h.error().message();
  auto k = (*h)->unlock(test::read_file(key_), std::nullopt);
  ASSERT_TRUE(k);
  EXPECT_EQ(to_hex(k->volume_key.span()), test::dumped_volume_key(img, key_));
  // cryptsetup agrees that the image is still usable.
  EXPECT_EQ(run("cryptsetup isLuks " + bad).status, 0);
}

TEST_F(LuksHostileTest, PrimaryMagicWipedUsesSecondary) {
  auto img = format("m.img", std::string("--type luks2 ") + kFastPbkdf2);
  auto bad =
      damaged(img, "m-bad.img", [](auto& b) { std::fill(b.begin(), b.begin() + 8, std::byte{0}); });
  auto h = load(bad);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_TRUE((*h)->unlock(test::read_file(key_), std::nullopt));
}

TEST_F(LuksHostileTest, BothCopiesDamagedIsCorrupt) {
  auto img = format("b.img", std::string("--type luks2 ") + kFastPbkdf2);
  auto bad = damaged(img, "b-bad.img", [](auto& b) {
    b[200] ^= std::byte{1};
    b[16384 + 200] ^= std::byte{1};
  });
  auto h = load(bad);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kCorrupt);
  EXPECT_NE(h.error().message().find("checksum"), std::string::npos) << h.error().message();
}

TEST_F(LuksHostileTest, BadMagicEverywhereIsNotLuks) {
  auto img = format("n.img", std::string("--type luks2 ") + kFastPbkdf2);
  auto bad = damaged(img, "n-bad.img", [](auto& b) {
    b[0] = std::byte{'X'};
    b[16384] = std::byte{'X'};
  });
  auto h = load(bad);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kInvalid);
  EXPECT_NE(h.error().message().find("is not a valid LUKS device"), std::string::npos);
}

TEST_F(LuksHostileTest, TruncatedImages) {
  for (const char* type : {"luks1", "luks2"}) {
    auto img = format(std::string("tr-") + type, std::string("--type ") + type + " " + kFastPbkdf2);
    for (std::size_t len :
         {std::size_t{100}, std::size_t{1024}, std::size_t{8192}, std::size_t{40000}}) {
      SCOPED_TRACE(std::string(type) + " " + std::to_string(len));
      auto bad = damaged(img, "tr.img", [len](auto& b) { b.resize(len); });
      auto h = load(bad);
      ASSERT_FALSE(h);
      EXPECT_TRUE(h.error().code == Errc::kCorrupt) << h.error().message();
    }
  }
}

TEST_F(LuksHostileTest, Luks1KeyslotOverlapAndStripes) {
  auto img = format("l1o.img", std::string("--type luks1 ") + kFastPbkdf2);
  auto overlap = damaged(img, "l1o-bad.img", [](auto& b) {
    store_be32(b.data() + 208 + 48 * 1 + 40, 9);  // slot 1 area inside slot 0's
  });
  auto h = load(overlap);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kCorrupt);
  auto stripes =
      damaged(img, "l1s-bad.img", [](auto& b) { store_be32(b.data() + 208 + 44, 3999); });
  auto h2 = load(stripes);
  ASSERT_FALSE(h2);
  EXPECT_EQ(h2.error().code, Errc::kCorrupt);
  auto beyond = damaged(img, "l1p-bad.img", [](auto& b) { store_be32(b.data() + 104, 100); });
  ASSERT_FALSE(load(beyond));
  auto hash = damaged(img, "l1h-bad.img", [](auto& b) { std::memcpy(b.data() + 72, "md4\0", 4); });
  auto h4 = load(hash);
  ASSERT_FALSE(h4);
  EXPECT_EQ(h4.error().code, Errc::kUnsupported);
  // cryptsetup rejects the same headers.
  for (const auto& p : {overlap, stripes, beyond})
    EXPECT_NE(run("cryptsetup luksDump " + p).status, 0) << p;
}

}  // namespace
}  // namespace cryptmap::volume

// Header management against the real cryptsetup 2.6.1 (label "interop"): images cryptmap
// formats pass luksDump / open --test-passphrase / luksAddKey and dump the key we generated;
// keyslot edits on cryptsetup-made images are seen by cryptsetup; dumps match byte for byte.
#include <gtest/gtest.h>

#include <cstring>
#include <tuple>

#include "base/bytes.h"
#include "tests/support/cryptsetup.h"
#include "tests/support/data.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/luks.h"
#include "volume/format/luks_admin.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using test::run;

class LuksAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const auto cs = test::find_tool("cryptsetup", "cryptsetup-bin"); !cs)
      GTEST_SKIP() << cs.missing;
    key_ = dir_.write("key", "first passphrase");
    key2_ = dir_.write("key2", "second passphrase");
    key3_ = dir_.write("key3", "third passphrase");
  }
  std::unique_ptr<BackingStore> rw(const std::string& path) {
    auto s = open_posix_store(path, PosixStoreOptions{});
    EXPECT_TRUE(s) << s.error().message();
    return std::move(*s);
  }
  std::string blank(const std::string& name, std::uint64_t mib) {
    const std::string p = dir_.file(name);
    run("truncate -s " + std::to_string(mib) + "M " + p);
    return p;
  }
  std::string cs_format(const std::string& name, const std::string& args) {
    auto p = blank(name, 20);
    EXPECT_EQ(run("cryptsetup luksFormat --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
                  "--key-file " +
                  key_ + " " + args + " " + p)
                  .status,
              0);
    return p;
  }
  int test_pass(const std::string& img, const std::string& key, const std::string& extra = "") {
    return run("cryptsetup open --test-passphrase --key-file " + key + " " + extra + " " + img)
        .status;
  }
  static PbkdfOptions fast() {
    PbkdfOptions p;
    p.type = "pbkdf2";
    p.force_iterations = 1000;
    return p;
  }
  test::TempDir dir_;
  std::string key_, key2_, key3_;
};

TEST_F(LuksAdminTest, FormattedImagesWorkWithCryptsetup) {
  struct Case {
    VolumeType type;
    const char* pbkdf;
    std::uint32_t sector;
    const char* cipher;
    std::uint32_t bits;
  } cases[] = {
      {VolumeType::kLuks2, "pbkdf2", 0, "aes-xts-plain64", 512},
      {VolumeType::kLuks2, "argon2id", 512, "aes-xts-plain64", 256},
      {VolumeType::kLuks2, "argon2i", 4096, "aes-xts-plain64", 512},
      {VolumeType::kLuks1, "pbkdf2", 0, "aes-xts-plain64", 512},
      {VolumeType::kLuks1, "pbkdf2", 0, "aes-xts-plain64", 256},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(volume_type_name(c.type)) + " " + c.pbkdf + " " +
                 std::to_string(c.sector));
    auto img = blank("f" + std::to_string(n++), 20);
    LuksFormatOptions o;
    o.type = c.type;
    o.cipher = c.cipher;
    o.key_bits = c.bits;
    o.pbkdf.type = c.pbkdf;
    o.pbkdf.force_iterations = std::string(c.pbkdf) == "pbkdf2" ? 1000 : 4;
    o.pbkdf.memory_kib = 32768;
    o.sector_size = c.sector;
    o.data_device_bytes = 20u << 20;
    o.label = c.type == VolumeType::kLuks2 ? "lbl" : "";
    auto store = rw(img);
    auto r = luks_format(*store, o, test::bytes_of(std::string("first passphrase")));
    ASSERT_TRUE(r) << r.error().message();
    store.reset();
    EXPECT_EQ(run("cryptsetup luksDump " + img).status, 0);
    EXPECT_EQ(test_pass(img, key_), 0);
    EXPECT_NE(test_pass(img, key2_), 0);
    EXPECT_EQ(test::dumped_volume_key(img, key_), to_hex(r->volume_key.span()));
    auto [uuid_rc, uuid, uuid_err] = run("cryptsetup luksUUID " + img);
    EXPECT_EQ(uuid, r->uuid + "\n");
    // cryptsetup can add a key to what we wrote, and we read its change.
    EXPECT_EQ(run("cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
                  "--key-file " +
                  key_ + " " + img + " " + key2_)
                  .status,
              0);
    auto ro = rw(img);
    auto h = load_luks_header(*ro, std::nullopt);
    ASSERT_TRUE(h) << h.error().message();
    auto k = (*h)->unlock(test::read_file(key2_), std::nullopt);
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_EQ(to_hex(k->volume_key.span()), to_hex(r->volume_key.span()));
    if (c.type == VolumeType::kLuks2 && c.sector) {
      EXPECT_EQ((*h)->layout().sector_size, c.sector);
    }
    EXPECT_EQ((*h)->layout().data_offset_bytes,
              c.type == VolumeType::kLuks1 ? 4096u * 512 : 16u << 20);
  }
}

TEST_F(LuksAdminTest, DetachedHeaderFormat) {
  for (VolumeType t : {VolumeType::kLuks1, VolumeType::kLuks2}) {
    SCOPED_TRACE(volume_type_name(t));
    auto data = blank(std::string("dd") + volume_type_name(t), 4);
    const std::string hdr = dir_.file(std::string("hh") + volume_type_name(t));
    LuksFormatOptions o;
    o.type = t;
    o.pbkdf = fast();
    o.detached_header = true;
    o.data_device_bytes = 4u << 20;
    auto need = luks_header_bytes(o);
    ASSERT_TRUE(need);
    run("truncate -s " + std::to_string(*need) + " " + hdr);
    auto store = rw(hdr);
    auto r = luks_format(*store, o, test::bytes_of(std::string("first passphrase")));
    ASSERT_TRUE(r) << r.error().message();
    store.reset();
    EXPECT_EQ(test_pass(data, key_, "--header " + hdr), 0);
    EXPECT_EQ(test::dumped_volume_key(data, key_, "--header " + hdr), to_hex(r->volume_key.span()));
  }
}

// A store that reports an optimal I/O size (an RBD image's object size, a RAID's stripe).
class TopologyStore final : public BackingStore {
 public:
  TopologyStore(BackingStore& s, std::uint64_t io) : s_(s), io_(io) {}
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return s_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    return s_.write_at(off, in);
  }
  Result<void> sync() override { return s_.sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t len) override { return s_.discard(off, len); }
  std::uint64_t size_bytes() const noexcept override { return s_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  std::uint64_t optimal_io_bytes() const noexcept override { return io_; }
  const std::string& name() const noexcept override { return s_.name(); }

 private:
  BackingStore& s_;
  std::uint64_t io_;
};

// --align-payload and the store's topology place the data as cryptsetup 2.6.1 does
// (device_topology_alignment: an optimal I/O size that does not divide 1 MiB is the alignment).
TEST_F(LuksAdminTest, PayloadAlignmentAsCryptsetup) {
  auto data_offset = [&](const std::string& img, const std::string& header_opt = "") {
    auto [rc, out, err] = run("cryptsetup luksDump " + header_opt + " " + img);
    EXPECT_EQ(rc, 0) << err;
    auto at = out.find("Payload offset:");
    if (at != std::string::npos) return std::stoull(out.substr(at + 15)) * 512;
    at = out.find("\toffset: ");
    return at == std::string::npos ? 0ull : std::stoull(out.substr(at + 9));
  };
  int n = 0;
  for (const char* type : {"luks1", "luks2"}) {
    const VolumeType t = std::string(type) == "luks1" ? VolumeType::kLuks1 : VolumeType::kLuks2;
    for (std::uint64_t align : {8192u, 65536u, 3000u}) {
      SCOPED_TRACE(std::string(type) + " --align-payload " + std::to_string(align));
      const auto theirs = blank("cs" + std::to_string(++n), 40);
      ASSERT_EQ(run("cryptsetup luksFormat --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations "
                    "1000 --type " +
                    std::string(type) + " --align-payload " + std::to_string(align) +
                    " --key-file " + key_ + " " + theirs)
                    .status,
                0);
      const auto mine = blank("cm" + std::to_string(n), 40);
      LuksFormatOptions o;
      o.type = t;
      o.pbkdf = fast();
      o.align_payload_sectors = align;
      o.data_device_bytes = 40u << 20;
      auto r = luks_format(*rw(mine), o, test::bytes_of(std::string("first passphrase")));
      ASSERT_TRUE(r) << r.error().message();
      EXPECT_EQ(data_offset(mine), data_offset(theirs));
      EXPECT_EQ(test_pass(mine, key_), 0);
    }
    // A detached header: --align-payload is the data offset.
    SCOPED_TRACE(std::string(type) + " detached");
    const std::string hdr = dir_.file(std::string("hdr-") + type);
    LuksFormatOptions o;
    o.type = t;
    o.pbkdf = fast();
    o.detached_header = true;
    o.align_payload_sectors = 8192;
    auto need = luks_header_bytes(o);
    ASSERT_TRUE(need);
    run("truncate -s " + std::to_string(*need) + " " + hdr);
    auto fr = luks_format(*rw(hdr), o, test::bytes_of(std::string("first passphrase")));
    ASSERT_TRUE(fr) << fr.error().message();
    EXPECT_EQ(data_offset(hdr), 8192u * 512);
    // The store's optimal I/O size: 512 KiB divides 1 MiB (default kept), 4 and 32 MiB do not.
    for (auto [io, want1, want2] : {std::tuple{512ull << 10, 2ull << 20, 16ull << 20},
                                    std::tuple{4ull << 20, 4ull << 20, 16ull << 20},
                                    std::tuple{32ull << 20, 32ull << 20, 32ull << 20}}) {
      SCOPED_TRACE(std::string(type) + " optimal I/O " + std::to_string(io));
      const auto img = blank("io" + std::to_string(++n), 40);
      auto base = rw(img);
      TopologyStore topo(*base, io);
      LuksFormatOptions f;
      f.type = t;
      f.pbkdf = fast();
      f.data_device_bytes = 40u << 20;
      ASSERT_TRUE(luks_format(topo, f, test::bytes_of(std::string("first passphrase"))));
      base.reset();
      EXPECT_EQ(data_offset(img), t == VolumeType::kLuks1 ? want1 : want2);
    }
  }
}

TEST_F(LuksAdminTest, KeyslotEditsOnCryptsetupImages) {
  for (const char* type : {"luks1", "luks2"}) {
    SCOPED_TRACE(type);
    auto img = cs_format(std::string("e-") + type, std::string("--type ") + type);
    auto s = rw(img);
    auto added =
        luks_add_key(*s, test::read_file(key_), std::nullopt, test::read_file(key2_), 4, fast());
    ASSERT_TRUE(added) << added.error().message();
    EXPECT_EQ(*added, 4);
    EXPECT_EQ(test_pass(img, key2_, "--key-slot 4"), 0);
    EXPECT_EQ(test_pass(img, key_), 0);
    // Change key 2 -> key 3.
    auto changed =
        luks_change_key(*s, test::read_file(key2_), std::nullopt, test::read_file(key3_), fast());
    ASSERT_TRUE(changed) << changed.error().message();
    EXPECT_EQ(test_pass(img, key3_), 0);
    EXPECT_NE(test_pass(img, key2_), 0);
    // Remove key 1; only key 3 remains.
    auto removed = luks_remove_key(*s, test::read_file(key_));
    ASSERT_TRUE(removed) << removed.error().message();
    EXPECT_EQ(*removed, 0);
    EXPECT_NE(test_pass(img, key_), 0);
    EXPECT_EQ(test_pass(img, key3_), 0);
    // Kill the remaining slot; nothing opens; killing again is kNotFound.
    auto k = luks_kill_slot(*s, *changed);
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_NE(test_pass(img, key3_), 0);
    auto again = luks_kill_slot(*s, *changed);
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::kNotFound);
    EXPECT_EQ(run("cryptsetup luksDump " + img).status, 0);
  }
}

TEST_F(LuksAdminTest, AddKeyWithWrongPassphraseChangesNothing) {
  auto img = cs_format("w", "--type luks2");
  const auto before = test::read_file(img);
  auto s = rw(img);
  auto r = luks_add_key(*s, test::read_file(key3_), std::nullopt, test::read_file(key2_),
                        std::nullopt, fast());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBadKey);
  EXPECT_TRUE(before == test::read_file(img));
}

TEST_F(LuksAdminTest, DumpMatchesCryptsetup) {
  for (const char* type : {"luks1", "luks2"}) {
    SCOPED_TRACE(type);
    auto img = cs_format(std::string("d-") + type, std::string("--type ") + type + " --key-slot 3");
    ASSERT_EQ(run("cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
                  "--key-file " +
                  key_ + " " + img + " " + key2_)
                  .status,
              0);
    if (std::string(type) == "luks2") {
      // Tokens on two keyslots and on none: one "Keyslot:" line per keyslot, as cryptsetup.
      const std::string two = dir_.write("t2.json", R"({"type":"x","keyslots":["3","0"]})");
      const std::string none = dir_.write("t0.json", R"({"type":"y","keyslots":[]})");
      ASSERT_EQ(run("cryptsetup token import --token-id 1 --json-file " + two + " " + img).status,
                0);
      ASSERT_EQ(run("cryptsetup token import --token-id 4 --json-file " + none + " " + img).status,
                0);
    }
    auto s = rw(img);
    auto mine = luks_dump(*s);
    ASSERT_TRUE(mine) << mine.error().message();
    auto [rc, theirs, theirs_err] = run("cryptsetup luksDump " + img);
    EXPECT_EQ(*mine, theirs);
    if (std::string(type) == "luks2") {
      auto mj = luks_dump(*s, true);
      ASSERT_TRUE(mj);
      EXPECT_EQ(*mj, run("cryptsetup luksDump --dump-json-metadata " + img).out);
    }
  }
}

TEST_F(LuksAdminTest, UuidIsLuksBackupRestoreRepair) {
  for (const char* type : {"luks1", "luks2"}) {
    SCOPED_TRACE(type);
    auto img = cs_format(std::string("u-") + type, std::string("--type ") + type);
    auto s = rw(img);
    EXPECT_TRUE(is_luks(*s));
    const std::string u = "01234567-89ab-4cde-8f01-23456789abcd";
    auto set = luks_set_uuid(*s, u);
    ASSERT_TRUE(set) << set.error().message();
    EXPECT_EQ(run("cryptsetup luksUUID " + img).out, u + "\n");
    EXPECT_FALSE(luks_set_uuid(*s, "not-a-uuid"));
    // Backup with us, restore with cryptsetup onto a wiped copy.
    const std::string bk = dir_.file(std::string("bk-") + type);
    ASSERT_TRUE(luks_header_backup(*s, bk));
    EXPECT_FALSE(luks_header_backup(*s, bk));  // exists: refused
    run("cp " + img + " " + img + ".2");
    run("dd if=/dev/zero of=" + img + ".2 bs=4096 count=1 conv=notrunc status=none");
    if (std::string(type) == "luks2")
      run("dd if=/dev/zero of=" + img + ".2 bs=4096 seek=4 count=1 conv=notrunc status=none");
    EXPECT_NE(test_pass(img + ".2", key_), 0);
    EXPECT_EQ(run("cryptsetup luksHeaderRestore --batch-mode --header-backup-file " + bk + " " +
                  img + ".2")
                  .status,
              0);
    EXPECT_EQ(test_pass(img + ".2", key_), 0);
    // Backup with cryptsetup, restore with us.
    const std::string bk2 = dir_.file(std::string("bk2-") + type);
    ASSERT_EQ(run("cryptsetup luksHeaderBackup --header-backup-file " + bk2 + " " + img).status, 0);
    run("cp " + img + " " + img + ".3");
    run("dd if=/dev/zero of=" + img + ".3 bs=512 count=1 conv=notrunc status=none");
    auto s3 = rw(img + ".3");
    EXPECT_FALSE(is_luks(*s3) && std::string(type) == "luks1");
    auto rr = luks_header_restore(*s3, bk2);
    ASSERT_TRUE(rr) << rr.error().message();
    EXPECT_EQ(test_pass(img + ".3", key_), 0);
  }
}

TEST_F(LuksAdminTest, RepairRewritesDamagedCopy) {
  auto img = cs_format("r", "--type luks2");
  run("printf 'XXXX' | dd of=" + img + " bs=1 seek=300 conv=notrunc status=none");
  auto s = rw(img);
  auto before = luks2::read_luks2_header(*s, img);
  ASSERT_TRUE(before);
  EXPECT_NE(before->primary, luks2::CopyState::kOk);
  auto r = luks_repair(*s);
  ASSERT_TRUE(r) << r.error().message();
  auto after = luks2::read_luks2_header(*s, img);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->primary, luks2::CopyState::kOk);
  EXPECT_EQ(after->secondary, luks2::CopyState::kOk);
  EXPECT_EQ(test_pass(img, key_), 0);
}

TEST_F(LuksAdminTest, RewriteKeepsUnknownTokens) {
  auto img = cs_format("tok", "--type luks2");
  const std::string tok = dir_.write(
      "tok.json",
      R"({"type":"cryptmap-test","keyslots":["0"],"opaque":{"a":[1,2,{"b":"c"}],"s":"x/y"}})");
  ASSERT_EQ(run("cryptsetup token import --token-id 5 --json-file " + tok + " " + img).status, 0);
  auto s = rw(img);
  ASSERT_TRUE(luks_add_key(*s, test::read_file(key_), std::nullopt, test::read_file(key2_),
                           std::nullopt, fast()));
  auto [rc, out, out_err] = run("cryptsetup token export --token-id 5 " + img);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(
      out, R"({"type":"cryptmap-test","keyslots":["0"],"opaque":{"a":[1,2,{"b":"c"}],"s":"x/y"}})");
  // Killing slot 0 drops it from the token's keyslot list, as cryptsetup does.
  ASSERT_TRUE(luks_kill_slot(*s, 0));
  EXPECT_EQ(run("cryptsetup token export --token-id 5 " + img).out,
            R"({"type":"cryptmap-test","keyslots":[],"opaque":{"a":[1,2,{"b":"c"}],"s":"x/y"}})");
  EXPECT_EQ(test_pass(img, key2_), 0);
}

TEST_F(LuksAdminTest, ConfigWritesWhatCryptsetupWrites) {
  auto img = cs_format("cfg", "--type luks2");
  run("cp " + img + " " + img + ".cs");
  auto s = rw(img);
  LuksConfig c;
  c.label = "lbl";
  c.priority_slot = 0;
  c.priority = 2;
  auto r = luks_config(*s, c);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(
      run("cryptsetup config --priority prefer --key-slot 0 --label lbl " + img + ".cs").status, 0);
  EXPECT_EQ(run("cmp " + img + " " + img + ".cs").status, 0) << "differs from cryptsetup's";
  const std::string dump = run("cryptsetup luksDump " + img).out;
  EXPECT_NE(dump.find("Label:         \tlbl\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("Priority:   preferred"), std::string::npos) << dump;
  EXPECT_EQ(test_pass(img, key_), 0);

  const std::string before = run("sha256sum < " + img).out;
  LuksConfig missing;
  missing.priority_slot = 7;  // not in use
  EXPECT_FALSE(luks_config(*s, missing));
  LuksConfig too_long;
  too_long.subsystem = std::string(48, 's');
  EXPECT_FALSE(luks_config(*s, too_long));
  EXPECT_EQ(run("sha256sum < " + img).out, before) << "a refused config wrote";

  auto l1 = cs_format("cfg1", "--type luks1");
  auto s1 = rw(l1);
  LuksConfig label;
  label.label = "x";
  auto refused = luks_config(*s1, label);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::kInvalid);
}

}  // namespace
}  // namespace cryptmap::volume

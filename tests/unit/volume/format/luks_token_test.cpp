// LUKS2 token import/export/remove (volume/format/luks_token.h) on in-memory headers made by our
// luksFormat: the JSON as json-c writes it, the id and keyslot rules, the 32-token limit, the
// header writes each edit makes, refusals that write nothing. tests/integration/luks_token.sh
// checks the same edits byte for byte against cryptsetup.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "volume/format/internal/luks2_disk.h"
#include "volume/format/luks_admin.h"
#include "volume/format/luks_token.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint64_t kHeaderBytes = 576 * 512;

class LuksTokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LuksFormatOptions o;
    o.type = VolumeType::kLuks2;
    o.pbkdf.type = "pbkdf2";
    o.pbkdf.force_iterations = 1000;
    o.offset_sectors = kHeaderBytes / 512;
    o.data_device_bytes = store_.size_bytes();
    auto r = luks_format(store_, o, std::as_bytes(std::span("pass", 4)));
    ASSERT_TRUE(r) << r.error().message();
  }
  std::vector<std::byte> bytes() const {
    std::vector<std::byte> b(kHeaderBytes);
    EXPECT_TRUE(store_.read_at(ByteOffset{0}, b));
    return b;
  }
  std::uint64_t seqid() const {
    auto d = luks2::read_luks2_header(store_, "mem");
    EXPECT_TRUE(d);
    return d ? d->bin.seqid : 0;
  }
  Result<int> import(const std::string& json, std::optional<int> id = std::nullopt,
                     bool replace = false, std::optional<int> keyslot = std::nullopt) {
    return luks_token_import(store_, json, TokenImport{id, replace, keyslot});
  }
  MemBackingStore store_{kHeaderBytes + (64u << 10), "mem:token"};
};

TEST_F(LuksTokenTest, ExportsTheTokenAsJsonCWritesIt) {
  auto id = import(
      " { \"type\" : \"x-test\", \"keyslots\" : [ \"0\" ],\n \"p\" : \"a\\/b\\u00e9\\u0001\","
      " \"n\" : [ -1, 18446744073709551615, true, null, { } ] }\n");
  ASSERT_TRUE(id) << id.error().message();
  EXPECT_EQ(*id, 0);
  auto text = luks_token_export(store_, 0);
  ASSERT_TRUE(text);
  EXPECT_EQ(*text,
            "{\"type\":\"x-test\",\"keyslots\":[\"0\"],\"p\":\"a/b\xc3\xa9\\u0001\","
            "\"n\":[-1,18446744073709551615,true,null,{}]}");
  auto list = luks_tokens(store_);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].type, "x-test");
  EXPECT_EQ((*list)[0].keyslots, std::vector<int>{0});
}

TEST_F(LuksTokenTest, TakesTheFirstFreeIdAndRefusesAThirtyThirdToken) {
  const std::string t = R"({"type":"x","keyslots":[]})";
  ASSERT_TRUE(import(t, 1));
  EXPECT_EQ(*import(t), 0);
  EXPECT_EQ(*import(t), 2);
  for (int i = 3; i < 32; ++i) ASSERT_TRUE(import(t, i)) << i;
  const auto before = bytes();
  auto r = import(t);
  ASSERT_FALSE(r);
  EXPECT_NE(std::string(r.error().detail_view()).find("all 32 token ids are in use"),
            std::string::npos);
  EXPECT_EQ(bytes(), before);
}

TEST_F(LuksTokenTest, RefusesATokenInUseUnlessReplaced) {
  ASSERT_TRUE(import(R"({"type":"a","keyslots":[]})", 4));
  auto r = import(R"({"type":"b","keyslots":[]})", 4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail_view(), "Token 4 in use.");
  ASSERT_TRUE(import(R"({"type":"b","keyslots":[]})", 4, true));
  EXPECT_EQ(*luks_token_export(store_, 4), R"({"type":"b","keyslots":[]})");
}

TEST_F(LuksTokenTest, AssigningAKeyslotIsASecondHeaderWrite) {
  const std::uint64_t s0 = seqid();
  ASSERT_TRUE(import(R"({"type":"a","keyslots":[]})", std::nullopt, false, 0));
  EXPECT_EQ(seqid(), s0 + 2);  // as cryptsetup: import, then crypt_token_assign_keyslot
  EXPECT_EQ(*luks_token_export(store_, 0), R"({"type":"a","keyslots":["0"]})");
  ASSERT_TRUE(import(R"({"type":"b","keyslots":["0"]})", std::nullopt, false, 0));
  EXPECT_EQ(*luks_token_export(store_, 1), R"({"type":"b","keyslots":["0"]})");  // not twice
  EXPECT_EQ(seqid(), s0 + 4);
}

TEST_F(LuksTokenTest, RefusedImportsWriteNothing) {
  const auto before = bytes();
  const std::pair<std::string, const char*> cases[] = {
      {"[1]", "one JSON object"},
      {R"({"type":"x","keyslots":[])", "one JSON object"},
      {R"({"keyslots":[]})", "non-empty string"},
      {R"({"type":"","keyslots":[]})", "non-empty string"},
      {R"({"type":"x","keyslots":["1"]})", "existing keyslots"},
      {R"({"type":"x","keyslots":[0]})", "existing keyslots"},
      {R"({"type":"x","keyslots":"0"})", "existing keyslots"},
      {R"({"type":"luks2-tpm","keyslots":[]})", "reserved for built-in"},
      {R"({"type":"luks2-keyring","keyslots":[],"key_description":7})", "key_description"},
      {R"({"type":"x","keyslots":[],"pad":")" + std::string(20000, 'a') + "\"}", "no room"},
      {R"({"type":"x","keyslots":[],"d":)" + std::string(31, '[') + std::string(31, ']') + "}",
       "nested"},
  };
  for (const auto& [json, why] : cases) {
    auto r = import(json);
    ASSERT_FALSE(r) << json;
    EXPECT_NE(std::string(r.error().detail_view()).find(why), std::string::npos)
        << json << ": " << r.error().message();
  }
  for (int bad : {-1, 32}) {
    auto r = import(R"({"type":"x","keyslots":[]})", bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().detail_view(), "Token " + std::to_string(bad) + " is invalid.");
  }
  auto r = import(R"({"type":"x","keyslots":[]})", std::nullopt, false, 3);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail_view(), "Keyslot 3 is not active.");
  EXPECT_EQ(bytes(), before);
}

TEST_F(LuksTokenTest, RemovesOnlyATokenInUse) {
  EXPECT_EQ(luks_token_remove(store_, 0).error().detail_view(), "Token 0 is not in use.");
  EXPECT_EQ(luks_token_remove(store_, 32).error().detail_view(), "Token 32 is invalid.");
  EXPECT_EQ(luks_token_export(store_, 0).error().detail_view(),
            "Failed to get token 0 for export.");
  ASSERT_TRUE(import(R"({"type":"x","keyslots":["0"]})"));
  ASSERT_TRUE(luks_token_remove(store_, 0));
  EXPECT_TRUE(luks_tokens(store_)->empty());
}

TEST_F(LuksTokenTest, KillingAKeyslotDropsItFromItsTokens) {
  ASSERT_TRUE(import(R"({"type":"x","keyslots":["0"],"k":1})"));
  ASSERT_TRUE(luks_kill_slot(store_, 0));
  EXPECT_EQ(*luks_token_export(store_, 0), R"({"type":"x","keyslots":[],"k":1})");
}

}  // namespace
}  // namespace cryptmap::volume

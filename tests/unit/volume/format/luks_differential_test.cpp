// Differential test against cryptsetup 2.6.1 (label "interop"): hostile edits of a real LUKS2
// header's JSON, written back with valid checksums into both copies; cryptmap must accept exactly
// the headers `cryptsetup luksDump` accepts.
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>

#include "tests/support/cryptsetup.h"
#include "tests/support/data.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/luks_admin.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using Json = nlohmann::ordered_json;
using test::run;

// Rewrites both metadata copies of `img` with `j` (valid checksums, same seqid).
void rewrite_json(const std::string& img, const Json& j) {
  auto bytes = test::read_file(img);
  const std::string text = j.dump();
  for (std::uint64_t off : {std::uint64_t{0}, std::uint64_t{16384}}) {
    std::array<std::byte, 4096> raw{};
    std::memcpy(raw.data(), bytes.data() + off, 4096);
    auto bin = luks2::parse_bin_header(raw, off != 0, off);
    ASSERT_TRUE(bin) << bin.error().message();
    std::vector<std::byte> area(12288);
    std::memcpy(area.data(), text.data(), std::min<std::size_t>(text.size(), area.size()));
    bin->csum.fill(std::byte{0});
    luks2::serialize_bin_header(*bin, raw);
    ASSERT_TRUE(luks2::compute_checksum("sha256", raw, area, bin->csum));
    luks2::serialize_bin_header(*bin, raw);
    std::memcpy(bytes.data() + off, raw.data(), 4096);
    std::memcpy(bytes.data() + off + 4096, area.data(), area.size());
  }
  test::write_file(img, bytes);
}

TEST(LuksDifferential, HostileJsonAcceptedExactlyWhenCryptsetupAcceptsIt) {
  if (const auto cs = test::find_tool("cryptsetup", "cryptsetup-bin"); !cs)
    GTEST_SKIP() << cs.missing;
  test::TempDir dir;
  const std::string key = dir.write("key", "pw");
  const std::string base = dir.file("base.img");
  run("truncate -s 20M " + base);
  ASSERT_EQ(run("cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 "
                "--pbkdf-force-iterations 1000 "
                "--key-file " +
                key + " " + base)
                .status,
            0);
  auto [rc0, json0, json0_err] = run("cryptsetup luksDump --dump-json-metadata " + base);
  ASSERT_EQ(rc0, 0);
  const Json orig = Json::parse(json0);

  std::vector<std::pair<const char*, std::function<void(Json&)>>> edits = {
      {"unchanged", [](Json&) {}},
      {"area overlap",
       [](Json& j) {
         j["keyslots"]["1"] = j["keyslots"]["0"];
         j["keyslots"]["1"]["area"]["offset"] = "36864";
         j["digests"]["0"]["keyslots"].push_back("1");
       }},
      {"area beyond keyslots area",
       [](Json& j) { j["keyslots"]["0"]["area"]["offset"] = "16769024"; }},
      {"area inside metadata", [](Json& j) { j["keyslots"]["0"]["area"]["offset"] = "28672"; }},
      {"kdf extra member", [](Json& j) { j["keyslots"]["0"]["kdf"]["x"] = 1; }},
      {"kdf missing salt", [](Json& j) { j["keyslots"]["0"]["kdf"].erase("salt"); }},
      {"segment size unaligned", [](Json& j) { j["segments"]["0"]["size"] = "1000"; }},
      {"segment sector_size 1000", [](Json& j) { j["segments"]["0"]["sector_size"] = 1000; }},
      {"segment offset in keyslots area",
       [](Json& j) { j["segments"]["0"]["offset"] = "1048576"; }},
      {"segment iv_tweak not a number", [](Json& j) { j["segments"]["0"]["iv_tweak"] = "x1"; }},
      {"json_size mismatch", [](Json& j) { j["config"]["json_size"] = "28672"; }},
      {"keyslots_size unaligned", [](Json& j) { j["config"]["keyslots_size"] = "16744447"; }},
      {"keyslots_size too large", [](Json& j) { j["config"]["keyslots_size"] = "999999999999"; }},
      {"unknown requirement",
       [](Json& j) {
         j["config"]["requirements"] = {{"mandatory", {"future-thing"}}};
       }},
      {"requirements not object", [](Json& j) { j["config"]["requirements"] = 5; }},
      {"keyslot without digest", [](Json& j) { j["digests"]["0"]["keyslots"] = Json::array(); }},
      {"digest refs missing segment", [](Json& j) { j["digests"]["0"]["segments"] = {"3"}; }},
      {"token refs missing keyslot",
       [](Json& j) {
         j["tokens"]["0"] = {{"type", "t"}, {"keyslots", {"9"}}};
       }},
      {"token with extra fields",
       [](Json& j) {
         j["tokens"]["0"] = {{"type", "t"}, {"keyslots", {"0"}}, {"z", {1, 2}}};
       }},
      {"priority 0", [](Json& j) { j["keyslots"]["0"]["priority"] = 0; }},
      {"keyslot key_size negative", [](Json& j) { j["keyslots"]["0"]["key_size"] = -1; }},
      {"af type luks2", [](Json& j) { j["keyslots"]["0"]["af"]["type"] = "luks2"; }},
      {"area type foo", [](Json& j) { j["keyslots"]["0"]["area"]["type"] = "foo"; }},
      {"segments empty", [](Json& j) { j["segments"] = Json::object(); }},
      {"tokens missing", [](Json& j) { j.erase("tokens"); }},
      {"config flags not strings", [](Json& j) { j["config"]["flags"] = {1}; }},
      {"allow-discards flag", [](Json& j) { j["config"]["flags"] = {"allow-discards"}; }},
      {"unknown keyslot type",
       [](Json& j) {
         j["keyslots"]["3"] = {
             {"type", "other"},
             {"key_size", 64},
             {"area", {{"type", "raw"}, {"offset", "1048576"}, {"size", "4096"}}}};
       }},
  };
  int i = 0;
  for (const auto& [name, edit] : edits) {
    SCOPED_TRACE(name);
    const std::string img = dir.file(std::string("e").append(std::to_string(i++)));
    run("cp " + base + " " + img);
    Json j = orig;
    edit(j);
    rewrite_json(img, j);
    const bool theirs = run("cryptsetup luksDump " + img).status == 0;
    auto s = open_posix_store(img, PosixStoreOptions{.read_only = true});
    ASSERT_TRUE(s);
    const bool ours = luks_dump(**s).has_value();
    EXPECT_EQ(ours, theirs) << "cryptsetup " << (theirs ? "accepts" : "rejects") << " but cryptmap "
                            << (ours ? "accepts" : "rejects");
  }
}

}  // namespace
}  // namespace cryptmap::volume

namespace cryptmap::volume {
namespace {

void put_be32(std::vector<std::byte>& b, std::size_t off, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + static_cast<std::size_t>(i)] = std::byte(v >> (24 - 8 * i));
}

TEST(LuksDifferential, HostileLuks1PhdrAcceptedExactlyWhenCryptsetupAcceptsIt) {
  if (const auto cs = test::find_tool("cryptsetup", "cryptsetup-bin"); !cs)
    GTEST_SKIP() << cs.missing;
  test::TempDir dir;
  const std::string key = dir.write("key", "pw");
  const std::string base = dir.file("base1.img");
  run("truncate -s 4M " + base);
  ASSERT_EQ(run("cryptsetup luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 "
                "--key-file " +
                key + " " + base)
                .status,
            0);
  const auto orig = test::read_file(base);
  std::vector<std::pair<const char*, std::function<void(std::vector<std::byte>&)>>> edits = {
      {"unchanged", [](auto&) {}},
      {"version 2", [](auto& b) { b[7] = std::byte{2}; }},
      {"stripes 3999 on disabled slot", [](auto& b) { put_be32(b, 208 + 48 * 5 + 44, 3999); }},
      {"slot offset into header", [](auto& b) { put_be32(b, 208 + 48 * 3 + 40, 1); }},
      {"slots overlap", [](auto& b) { put_be32(b, 208 + 48 * 1 + 40, 100); }},
      {"payload before keyslots", [](auto& b) { put_be32(b, 104, 1000); }},
      {"payload zero (detached)", [](auto& b) { put_be32(b, 104, 0); }},
      {"hash md5", [](auto& b) { std::memcpy(b.data() + 72, "md5\0\0\0", 6); }},
      {"hash upper case", [](auto& b) { std::memcpy(b.data() + 72, "SHA256", 6); }},
      {"hash unterminated", [](auto& b) { std::memset(b.data() + 72, 'a', 32); }},
      {"keyBytes huge", [](auto& b) { put_be32(b, 108, 0x01000000); }},
      {"keyBytes zero", [](auto& b) { put_be32(b, 108, 0); }},
      {"bad active value", [](auto& b) { put_be32(b, 208 + 48 * 2, 0x1234); }},
      {"cipher mode ecb-plain", [](auto& b) { std::memcpy(b.data() + 40, "ecb-plain\0\0\0", 12); }},
  };
  int i = 0;
  for (const auto& [name, edit] : edits) {
    SCOPED_TRACE(name);
    const std::string img = dir.file(std::string("p").append(std::to_string(i++)));
    auto b = orig;
    edit(b);
    test::write_file(img, b);
    const bool theirs = run("cryptsetup luksDump " + img).status == 0;
    auto s = open_posix_store(img, PosixStoreOptions{.read_only = true});
    ASSERT_TRUE(s);
    const bool ours = luks_dump(**s).has_value();
    EXPECT_EQ(ours, theirs) << "cryptsetup " << (theirs ? "accepts" : "rejects") << " but cryptmap "
                            << (ours ? "accepts" : "rejects");
  }
}

}  // namespace
}  // namespace cryptmap::volume

// Pure parser tests (label "unit"): hand-built LUKS2 headers through the real reader, the
// cryptsetup validation rules one by one, a full self-made keyslot round trip, LUKS1 phdr checks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "crypto/kdf.h"
#include "crypto/random.h"
#include "volume/format/internal/base64.h"
#include "volume/format/internal/keyslot_crypt.h"
#include "volume/format/internal/luks1_disk.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/luks.h"
#include "volume/store/mem_backing_store.h"

namespace cryptmap::volume {
namespace {

using Json = nlohmann::ordered_json;

std::string b64(std::span<const std::byte> b) { return format::base64_encode(b); }
std::vector<std::byte> bytes(std::size_t n, std::uint8_t v) {
  return std::vector<std::byte>(n, std::byte{v});
}

// A cryptsetup-shaped LUKS2 header: one pbkdf2 keyslot, segment 0 at 16 MiB.
Json base_json() {
  const auto salt = b64(bytes(32, 7));
  return Json::parse(
      R"({"keyslots":{"0":{"type":"luks2","key_size":64,"af":{"type":"luks1","stripes":4000,"hash":"sha256"},"area":{"type":"raw","offset":"32768","size":"258048","encryption":"aes-xts-plain64","key_size":64},"kdf":{"type":"pbkdf2","hash":"sha256","iterations":1000,"salt":")" +
      salt +
      R"("}}},"tokens":{},"segments":{"0":{"type":"crypt","offset":"16777216","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":4096}},"digests":{"0":{"type":"pbkdf2","keyslots":["0"],"segments":["0"],"hash":"sha256","iterations":1000,"salt":")" +
      salt + R"(","digest":")" + b64(bytes(32, 1)) +
      R"("}},"config":{"json_size":"12288","keyslots_size":"16744448"}})");
}

// Writes one metadata copy with a correct checksum, without validating the JSON.
void put_copy(BackingStore& s, const std::string& json_text, bool secondary, std::uint64_t hdr_size,
              std::uint64_t seqid, const std::string& label = "") {
  luks2::BinHeader b;
  b.secondary = secondary;
  b.hdr_size = hdr_size;
  b.hdr_offset = secondary ? hdr_size : 0;
  b.seqid = seqid;
  b.label = label;
  b.checksum_alg = "sha256";
  b.uuid = "5b2b8e3a-4a3c-4b59-9f5e-0a1b2c3d4e5f";
  std::array<std::byte, luks2::kHdrBinLen> raw{};
  std::vector<std::byte> area(hdr_size - luks2::kHdrBinLen);
  std::memcpy(area.data(), json_text.data(), std::min(json_text.size(), area.size()));
  luks2::serialize_bin_header(b, raw);
  ASSERT_TRUE(luks2::compute_checksum("sha256", raw, area, b.csum));
  luks2::serialize_bin_header(b, raw);
  ASSERT_TRUE(s.write_at(ByteOffset{b.hdr_offset}, raw));
  ASSERT_TRUE(s.write_at(ByteOffset{b.hdr_offset + luks2::kHdrBinLen}, area));
}

struct Image {
  std::unique_ptr<MemBackingStore> store =
      std::make_unique<MemBackingStore>(20u << 20, "mem:test.img");
};

Image image_with(const Json& j, std::uint64_t hdr_size = 16384) {
  Image img;
  const std::string t = j.dump();
  put_copy(*img.store, t, false, hdr_size, 1);
  put_copy(*img.store, t, true, hdr_size, 1);
  return img;
}

Result<std::unique_ptr<LuksHeader>> load(const Image& img) {
  return load_luks_header(*img.store, std::nullopt);
}

void expect_code(const Image& img, Errc code, const char* why) {
  auto h = load(img);
  ASSERT_FALSE(h) << why;
  EXPECT_EQ(h.error().code, code) << why << ": " << h.error().message();
}

TEST(Luks2Parse, ValidHeaderGivesLayout) {
  auto img = image_with(base_json());
  auto h = load(img);
  ASSERT_TRUE(h) << h.error().message();
  const VolumeLayout l = (*h)->layout();
  EXPECT_EQ(l.type, VolumeType::kLuks2);
  EXPECT_EQ(l.data_offset_bytes, 16u << 20);
  EXPECT_EQ(l.sector_size, 4096u);
  EXPECT_EQ(l.key_bytes, 64u);
  EXPECT_EQ(l.size_bytes, 0u);
  EXPECT_EQ(l.uuid, "5b2b8e3a-4a3c-4b59-9f5e-0a1b2c3d4e5f");
  EXPECT_FALSE(l.allow_discards);
}

TEST(Luks2Parse, FieldsReachTheLayout) {
  Json j = base_json();
  j["segments"]["0"]["iv_tweak"] = "2048";
  j["segments"]["0"]["size"] = "1048576";
  j["segments"]["0"]["sector_size"] = 512;
  j["config"]["flags"] = Json::array({"allow-discards", "no-read-workqueue"});
  auto img = image_with(j);
  auto h = load(img);
  ASSERT_TRUE(h) << h.error().message();
  EXPECT_EQ((*h)->layout().iv_offset, 2048u);
  EXPECT_EQ((*h)->layout().size_bytes, 1048576u);
  EXPECT_EQ((*h)->layout().sector_size, 512u);
  EXPECT_TRUE((*h)->layout().allow_discards);
}

TEST(Luks2Parse, SelfMadeKeyslotUnlocksAndWrongPassphraseFails) {
  // Build a real keyslot with our own primitives: VK, digest, AF-split area.
  std::vector<std::byte> vk(64);
  ASSERT_TRUE(crypto::random_bytes(vk));
  auto salt = bytes(32, 9);
  auto dsalt = bytes(32, 3);
  std::vector<std::byte> digest(32);
  ASSERT_TRUE(crypto::pbkdf2("sha256", vk, dsalt, 1000, digest));
  Json j = base_json();
  j["keyslots"]["0"]["kdf"]["salt"] = b64(salt);
  j["digests"]["0"]["salt"] = b64(dsalt);
  j["digests"]["0"]["digest"] = b64(digest);
  auto img = image_with(j);
  const std::string pass = "unit test passphrase";
  format::KdfParams kdf{"pbkdf2", "sha256", 1000, 0, 0, 0, salt};
  auto dk = format::derive_key(kdf, as_bytes(pass), 64);
  ASSERT_TRUE(dk);
  ASSERT_TRUE(format::store_keyslot_area(*img.store, 32768, "aes-xts-plain64", dk->span(), vk, 4000,
                                         "sha256"));
  auto h = load(img);
  ASSERT_TRUE(h) << h.error().message();
  auto k = (*h)->unlock(as_bytes(pass), std::nullopt);
  ASSERT_TRUE(k) << k.error().message();
  EXPECT_EQ(to_hex(k->volume_key.span()), to_hex(vk));
  EXPECT_EQ(k->keyslot, 0);
  auto bad = (*h)->unlock(as_bytes(std::string("unit test passphrasE")), std::nullopt);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kBadKey);
}

TEST(Luks2Parse, NotLuksAndTruncated) {
  MemBackingStore zero(1u << 20, "mem:zero");
  auto h = load_luks_header(zero, std::nullopt);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kInvalid);
  EXPECT_NE(h.error().message().find("Device mem:zero is not a valid LUKS device."),
            std::string::npos);
  MemBackingStore tiny(3, "mem:tiny");
  auto h2 = load_luks_header(tiny, std::nullopt);
  ASSERT_FALSE(h2);
  EXPECT_EQ(h2.error().code, Errc::kInvalid);
  // A header that claims more keyslot area than the image has.
  auto img = image_with(base_json());
  std::vector<std::byte> head(40000);
  ASSERT_TRUE(img.store->read_at(ByteOffset{0}, head));
  MemBackingStore cut(head.size(), "mem:cut");
  ASSERT_TRUE(cut.write_at(ByteOffset{0}, head));
  auto h3 = load_luks_header(cut, std::nullopt);
  ASSERT_FALSE(h3);
  EXPECT_EQ(h3.error().code, Errc::kCorrupt);
}

TEST(Luks2Parse, DamagedPrimaryFallsBackAndHigherSeqidWins) {
  Json a = base_json();
  Json b = base_json();
  b["segments"]["0"]["sector_size"] = 512;
  Image img;
  put_copy(*img.store, a.dump(), false, 16384, 5);
  put_copy(*img.store, b.dump(), true, 16384, 6);
  auto h = load(img);
  ASSERT_TRUE(h);
  EXPECT_EQ((*h)->layout().sector_size, 512u);  // secondary is newer
  // Damage the secondary: the primary (older) is then used.
  std::array<std::byte, 1> x{std::byte{0x55}};
  ASSERT_TRUE(img.store->write_at(ByteOffset{16384 + 5000}, x));
  auto h2 = load(img);
  ASSERT_TRUE(h2);
  EXPECT_EQ((*h2)->layout().sector_size, 4096u);
  // Damage both: corrupt, naming the checksum.
  ASSERT_TRUE(img.store->write_at(ByteOffset{5000}, x));
  auto h3 = load(img);
  ASSERT_FALSE(h3);
  EXPECT_EQ(h3.error().code, Errc::kCorrupt);
  EXPECT_NE(h3.error().message().find("checksum"), std::string::npos);
}

TEST(Luks2Parse, SecondaryFoundAtLargerHeaderSize) {
  Json j = base_json();
  j["config"]["json_size"] = std::to_string(65536 - 4096);
  j["keyslots"]["0"]["area"]["offset"] = "131072";
  j["config"]["keyslots_size"] = std::to_string((16u << 20) - 131072);
  Image img;
  put_copy(*img.store, j.dump(), true, 65536, 1);  // primary missing entirely
  auto h = load(img);
  ASSERT_TRUE(h) << h.error().message();
}

TEST(Luks2Parse, JsonAreaRules) {
  {
    Image img;
    put_copy(*img.store, "[1,2,3]", false, 16384, 1);
    expect_code(img, Errc::kCorrupt, "JSON not an object");
  }
  {
    Image img;
    put_copy(*img.store, "{}", false, 16384, 1);
    expect_code(img, Errc::kCorrupt, "empty object");
  }
  {
    Image img;
    put_copy(*img.store, base_json().dump() + " ", false, 16384, 1);
    expect_code(img, Errc::kCorrupt, "trailing space");
  }
  {
    Image img;
    std::string t = base_json().dump();
    t += std::string(1, '\0') + "x";
    put_copy(*img.store, t, false, 16384, 1);
    expect_code(img, Errc::kCorrupt, "garbage after NUL");
  }
  {
    Image img;
    put_copy(*img.store, std::string(12288, '{'), false, 16384, 1);
    expect_code(img, Errc::kCorrupt, "no terminator / deep nesting");
  }
  {
    Json j = base_json();
    Json deep = Json::array();
    for (int i = 0; i < 40; ++i) deep = Json::array({deep});
    j["tokens"]["0"] = {{"type", "x"}, {"keyslots", Json::array()}, {"deep", deep}};
    expect_code(image_with(j), Errc::kCorrupt, "nesting deeper than json-c allows");
  }
}

TEST(Luks2Parse, HostileSizes) {
  {
    Json j = base_json();
    j["config"]["json_size"] = "99999999999";
    expect_code(image_with(j), Errc::kCorrupt, "huge json_size");
  }
  {
    Image img;
    put_copy(*img.store, base_json().dump(), false, 16384, 1);
    // hdr_size in the binary header far beyond 4 MiB.
    std::array<std::byte, 8> v{};
    store_be64(v.data(), 1ull << 40);
    ASSERT_TRUE(img.store->write_at(ByteOffset{8}, v));
    expect_code(img, Errc::kCorrupt, "huge hdr_size");
  }
  {
    Json j = base_json();
    j["config"]["keyslots_size"] = "999999999999";
    expect_code(image_with(j), Errc::kCorrupt, "huge keyslots_size");
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["key_size"] = 4000000000u;
    j["keyslots"]["0"]["area"]["size"] = "16000000";
    auto img = image_with(j);
    auto h = load(img);
    // Loads (cryptsetup accepts it) but the slot is refused without allocating gigabytes.
    if (h) {
      auto k = (*h)->unlock(as_bytes(std::string("x")), std::nullopt);
      ASSERT_FALSE(k);
      EXPECT_EQ(k.error().code, Errc::kCorrupt);
    }
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["kdf"] = {{"type", "argon2id"},
                                 {"time", 4},
                                 {"memory", 4294967295u},
                                 {"cpus", 1},
                                 {"salt", b64(bytes(32, 1))}};
    expect_code(image_with(j), Errc::kCorrupt, "argon2 memory beyond 4 GiB");
  }
}

TEST(Luks2Parse, KeyslotAreaRules) {
  {
    Json j = base_json();
    j["keyslots"]["1"] = j["keyslots"]["0"];
    j["keyslots"]["1"]["area"]["offset"] = "40960";  // inside slot 0's area
    j["digests"]["0"]["keyslots"] = Json::array({"0", "1"});
    expect_code(image_with(j), Errc::kCorrupt, "overlapping areas");
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["area"]["offset"] = "16384";
    expect_code(image_with(j), Errc::kCorrupt, "area inside the metadata");
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["area"]["offset"] = "16773120";
    expect_code(image_with(j), Errc::kCorrupt, "area beyond keyslots area");
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["area"]["size"] = "0";
    expect_code(image_with(j), Errc::kCorrupt, "zero area");
  }
  {
    // Leftover members of another KDF are dropped, as cryptsetup's header repair does.
    Json j = base_json();
    j["keyslots"]["0"]["kdf"]["memory"] = 1024;
    auto h = load(image_with(j));
    EXPECT_TRUE(h) << h.error().message();
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["kdf"].erase("iterations");
    expect_code(image_with(j), Errc::kCorrupt, "kdf without iterations");
  }
  {
    Json j = base_json();
    j["keyslots"]["x"] = j["keyslots"]["0"];
    expect_code(image_with(j), Errc::kCorrupt, "non-numeric id");
  }
  {
    Json j = base_json();
    j["digests"]["0"]["keyslots"] = Json::array({"3"});
    expect_code(image_with(j), Errc::kCorrupt, "digest references missing keyslot");
  }
  {
    Json j = base_json();
    j["keyslots"]["0"]["af"]["type"] = "luks2";
    expect_code(image_with(j), Errc::kCorrupt, "unknown af type");
  }
}

TEST(Luks2Parse, SegmentRules) {
  {
    Json j = base_json();
    j["segments"]["0"]["size"] = "1000";
    expect_code(image_with(j), Errc::kCorrupt, "size not 512-aligned");
  }
  {
    Json j = base_json();
    j["segments"]["0"]["size"] = "1536";
    expect_code(image_with(j), Errc::kCorrupt, "size not a multiple of sector_size");
  }
  {
    Json j = base_json();
    j["segments"]["0"]["offset"] = "1048576";  // inside the keyslots area
    expect_code(image_with(j), Errc::kCorrupt, "data offset inside keyslots area");
  }
  {
    Json j = base_json();
    j["segments"]["0"]["sector_size"] = 1000;
    expect_code(image_with(j), Errc::kCorrupt, "bad sector_size");
  }
  {
    // LUKS2 --integrity (docs/integrity.md §3): a supported composition loads and carries it.
    Json j = base_json();
    j["segments"]["0"]["encryption"] = "aes-xts-random";
    j["segments"]["0"]["integrity"] = {
        {"type", "hmac(sha256)"}, {"journal_encryption", "none"}, {"journal_integrity", "none"}};
    auto h = load(image_with(j));
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ((*h)->layout().auth_encryption, "aes-xts-random");
    EXPECT_EQ((*h)->layout().integrity, "hmac(sha256)");
    EXPECT_FALSE((*h)->layout().integrity_no_journal);
    j["config"]["flags"] = Json::array({"no-journal"});
    auto h2 = load(image_with(j));
    ASSERT_TRUE(h2) << h2.error().message();
    EXPECT_TRUE((*h2)->layout().integrity_no_journal);
  }
  {
    Json j = base_json();
    j["segments"]["0"]["integrity"] = {
        {"type", "hmac(sha1)"}, {"journal_encryption", "none"}, {"journal_integrity", "none"}};
    expect_code(image_with(j), Errc::kUnsupported, "integrity composition not implemented");
  }
  {
    Json j = base_json();
    j["segments"]["0"]["integrity"] = {{"type", "hmac(sha256)"},
                                       {"journal_encryption", "cbc(aes)"},
                                       {"journal_integrity", "none"}};
    expect_code(image_with(j), Errc::kUnsupported, "journal encryption");
  }
  {
    Json j = base_json();
    j["segments"]["0"]["encryption"] = "aes-gcm-random";
    j["segments"]["0"]["integrity"] = {
        {"type", "aead"}, {"journal_encryption", "none"}, {"journal_integrity", "none"}};
    j["config"]["requirements"] = {{"mandatory", Json::array({"inline-hw-tags"})}};
    auto h = load(image_with(j));
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error().code, Errc::kUnsupported);
    EXPECT_NE(h.error().message().find("inline-hw-tags"), std::string::npos) << h.error().message();
  }
  {
    Json j = base_json();
    j["segments"]["0"]["type"] = "linear";
    expect_code(image_with(j), Errc::kUnsupported, "linear segment");
  }
}

TEST(Luks2Parse, Requirements) {
  {
    Json j = base_json();
    j["config"]["requirements"] = {{"mandatory", Json::array({"some-future-feature"})}};
    auto img = image_with(j);
    expect_code(img, Errc::kUnsupported, "unknown requirement");
  }
  {
    Json j = base_json();
    j["config"]["requirements"] = {{"mandatory", Json::array({"offline-reencrypt"})}};
    expect_code(image_with(j), Errc::kUnsupported, "offline reencryption in progress");
  }
  {
    Json j = base_json();
    j["config"]["requirements"] = {{"mandatory", "not-an-array"}};
    expect_code(image_with(j), Errc::kCorrupt, "mandatory not an array");
  }
  {
    Json j = base_json();  // unknown tokens and optional fields are fine
    j["tokens"]["3"] = {{"type", "systemd-tpm2"},
                        {"keyslots", Json::array({"0"})},
                        {"tpm2-pcrs", Json::array({7})}};
    j["config"]["requirements"] = {{"mandatory", Json::array()}, {"optional", "whatever"}};
    auto h = load(image_with(j));
    EXPECT_TRUE(h) << h.error().message();
  }
}

TEST(Luks1Parse, ChecksMirrorCryptsetup) {
  luks1::Phdr h;
  h.cipher_name = "aes";
  h.cipher_mode = "xts-plain64";
  h.hash_spec = "sha256";
  h.key_bytes = 64;
  h.payload_offset = 4096;
  h.uuid = "0d5e2a36-0000-4000-8000-000000000001";
  h.mk_digest_iterations = 1000;
  std::uint32_t off = 8;
  for (auto& kb : h.key_block) {
    kb.key_material_offset = off;
    off = (off + 500 + 7) / 8 * 8;
  }
  EXPECT_EQ(h.key_block[7].key_material_offset, 3536u);  // as cryptsetup lays them out
  std::array<std::byte, luks1::kPhdrSize> raw{};
  luks1::serialize_phdr(h, raw);
  auto p = luks1::parse_phdr(raw, 4u << 20, "img");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->cipher_spec(), "aes-xts-plain64");
  EXPECT_EQ(luks1::device_sectors(*p), 3536u + 500);
  // Device too small for the keyslot areas.
  auto small = luks1::parse_phdr(raw, 1u << 20, "img");
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().code, Errc::kCorrupt);
  // Key material inside the header.
  luks1::Phdr bad = h;
  bad.key_block[0].key_material_offset = 1;
  luks1::serialize_phdr(bad, raw);
  EXPECT_FALSE(luks1::parse_phdr(raw, 4u << 20, "img"));
  // Absurd key size.
  bad = h;
  bad.key_bytes = 0x40000000;
  luks1::serialize_phdr(bad, raw);
  EXPECT_FALSE(luks1::parse_phdr(raw, ~0ull, "img"));
  // Unsupported version.
  luks1::serialize_phdr(h, raw);
  store_be16(raw.data() + 6, 3);
  auto v = luks1::parse_phdr(raw, 4u << 20, "img");
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code, Errc::kUnsupported);
  // Detached header (payloadOffset 0) skips the payload bound.
  bad = h;
  bad.payload_offset = 0;
  luks1::serialize_phdr(bad, raw);
  EXPECT_TRUE(luks1::parse_phdr(raw, 4u << 20, "img"));
}

TEST(Base64, RoundTripAndStrictness) {
  for (std::size_t n = 0; n < 70; ++n) {
    std::vector<std::byte> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(i * 37 + 1);
    auto e = format::base64_encode(v);
    auto d = format::base64_decode(e);
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, v);
  }
  EXPECT_EQ(format::base64_encode(as_bytes(std::string("foobar"))), "Zm9vYmFy");
  EXPECT_FALSE(format::base64_decode("Zm9v!mFy"));
  EXPECT_FALSE(format::base64_decode("Zm9"));
}

}  // namespace
}  // namespace cryptmap::volume

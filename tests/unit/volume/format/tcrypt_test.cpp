// TCRYPT (TrueCrypt/VeraCrypt): KDF table, keyfile pool, header parsing and mapping, and the
// trial on cryptsetup's own test images (tests/data/tcrypt, unpacked into a temporary directory).
// The FAT serial each image documents (DEAD-BABE, hidden CAFE-BABE) is read from the decrypted
// volume through volume/open.h, the same path the daemon serves.
#include "volume/format/tcrypt.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/support/data.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"
#include "volume/open.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

using test::bytes_of;

constexpr const char* kArchive = CRYPTMAP_TCRYPT_DATA_DIR "/tcrypt-images.tar.xz";

// The images this binary uses, unpacked from the archive on first use (one member at a time:
// the whole archive is 118 MiB unpacked).
std::string image(const std::string& name) {
  static test::TempDir dir("tcrypt-images");
  const std::string path = dir.path() + "/tcrypt-images/" + name;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::fclose(f);
    return path;
  }
  const std::string cmd = "tar -xJSf '" + std::string(kArchive) + "' -C '" + dir.path() +
                          "' 'tcrypt-images/" + name + "'";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return path;
}

std::vector<std::byte> file_bytes(const std::string& path) {
  std::vector<std::byte> out;
  if (FILE* f = std::fopen(path.c_str(), "rb")) {
    std::array<std::byte, 4096> buf;
    for (std::size_t n; (n = std::fread(buf.data(), 1, buf.size(), f)) > 0;)
      out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
    std::fclose(f);
  }
  return out;
}

struct Opened {
  TcryptMatch match;
  std::string serial;  // FAT volume serial as blkid prints it ("DEAD-BABE")
};

// FAT12/16 keep the serial at byte 39 of the boot sector, FAT32 at byte 67 (after its extended
// BPB); the file-system type string tells which.
std::string fat_serial(std::span<const std::byte> boot) {
  const std::size_t at = std::memcmp(boot.data() + 82, "FAT32", 5) == 0 ? 67 : 39;
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(boot[at + i]);
  char s[16];
  std::snprintf(s, sizeof s, "%04X-%04X", v >> 16, v & 0xFFFF);
  return s;
}

// Unlocks IMAGE and reads the first sector of the plaintext through a real Volume.
Opened open_image(const std::string& name, TcryptOptions o, std::string_view pass,
                  const std::vector<std::string>& keyfiles = {}) {
  Opened r;
  const std::string path = image(name);
  auto store = open_posix_store(path, {.read_only = true});
  EXPECT_TRUE(store) << store.error().message();
  if (!store) return r;
  std::vector<std::vector<std::byte>> kf;
  for (const auto& k : keyfiles) kf.push_back(file_bytes(image(k)));
  std::vector<std::span<const std::byte>> spans(kf.begin(), kf.end());
  auto pool = tcrypt_pool(std::as_bytes(std::span(pass)), spans, o.veracrypt);
  EXPECT_TRUE(pool) << pool.error().message();
  if (!pool) return r;
  auto m = tcrypt_unlock(**store, o, pool->span());
  EXPECT_TRUE(m) << name << ": " << m.error().message();
  if (!m) return r;
  VolumeOptions vo;
  vo.read_only = true;
  vo.cache_bytes = 0;
  auto vol = open_unlocked(path, m->layout, m->volume_key.span(), vo, nullptr);
  EXPECT_TRUE(vol) << name << ": " << vol.error().message();
  if (vol) {
    std::vector<std::byte> sector(512);
    auto rd = (*vol)->read(ByteOffset{0}, sector);
    EXPECT_TRUE(rd) << rd.error().message();
    r.serial = fat_serial(sector);
  }
  r.match = std::move(*m);
  return r;
}

TcryptOptions only(std::string hash, bool veracrypt = true) {
  TcryptOptions o;
  o.hash = std::move(hash);
  o.veracrypt = veracrypt;
  return o;
}

// docs/tcrypt.md §6.1: the GPT image's geometry (partition 3 encrypted at sector 67584, 16 MiB,
// a 66 MiB disk): clear, crypt with the absolute IV offset, clear again.
TEST(TcryptLayout, WholeDiskServesTheClearAreasAroundTheEncryptedOne) {
  TcryptHeader h;
  h.version = 5;
  h.mk_offset = 67584ull * 512;
  h.volume_size = 16ull << 20;
  TcryptOptions o;
  o.system = true;
  o.whole_disk = true;
  const std::uint64_t disk = 135168ull * 512;
  auto l = tcrypt_layout(h, "aes", "xts-plain64", o, disk);
  ASSERT_TRUE(l) << l.error().message();
  ASSERT_EQ(l->segments.size(), 3u);
  EXPECT_EQ(l->segments[0].kind, SegmentKind::kLinear);
  EXPECT_EQ(l->segments[0].length_bytes, h.mk_offset);
  EXPECT_EQ(l->segments[1].kind, SegmentKind::kCrypt);
  EXPECT_EQ(l->segments[1].offset_bytes, h.mk_offset);
  EXPECT_EQ(l->segments[1].image_offset_bytes, h.mk_offset);
  EXPECT_EQ(l->segments[1].length_bytes, h.volume_size);
  EXPECT_EQ(l->segments[1].iv_offset, 67584u);
  EXPECT_EQ(l->segments[2].kind, SegmentKind::kLinear);
  EXPECT_EQ(l->segments[2].image_offset_bytes, h.mk_offset + h.volume_size);
  EXPECT_EQ(l->segments[2].offset_bytes + l->segments[2].length_bytes, disk);
  EXPECT_EQ(l->size_bytes, disk);
  EXPECT_EQ(l->data_offset_bytes, 0u);
  o.system = false;
  EXPECT_EQ(tcrypt_layout(h, "aes", "xts-plain64", o, disk).error().code, Errc::kInvalid);
}

TEST(TcryptKdfs, FollowCryptsetupsOrderAndSkipTrueCryptOnesWithAPim) {
  const auto all = tcrypt_kdfs({});
  ASSERT_EQ(all.size(), 15u);
  EXPECT_EQ(all[0].hash, "ripemd160");
  EXPECT_EQ(all[0].iterations, 2000u);
  EXPECT_EQ(all[5].hash, "sha512");
  EXPECT_EQ(all[5].iterations, 500000u);
  EXPECT_EQ(all[9].hash, "argon2id");
  EXPECT_EQ(all[9].iterations, 6u);
  EXPECT_EQ(all[9].memory_kib, 425984u);
  TcryptOptions tc;
  tc.veracrypt = false;
  EXPECT_EQ(tcrypt_kdfs(tc).size(), 5u);
  TcryptOptions pim;
  pim.pim = 1234;
  const auto p = tcrypt_kdfs(pim);
  for (const auto& k : p) EXPECT_TRUE(k.veracrypt) << k.hash;
  EXPECT_EQ(p[0].hash, "sha512");
  EXPECT_EQ(p[0].iterations, 15000u + 1234u * 1000u);
  EXPECT_EQ(p[3].iterations, 1234u * 2048u);  // sha256 boot
  pim.pim = 8;
  pim.hash = "argon2";
  ASSERT_EQ(tcrypt_kdfs(pim).size(), 1u);
  EXPECT_EQ(tcrypt_kdfs(pim)[0].iterations, 5u);
  EXPECT_EQ(tcrypt_kdfs(pim)[0].memory_kib, 1024u * (64 + 32 * 7));
  pim.pim = 33;
  EXPECT_EQ(tcrypt_kdfs(pim)[0].iterations, 15u);
  EXPECT_EQ(tcrypt_kdfs(pim)[0].memory_kib, 1024u * 1024u);
}

TEST(TcryptPool, IsThePassphraseWithoutKeyfilesAndLimitsItsLength) {
  auto p = tcrypt_pool(bytes_of("secret"), {}, true);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->as_chars(), "secret");
  const std::string long_pw(65, 'x');
  EXPECT_FALSE(tcrypt_pool(bytes_of(long_pw), {}, false));
  EXPECT_TRUE(tcrypt_pool(bytes_of(long_pw), {}, true));
  EXPECT_FALSE(tcrypt_pool(bytes_of(std::string(129, 'x')), {}, true));
}

TEST(TcryptPool, AddsEachKeyfilesCrcStreamThenThePassphrase) {
  // One keyfile byte 0x00: CRC register ~0 updated with 0 is table[0xFF] ^ 0x00FFFFFF =
  // 0x2D02EF8D ^ 0x00FFFFFF = 0x2DFD1072; its bytes MSB first go into pool[0..3].
  const std::array<std::byte, 1> kf{std::byte{0}};
  const std::array<std::span<const std::byte>, 1> files{kf};
  auto p = tcrypt_pool(bytes_of("A"), files, true);
  ASSERT_TRUE(p);
  ASSERT_EQ(p->size(), 64u);
  EXPECT_EQ(test::hex_of(p->span().first(5)), "6efd107200");  // 0x2D + 'A' = 0x6E
  // Two keyfiles: each starts again at pool[0]; a 65-byte VeraCrypt passphrase needs 128 bytes.
  const std::array<std::span<const std::byte>, 2> two{kf, kf};
  auto q = tcrypt_pool(bytes_of(std::string(65, '\0')), two, true);
  ASSERT_TRUE(q);
  ASSERT_EQ(q->size(), 128u);
  EXPECT_EQ(test::hex_of(q->span().first(4)), "5afa20e4");
}

TEST(TcryptParse, RejectsWrongMagicCrcAndVeraCryptWhenDisabled) {
  std::vector<std::byte> h(512);
  EXPECT_EQ(tcrypt_parse_header(h, true).error().code, Errc::kBadKey);
  std::memcpy(h.data() + 64, "VERA", 4);
  EXPECT_EQ(tcrypt_parse_header(h, false).error().code, Errc::kBadKey);
  // Key-area CRC of 256 zero bytes is 0x0D968558; version 2 skips the header CRC.
  h[72] = std::byte{0x0D};
  h[73] = std::byte{0x96};
  h[74] = std::byte{0x85};
  h[75] = std::byte{0x58};
  h[69] = std::byte{2};
  auto ok = tcrypt_parse_header(h, true);
  ASSERT_TRUE(ok) << ok.error().message();
  EXPECT_TRUE(ok->veracrypt);
  EXPECT_EQ(ok->sector_size, 512u);
  h[69] = std::byte{5};  // version 5: the header CRC (zero here) must match
  EXPECT_EQ(tcrypt_parse_header(h, true).error().code, Errc::kBadKey);
  EXPECT_EQ(tcrypt_parse_header(std::span(h).first(100), true).error().code, Errc::kInvalid);
}

TEST(TcryptLayout, RefusesVolumesLargerThanTheImageAndOddOffsets) {
  TcryptHeader h;
  h.version = 5;
  h.mk_offset = 131072;
  h.volume_size = 1 << 20;
  EXPECT_EQ(tcrypt_layout(h, "aes", "xts-plain64", {}, 1 << 20).error().code, Errc::kNoSpace);
  auto l = tcrypt_layout(h, "serpent-twofish-aes", "xts-plain64", {}, 2 << 20);
  ASSERT_TRUE(l) << l.error().message();
  EXPECT_EQ(l->cipher.cipher, "serpent");
  EXPECT_EQ(l->cascade, (std::vector<std::string>{"twofish", "aes"}));
  EXPECT_EQ(l->iv_offset, 256u);
  EXPECT_EQ(l->key_bytes, 192u);
  h.mk_offset = 1000;
  EXPECT_EQ(tcrypt_layout(h, "aes", "xts-plain64", {}, 2 << 20).error().code, Errc::kCorrupt);
  EXPECT_EQ(tcrypt_layout(h, "blowfish", "xts-plain64", {}, 2 << 20).error().code,
            Errc::kUnsupported);
}

TEST(TcryptImages, TrueCryptAesMatchesCryptsetupsVolumeKeyAndDump) {
  auto r = open_image("tc_4-sha512-xts-aes", only("sha512", false), "aaaaaaaaaaaa");
  EXPECT_EQ(r.serial, "DEAD-BABE");
  EXPECT_EQ(test::hex_of(r.match.volume_key.span()),
            "8602e607b213c323db7023e8a57fc744e5a4ec1f801001ef8e95f2275c52b6f3"
            "79a7f11b64c9109be249a31fe4c141b0b4bd3ae374faf211e051991db7fc12ee");
  // cryptsetup 2.6.1 `tcryptDump -h sha512 -c aes`, byte for byte.
  EXPECT_EQ(tcrypt_dump(r.match, "tc_4-sha512-xts-aes", false),
            "TCRYPT header information for tc_4-sha512-xts-aes\n"
            "Version:       \t4\n"
            "Driver req.:\t6.0\n"
            "Sector size:\t512\n"
            "MK offset:\t131072\n"
            "PBKDF2 hash:\tsha512\n"
            "Cipher chain:\taes\n"
            "Cipher mode:\txts-plain64\n"
            "MK bits:       \t512\n");
  EXPECT_EQ(tcrypt_dump(r.match, "x", true),
            "TCRYPT header information for x\nCipher chain:  \taes\nCipher mode:   "
            "\txts-plain64\nPayload offset:\t256\nMK bits:       \t512\n"
            "MK dump:\t86 02 e6 07 b2 13 c3 23 db 70 23 e8 a5 7f c7 44 \n"
            "\t\te5 a4 ec 1f 80 10 01 ef 8e 95 f2 27 5c 52 b6 f3 \n"
            "\t\t79 a7 f1 1b 64 c9 10 9b e2 49 a3 1f e4 c1 41 b0 \n"
            "\t\tb4 bd 3a e3 74 fa f2 11 e0 51 99 1d b7 fc 12 ee \n");
}

TEST(TcryptImages, CascadesLrwAndHiddenVolumesShowTheirSerials) {
  struct Case {
    const char* image;
    const char* hash;
    const char* chain;  // cryptsetup's name (key order)
    const char* pass;
    bool hidden;
    const char* serial;
  };
  const Case cases[] = {
      {"tc_5-sha512-xts-serpent-twofish-aes", "sha512", "aes-twofish-serpent", "aaaaaaaaaaaa",
       false, "DEAD-BABE"},
      {"tc_4-sha512-xts-aes-twofish", "sha512", "twofish-aes", "aaaaaaaaaaaa", false, "DEAD-BABE"},
      {"tc_3-ripemd160-xts-twofish", "ripemd160", "twofish", "aaaaaaaaaaaa", false, "DEAD-BABE"},
      {"tc_2-ripemd160-lrw-serpent-twofish-aes", "ripemd160", "aes-twofish-serpent", "aaaaaaaaaaaa",
       false, "DEAD-BABE"},
      {"tc_2-ripemd160-lrw-aes-hidden", "ripemd160", "aes", "bbbbbbbbbbbb", true, "CAFE-BABE"},
      {"tc_5-sha512-xts-serpent-twofish-aes-hidden", "sha512", "aes-twofish-serpent",
       "bbbbbbbbbbbb", true, "CAFE-BABE"},
      {"tc_3-sha512-xts-aes-hidden", "sha512", "aes", "bbbbbbbbbbbb", true, "CAFE-BABE"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.image);
    TcryptOptions o = only(c.hash, false);
    o.hidden = c.hidden;
    auto r = open_image(c.image, o, c.pass);
    EXPECT_EQ(r.match.chain, c.chain);
    EXPECT_EQ(r.serial, c.serial);
  }
}

TEST(TcryptImages, KuznyechikAndLegacyCbcBeyondWhatCryptsetupMapsHere) {
  auto k =
      open_image("vc_1-sha512-xts-camellia-serpent-kuznyechik", only("sha512"), "aaaaaaaaaaaa");
  EXPECT_EQ(k.match.chain, "camellia-serpent-kuznyechik");
  EXPECT_EQ(k.serial, "DEAD-BABE");
  auto c = open_image("tc_1-sha1-cbc-aes", only("sha1", false), "aaaaaaaaaaaa");
  EXPECT_EQ(c.match.mode, "cbc-tcw");
  EXPECT_TRUE(c.match.read_only);
  EXPECT_EQ(c.match.layout.key_bytes, 64u);
  EXPECT_EQ(c.serial, "DEAD-BABE");
  TcryptOptions hidden = only("ripemd160", false);
  hidden.hidden = true;
  EXPECT_EQ(open_image("tc_2-ripemd160-cbc-aes-hidden", hidden, "bbbbbbbbbbbb").serial,
            "CAFE-BABE");
}

// Every TrueCrypt 1.x/2.x CBC image of the archive (docs/tcrypt.md §5): the chain cryptsetup's
// table names, its mode and volume key size. Only the single 128-bit ciphers, 3DES and CAST5
// images keep their encrypted FAT; the archive wiped the data of the others (every sector after
// the header is zero but the TrueCrypt < 6 hidden-header slot), so those are checked against
// tests/integration/tcrypt_cbc_reference.py in tcrypt_open.sh instead of by their serial.
TEST(TcryptImages, EveryTrueCryptCbcImageOpensWithItsChain) {
  struct Case {
    const char* image;
    const char* hash;
    const char* chain;
    const char* mode;
    std::size_t key_bits;
    bool has_data;
  };
  const Case cases[] = {
      {"tc_1-ripemd160-cbc-aes", "ripemd160", "aes", "cbc-tcw", 512, true},
      {"tc_2-whirlpool-cbc-aes", "whirlpool", "aes", "cbc-tcw", 512, true},
      {"tc_2-ripemd160-cbc-twofish", "ripemd160", "twofish", "cbc-tcw", 512, true},
      {"tc_1-sha1-cbc-cast5", "sha1", "cast5", "cbc-tcw", 320, true},
      {"tc_1-sha1-cbc-des3_ede", "sha1", "des3_ede", "cbc-tcw", 384, true},
      {"tc_1-sha1-cbc-blowfish", "sha1", "blowfish_le", "cbc-tcrypt", 640, false},
      {"tc_1-ripemd160-cbc-blowfish", "ripemd160", "blowfish_le", "cbc-tcrypt", 640, false},
      {"tc_2-ripemd160-cbc-aes-blowfish", "ripemd160", "blowfish_le-aes", "cbc-tcrypt", 960, false},
      {"tc_2-ripemd160-cbc-aes-blowfish-serpent", "ripemd160", "serpent-blowfish_le-aes",
       "cbc-tcrypt", 1216, false},
      {"tc_2-ripemd160-cbc-aes-twofish", "ripemd160", "twofish-aes", "cbci-tcrypt", 768, false},
      {"tc_2-ripemd160-cbc-aes-twofish-serpent", "ripemd160", "serpent-twofish-aes", "cbci-tcrypt",
       1024, false},
      {"tc_2-ripemd160-cbc-serpent-aes", "ripemd160", "aes-serpent", "cbci-tcrypt", 768, false},
      {"tc_2-ripemd160-cbc-serpent-twofish-aes", "ripemd160", "aes-twofish-serpent", "cbci-tcrypt",
       1024, false},
      {"tc_2-ripemd160-cbc-twofish-serpent", "ripemd160", "serpent-twofish", "cbci-tcrypt", 768,
       false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.image);
    auto r = open_image(c.image, only(c.hash, false), "aaaaaaaaaaaa");
    EXPECT_EQ(r.match.chain, c.chain);
    EXPECT_EQ(r.match.mode, c.mode);
    EXPECT_EQ(r.match.volume_key.size() * 8, c.key_bits);
    EXPECT_EQ(r.match.layout.key_bytes * 8, c.key_bits);
    EXPECT_TRUE(r.match.read_only);
    if (c.has_data) {
      EXPECT_EQ(r.serial, "DEAD-BABE");
    }
  }
  TcryptOptions hidden = only("ripemd160", false);
  hidden.hidden = true;
  auto h = open_image("tc_2-ripemd160-cbc-serpent-twofish-aes-hidden", hidden, "bbbbbbbbbbbb");
  EXPECT_EQ(h.match.chain, "aes-twofish-serpent");
  EXPECT_EQ(h.match.header.header_offset, 40960u - 1536u);
}

// One VeraCrypt image with keyfiles (each trial costs a 500000-iteration PBKDF2, so the PIM and
// empty-passphrase images are left to tests/integration/tcrypt_open.sh).
TEST(TcryptImages, VeraCryptKeyfilesWithA72CharacterPassphrase) {
  auto r = open_image("vck_1_pw72-sha512-xts-aes", only("sha512"),
                      "aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffffffffffff",
                      {"keyfile1", "keyfile2"});
  EXPECT_EQ(r.serial, "DEAD-BABE");
  EXPECT_TRUE(r.match.header.veracrypt);
  EXPECT_EQ(r.match.kdf.iterations, 500000u);
}

TEST(TcryptImages, WrongPassphraseIsBadKeyAndTruncatedImagesAreRefused) {
  const std::string path = image("tc_4-sha512-xts-aes");
  auto store = open_posix_store(path, {.read_only = true});
  ASSERT_TRUE(store);
  auto m = tcrypt_unlock(**store, only("sha512", false), bytes_of("aaaaaaaaaaab"));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, Errc::kBadKey);
  // The same image cut after the header: the header opens, the volume does not fit.
  test::TempDir dir("tcrypt-cut");
  auto all = file_bytes(path);
  all.resize(65536);
  test::write_file(dir.file("cut"), all);
  auto cut = open_posix_store(dir.file("cut"), {.read_only = true});
  ASSERT_TRUE(cut);
  auto c = tcrypt_unlock(**cut, only("sha512", false), bytes_of("aaaaaaaaaaaa"));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kNoSpace);
  TcryptOptions key_only = only("sha512", false);
  key_only.key_only = true;
  EXPECT_TRUE(tcrypt_unlock(**cut, key_only, bytes_of("aaaaaaaaaaaa")));
  // Shorter than a header.
  all.resize(100);
  test::write_file(dir.file("tiny"), all);
  auto tiny = open_posix_store(dir.file("tiny"), {.read_only = true});
  ASSERT_TRUE(tiny);
  EXPECT_EQ(tcrypt_unlock(**tiny, only("sha512", false), bytes_of("a")).error().code,
            Errc::kInvalid);
}

}  // namespace
}  // namespace cryptmap::volume

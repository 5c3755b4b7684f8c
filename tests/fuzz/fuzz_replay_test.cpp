// Replays the fuzz targets under GoogleTest (label "fuzz"): a seed corpus generated here from
// real writers (our luksFormat, cryptsetup-shaped JSON, cipher specs) plus a bounded number of
// mutations with a fixed seed. Checks that nothing crashes (ASan/UBSan builds catch memory
// errors) and that no single allocation exceeds 64 MiB whatever the input claims.
// With CRYPTMAP_FUZZ_SEED_DIR=dir, WriteSeeds stores the corpus for the libFuzzer binaries.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_targets.h"
#include "tests/support/temp_dir.h"
#include "volume/format/bitlk.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/loopaes.h"
#include "volume/format/luks2_reencrypt.h"
#include "volume/format/luks_admin.h"
#include "volume/format/tcrypt.h"
#include "volume/store/mem_backing_store.h"
#include "volume/store/rbd_backing_store.h"

// Largest single allocation seen while `g_track` is set.
static std::atomic<bool> g_track{false};
static std::atomic<std::size_t> g_max_alloc{0};

// Replaceable global allocation functions (malloc-backed) so every `new` is measured. Not under
// ASan: it owns new/delete there (and reports oversized allocations itself).
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define CRYPTMAP_COUNT_ALLOCATIONS 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_track.load(std::memory_order_relaxed)) {
    std::size_t cur = g_max_alloc.load(std::memory_order_relaxed);
    while (n > cur && !g_max_alloc.compare_exchange_weak(cur, n)) {
    }
  }
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop
#endif

namespace cryptmap::fuzz {
namespace {

using Bytes = std::vector<std::uint8_t>;
constexpr std::size_t kMaxAllocation = 64u << 20;

struct Tracker {
  Tracker() {
    g_max_alloc = 0;
    g_track = true;
  }
  ~Tracker() { g_track = false; }
};

Bytes from_store(const volume::BackingStore& s, std::size_t n) {
  std::vector<std::byte> b(n);
  EXPECT_TRUE(s.read_at(ByteOffset{0}, b));
  Bytes out(n);
  std::memcpy(out.data(), b.data(), n);
  return out;
}

volume::PbkdfOptions fast() {
  volume::PbkdfOptions p;
  p.type = "pbkdf2";
  p.force_iterations = 1000;
  return p;
}

// A LUKS2 header image with a small keyslots area (data at 288 KiB): headers + one keyslot.
Bytes luks2_seed() {
  volume::MemBackingStore s(320u << 10, "mem:seed2");
  volume::LuksFormatOptions o;
  o.type = volume::VolumeType::kLuks2;
  o.pbkdf = fast();
  o.offset_sectors = 576;
  o.data_device_bytes = 320u << 10;
  o.label = "seed";
  auto r = volume::luks_format(s, o, std::as_bytes(std::span("seed passphrase", 15)));
  EXPECT_TRUE(r) << r.error().message();
  return from_store(s, 576 * 512);
}

// A detached LUKS2 header (data at offset 0) in decryption, stopped after one 64 KiB hotzone:
// linear segments, a backward reencrypt keyslot, no new digest (docs/reencrypt.md §11). The
// first 288 KiB: both headers and the first keyslot.
Bytes luks2_decrypt_seed() {
  volume::MemBackingStore hdr(16u << 20, "mem:seed-dec.hdr");
  volume::MemBackingStore data(256u << 10, "mem:seed-dec.img");
  volume::LuksFormatOptions o;
  o.type = volume::VolumeType::kLuks2;
  o.pbkdf = fast();
  o.detached_header = true;
  o.offset_sectors = 0;
  o.data_device_bytes = 256u << 10;
  const auto pass = std::as_bytes(std::span("seed passphrase", 15));
  auto r = volume::luks_format(hdr, o, pass);
  EXPECT_TRUE(r) << r.error().message();
  volume::ReencryptInitOptions io;
  io.mode = "decrypt";
  io.pbkdf = fast();
  io.data = &data;
  auto i = volume::reencrypt_init(hdr, pass, io);
  EXPECT_TRUE(i) << i.error().message();
  volume::ReencryptRunOptions ro;
  ro.max_hotzone_bytes = 64u << 10;
  ro.data = &data;
  int calls = 0;
  ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 2; };
  auto run = volume::reencrypt_run(hdr, pass, ro);
  EXPECT_TRUE(run && !run->finished);
  return from_store(hdr, 288u << 10);
}

// A whole small image in encryption with a data shift (docs/reencrypt.md §13), stopped after one
// of its two hotzones: the moved first segment, linear and crypt segments, three backups, a
// datashift reencrypt keyslot. 168 KiB shift (a 256-bit key's keyslot, the 4 KiB reencrypt
// area), 336 KiB of data: 672 KiB in all.
Bytes luks2_shift_seed() {
  constexpr std::uint64_t kShift = 168u << 10, kImage = 4 * kShift;
  volume::MemBackingStore img(kImage, "mem:seed-shift.img");
  volume::EncryptShiftOptions o;
  o.reduce_bytes = 2 * kShift;
  o.format.key_bits = 256;
  o.format.pbkdf = fast();
  const auto pass = std::as_bytes(std::span("seed passphrase", 15));
  auto i = volume::reencrypt_encrypt_shift_init(img, pass, o);
  EXPECT_TRUE(i) << i.error().message();
  volume::ReencryptRunOptions ro;
  int calls = 0;
  ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 2; };
  auto run = volume::reencrypt_run(img, pass, ro);
  EXPECT_TRUE(run && !run->finished);
  return from_store(img, kImage);
}

Bytes luks1_seed() {
  volume::MemBackingStore s(2u << 20, "mem:seed1");
  volume::LuksFormatOptions o;
  o.type = volume::VolumeType::kLuks1;
  o.key_bits = 256;
  o.pbkdf = fast();
  o.data_device_bytes = 2u << 20;
  o.offset_sectors = 2056;  // right after the eight keyslot areas
  auto r = volume::luks_format(s, o, std::as_bytes(std::span("seed passphrase", 15)));
  EXPECT_TRUE(r) << r.error().message();
  return from_store(s, 2056 * 512);
}

const char* kCipherSeeds[] = {"aes-xts-plain64",
                              "aes-cbc-essiv:sha256",
                              "capi:xts(aes)-plain64",
                              "twofish-cbc-plain",
                              "aes:64-cbc-lmk",
                              "aes-ecb",
                              "serpent-xts-plain64",
                              "aes:4-cbc-tcw",
                              "capi:gcm(aes)-random",
                              "sha256:16",
                              "ripemd160",
                              "plain:32",
                              "aes",
                              "cipher_null-ecb",
                              "camellia-xts-benbi"};
const char* kJsonTokens[] = {"\"",
                             "{",
                             "}",
                             "[",
                             "]",
                             ",",
                             ":",
                             "\"0\"",
                             "\"offset\"",
                             "\"size\"",
                             "\"99999999999999999999\"",
                             "-1",
                             "4294967296",
                             "18446744073709551616",
                             "\"dynamic\"",
                             "\"luks2\"",
                             "0",
                             "1e999",
                             "null",
                             "true",
                             "\"\\u0000\"",
                             "\"keyslots\"",
                             "\"segments\"",
                             "\"digests\"",
                             "\"config\"",
                             "\"area\"",
                             "\"kdf\"",
                             "\"argon2id\"",
                             "\"pbkdf2\"",
                             "\"requirements\"",
                             "\"mandatory\"",
                             "\"crypt\"",
                             "\"reencrypt\"",
                             "\"online-reencrypt-v2\"",
                             "\"linear\"",
                             "\"decrypt\"",
                             "\"backward\"",
                             "\"in-reencryption\"",
                             "\"backup-final\"",
                             "\"backup-moved-segment\"",
                             "\"datashift\"",
                             "\"shift_size\"",
                             "[[[[[[[[[[[[",
                             "\"9\""};

class Mutator {
 public:
  explicit Mutator(std::uint32_t seed) : rng_(seed) {}
  std::size_t below(std::size_t n) {
    return n ? std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_) : 0;
  }
  // Byte-level: flips, interesting values, big-endian integer overwrites, truncation.
  void bytes(Bytes& b, std::size_t window) {
    if (b.empty()) return;
    const std::size_t w = std::min(window, b.size());
    switch (below(6)) {
      case 0:
        b[below(w)] ^= static_cast<std::uint8_t>(1u << below(8));
        break;
      case 1:
        b[below(w)] =
            static_cast<std::uint8_t>(std::array<int, 5>{0, 0xff, 0x7f, 0x80, '0'}[below(5)]);
        break;
      case 2: {  // overwrite a BE32/BE64 field with an extreme value
        const std::size_t at = below(w);
        const std::uint64_t v =
            std::array<std::uint64_t, 5>{0, 1, 0xffffffffu, ~0ull, 0x80000000u}[below(5)];
        for (std::size_t i = 0; i < 8 && at + i < b.size(); ++i)
          b[at + i] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
        break;
      }
      case 3:
        b.resize(below(b.size() + 1));
        break;
      case 4: {  // one offset for both: two draws could run the memset past the end
        const std::size_t at = below(w);
        std::memset(b.data() + at, 0, std::min<std::size_t>(16, b.size() - at));
        break;
      }
      default:
        for (int i = 0; i < 8; ++i) b[below(w)] = static_cast<std::uint8_t>(below(256));
        break;
    }
  }
  // Token-level mutation of JSON text.
  void json(std::string& t) {
    const std::size_t at = below(t.size() + 1);
    switch (below(4)) {
      case 0:
        t.insert(at, kJsonTokens[below(std::size(kJsonTokens))]);
        break;
      case 1:
        t.erase(at, below(12));
        break;
      case 2: {  // replace a quoted number
        auto q = t.find("\"", at);
        if (q != std::string::npos && q + 1 < t.size() &&
            std::isdigit(static_cast<unsigned char>(t[q + 1]))) {
          auto e = t.find('"', q + 1);
          if (e != std::string::npos)
            t.replace(q + 1, e - q - 1, std::to_string(rng_()) + std::to_string(rng_()));
        }
        break;
      }
      default:
        if (!t.empty()) t[below(t.size())] = static_cast<char>(below(128));
        break;
    }
  }
  std::mt19937 rng_;
};

std::string json_text_of(const Bytes& img) {
  const char* p = reinterpret_cast<const char*>(img.data()) + 4096;
  return std::string(p, strnlen(p, 12288));
}

// Writes `text` into the primary JSON area of `img` and fixes the primary checksum, so the
// mutation reaches the JSON validation instead of stopping at the checksum.
void put_json_with_checksum(Bytes& img, const std::string& text) {
  std::memset(img.data() + 4096, 0, 12288);
  std::memcpy(img.data() + 4096, text.data(), std::min<std::size_t>(text.size(), 12288));
  std::array<std::byte, 4096> bin{};
  std::memcpy(bin.data(), img.data(), 4096);
  std::memset(bin.data() + 448, 0, 64);
  std::array<std::byte, 64> csum{};
  auto area = std::span(reinterpret_cast<const std::byte*>(img.data()) + 4096, 12288);
  ASSERT_TRUE(volume::luks2::compute_checksum("sha256", bin, area, csum));
  std::memcpy(img.data() + 448, csum.data(), 64);
  // Damage the secondary so the mutated primary is the one validated.
  img[16384] ^= 0xff;
}

TEST(FuzzReplay, SeedsAreAccepted) {
  const Bytes l2 = luks2_seed();
  const Bytes l1 = luks1_seed();
  EXPECT_EQ(luks2_image(l2.data(), l2.size()), 0);
  EXPECT_EQ(luks1_header(l1.data(), l1.size()), 0);
  // The seeds really parse (so mutations start from a valid header).
  std::vector<std::byte> a(l2.size());
  std::memcpy(a.data(), l2.data(), l2.size());
  volume::MemBackingStore s(l2.size());
  ASSERT_TRUE(s.write_at(ByteOffset{0}, a));
  EXPECT_TRUE(volume::is_luks(s, volume::VolumeType::kLuks2));
}

TEST(FuzzReplay, Luks1Header) {
  const Bytes seed = luks1_seed();
  Mutator m(1);
  Tracker t;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = seed;
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) m.bytes(b, 1024);
    luks1_header(b.data(), b.size());
    if (i % 4 == 0) luks1_header(b.data(), std::min<std::size_t>(b.size(), 1024));
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, Luks2ImageBinaryHeaders) {
  const Bytes seed = luks2_seed();
  Mutator m(2);
  Tracker t;
  for (int i = 0; i < 800; ++i) {
    Bytes b = seed;
    // Mutate either copy's binary header (offsets 0 and 16384).
    const std::size_t base = m.below(2) ? 16384 : 0;
    Bytes head(b.begin() + static_cast<std::ptrdiff_t>(base),
               b.begin() + static_cast<std::ptrdiff_t>(base + 4096));
    for (std::size_t k = 0, n = 1 + m.below(3); k < n; ++k) m.bytes(head, 512);
    if (head.size() == 4096)
      std::memcpy(b.data() + base, head.data(), 4096);
    else
      b.resize(base + head.size());
    luks2_image(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, Luks2ImageJsonWithValidChecksum) {
  const Bytes seed = luks2_seed();
  const std::string text = json_text_of(seed);
  ASSERT_FALSE(text.empty());
  Mutator m(3);
  Tracker t;
  for (int i = 0; i < 1500; ++i) {
    std::string j = text;
    for (std::size_t k = 0, n = 1 + m.below(3); k < n; ++k) m.json(j);
    Bytes b = seed;
    put_json_with_checksum(b, j);
    luks2_image(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, Luks2ImageInEncryptionWithADataShift) {
  const Bytes seed = luks2_shift_seed();
  const std::string text = json_text_of(seed);
  ASSERT_NE(text.find("\"backup-moved-segment\""), std::string::npos);
  EXPECT_EQ(luks2_image(seed.data(), seed.size()), 0);
  Mutator m(11);
  Tracker t;
  for (int i = 0; i < 400; ++i) {
    std::string j = text;
    for (std::size_t k = 0, n = 1 + m.below(3); k < n; ++k) m.json(j);
    Bytes b = seed;
    put_json_with_checksum(b, j);
    luks2_image(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, Luks2ImageInDecryption) {
  const Bytes seed = luks2_decrypt_seed();
  const std::string text = json_text_of(seed);
  ASSERT_NE(text.find("\"linear\""), std::string::npos);
  EXPECT_EQ(luks2_image(seed.data(), seed.size()), 0);
  Mutator m(7);
  Tracker t;
  for (int i = 0; i < 600; ++i) {
    std::string j = text;
    for (std::size_t k = 0, n = 1 + m.below(3); k < n; ++k) m.json(j);
    Bytes b = seed;
    put_json_with_checksum(b, j);
    luks2_image(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, Luks2JsonArea) {
  const std::string text = json_text_of(luks2_seed());
  Mutator m(4);
  Tracker t;
  for (int i = 0; i < 4000; ++i) {
    std::string j = text;
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) m.json(j);
    Bytes area(12288, 0);
    std::memcpy(area.data(), j.data(), std::min(j.size(), area.size()));
    luks2_json(area.data(), area.size());
    luks2_json(reinterpret_cast<const std::uint8_t*>(j.data()), j.size());  // no NUL at all
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

// Tokens as systemd-cryptenroll and cryptsetup write them, and one with what serializers differ on.
const char* kTokenSeeds[] = {
    R"({"type":"systemd-tpm2","keyslots":["0"],"tpm2-blob":"AJ4AIBcN1qYm","tpm2-pcrs":[7],)"
    R"("tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"6c0b","tpm2-pin":false})",
    R"({"type":"systemd-fido2","keyslots":[],"fido2-credential":"q2xh","fido2-salt":"c2Fs",)"
    R"("fido2-rp":"io.systemd.cryptsetup","fido2-clientPin-required":true})",
    R"({"type":"luks2-keyring","keyslots":["0"],"key_description":"cryptsetup:x"})",
    R"({"type":"x","keyslots":[],"s":"a/b\/é","n":[-1,18446744073709551615,1.50,{}]})"};

TEST(FuzzReplay, Luks2Token) {
  Mutator m(11);
  for (const char* seed : kTokenSeeds) {  // the seeds unmutated first
    std::string in = std::string(1, '\0') + seed;
    luks2_token(reinterpret_cast<const std::uint8_t*>(in.data()), in.size());
  }
  Tracker t;
  for (int i = 0; i < 1500; ++i) {
    std::string j = kTokenSeeds[m.below(std::size(kTokenSeeds))];
    for (std::size_t k = 0, n = m.below(4); k < n; ++k) m.json(j);
    j.insert(j.begin(), static_cast<char>(m.below(256)));
    luks2_token(reinterpret_cast<const std::uint8_t*>(j.data()), j.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, CipherSpecs) {
  Mutator m(5);
  Tracker t;
  for (int i = 0; i < 20000; ++i) {
    std::string s = kCipherSeeds[m.below(std::size(kCipherSeeds))];
    for (std::size_t k = 0, n = m.below(4); k < n; ++k) {
      const std::size_t at = m.below(s.size() + 1);
      switch (m.below(3)) {
        case 0:
          s.insert(at, 1, "-:()0123456789abcxyz\xff"[m.below(22)]);
          break;
        case 1:
          s.erase(at, 1 + m.below(3));
          break;
        default:
          if (!s.empty()) s[m.below(s.size())] = static_cast<char>(m.below(256));
          break;
      }
    }
    cipher_spec(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, StoreUris) {
  const char* seeds[] = {"rbd:pool/image",
                         "rbd:p/i@snap:conf=/etc/ceph/ceph.conf:id=admin",
                         "nbd+unix:///export?socket=/run/nbd.sock",
                         "nbd://host:10809/e",
                         "rbd:p/i:id=x:conf=y",
                         "/var/lib/disk.img"};
  Mutator m(6);
  Tracker t;
  for (int i = 0; i < 20000; ++i) {
    std::string s = seeds[m.below(std::size(seeds))];
    for (std::size_t k = 0, n = m.below(4); k < n; ++k) {
      const std::size_t at = m.below(s.size() + 1);
      switch (m.below(3)) {
        case 0:
          s.insert(at, 1, ":/@=+rbdnb\0\xff"[m.below(12)]);
          break;
        case 1:
          s.erase(at, 1 + m.below(3));
          break;
        default:
          if (!s.empty()) s[m.below(s.size())] = static_cast<char>(m.below(256));
          break;
      }
    }
    store_uri(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
  // The parser's verdicts on the seeds (so the target cannot silently stop parsing).
  EXPECT_TRUE(volume::parse_rbd_spec("rbd:p/i@snap:conf=/c:id=admin"));
  EXPECT_EQ(volume::parse_rbd_spec("rbd:p/i@snap:conf=/c:id=admin")->snap, "snap");
  EXPECT_FALSE(volume::parse_rbd_spec("rbd:p/i:nope=1"));
}

TEST(FuzzReplay, BitlkSeedParsesAndUnlocksWithItsClearKey) {
  const Bytes seed = bitlk_seed();
  EXPECT_EQ(bitlk_metadata(seed.data(), seed.size()), 0);
  const auto img = bitlk_image(seed.data(), seed.size());
  volume::MemBackingStore s(img.size());
  ASSERT_TRUE(s.write_at(ByteOffset{0}, img));
  auto h = volume::BitlkHeader::load(s);
  ASSERT_TRUE(h) << h.error().message();
  auto vk = (*h)->unlock({});
  ASSERT_TRUE(vk) << vk.error().message();
  EXPECT_EQ(vk->size(), 32u);
}

TEST(FuzzReplay, BitlkMetadata) {
  const Bytes seed = bitlk_seed();
  Mutator m(7);
  Tracker t;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = seed;
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) m.bytes(b, b.size());
    bitlk_metadata(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, Fvault2Metadata) {
  const Bytes seed = fvault2_seed();
  EXPECT_EQ(fvault2_metadata(seed.data(), seed.size()), 0);
  Mutator m(8);
  Tracker t;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = seed;
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) m.bytes(b, b.size());
    fvault2_metadata(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

// A decrypted VeraCrypt header (version 5, data at 128 KiB, 1 MiB volume, hidden 64 KiB), the
// steering byte set to fix its CRCs, and the image size.
Bytes tcrypt_seed() {
  Bytes b(521, 0);
  b[69] = 5;
  b[70] = 1;
  b[71] = 0x0b;
  b[94 + 3] = 0x01;   // hidden volume size 0x10000 at 92..99 (big-endian)
  b[100 + 5] = 0x10;  // volume size 0x100000 at 100..107
  b[108 + 5] = 0x02;  // mk_offset 0x20000 at 108..115
  b[116 + 5] = 0x10;  // mk_size
  b[128 + 2] = 0x02;  // sector size 512
  for (std::size_t i = 256; i < 512; ++i) b[i] = static_cast<std::uint8_t>(i * 7);
  b[512] = 0x03;
  b[513 + 5] = 0x20;  // image 2 MiB
  return b;
}

TEST(FuzzReplay, TcryptHeader) {
  const Bytes seed = tcrypt_seed();
  {
    // The seed, with the magic and CRCs the steering byte asks for, parses and maps (so
    // mutations start from a valid header).
    std::vector<std::byte> h(512);
    std::memcpy(h.data(), seed.data(), 512);
    std::memcpy(h.data() + 64, "VERA", 4);
    auto crc = [&](std::size_t off, std::size_t n) {
      std::uint32_t c = 0xFFFFFFFFu;
      for (std::size_t i = off; i < off + n; ++i) {
        c ^= static_cast<std::uint8_t>(h[i]);
        for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      }
      return ~c;
    };
    auto put = [&](std::size_t off, std::uint32_t v) {
      for (int i = 0; i < 4; ++i) h[off + i] = static_cast<std::byte>(v >> (24 - 8 * i));
    };
    put(72, crc(256, 256));
    put(252, crc(64, 188));
    auto hdr = volume::tcrypt_parse_header(h, true);
    ASSERT_TRUE(hdr) << hdr.error().message();
    EXPECT_EQ(hdr->mk_offset, 0x20000u);
    EXPECT_TRUE(volume::tcrypt_layout(*hdr, "aes", "xts-plain64", {}, 2u << 20));
  }
  Mutator m(6);
  Tracker t;
  for (int i = 0; i < 6000; ++i) {
    Bytes b = seed;
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) m.bytes(b, b.size());
    if (i % 50 == 0 && b.size() > 512)
      b[512] |= 0x20;  // now and then the whole trial
    else if (b.size() > 512)
      b[512] &= static_cast<std::uint8_t>(~0x20);
    tcrypt_header(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, LoopaesKeyfile) {
  const Bytes seed = loopaes_keyfile_seed();
  {
    // The seed is a valid multi-key-v3 file (so mutations start from one that parses).
    auto k = volume::loopaes_parse_keyfile(
        std::span(reinterpret_cast<const std::byte*>(seed.data()) + 1, seed.size() - 1), {});
    ASSERT_TRUE(k) << k.error().message();
    EXPECT_EQ(k->key_count, 65u);
  }
  Mutator m(7);
  Tracker t;
  for (int i = 0; i < 20000; ++i) {
    Bytes b = seed;
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) {
      if (m.below(3) == 0 && b.size() > 1)
        b[1 + m.below(b.size() - 1)] = std::array<std::uint8_t, 4>{'\n', '\r', 0, 'x'}[m.below(4)];
      else
        m.bytes(b, b.size());
    }
    loopaes_keyfile(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, IntegritySuperblock) {
  const Bytes seed = integrity_superblock_seed();
  EXPECT_EQ(integrity_superblock(seed.data(), seed.size()), 0);
  Mutator m(9);
  Tracker t;
  for (int i = 0; i < 20000; ++i) {
    Bytes b = seed;
    // Mutate the 64-byte struct and the two sizes mostly (the rest of the sector is padding).
    for (std::size_t k = 0, n = 1 + m.below(4); k < n; ++k) {
      if (m.below(4) == 0)
        m.bytes(b, b.size());
      else if (const std::size_t at = m.below(2) == 0 ? m.below(64) : 512 + m.below(16);
               at < b.size())
        b[at] = static_cast<std::uint8_t>(m.below(256));
    }
    integrity_superblock(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, IntegrityJournal) {
  const Bytes seed = integrity_journal_seed();
  EXPECT_EQ(integrity_journal(seed.data(), seed.size()), 0);
  Mutator m(10);
  Tracker t;
  for (int i = 0; i < 3000; ++i) {
    Bytes b = seed;
    b[0] = static_cast<std::uint8_t>(m.below(4));
    b[1] = static_cast<std::uint8_t>(m.below(256));
    // A few edits: commit ids (the last 8 bytes of a sector), entry sectors, anything.
    for (std::size_t k = 0, n = m.below(6); k < n; ++k) {
      std::uint32_t at = static_cast<std::uint32_t>(m.below(1u << 20));
      if (m.below(2) == 0) at = at / 512 * 512 + 504 + static_cast<std::uint32_t>(m.below(8));
      for (int x = 0; x < 4; ++x) b.push_back(static_cast<std::uint8_t>(at >> (8 * x)));
      b.push_back(static_cast<std::uint8_t>(m.below(256)));
    }
    integrity_journal(b.data(), b.size());
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

// The control protocol: hostile bodies never crash, allocate hugely or decode to something
// that encodes differently (control_message checks the round trip).
TEST(FuzzReplay, ControlMessages) {
  Mutator m(7);
  Tracker t;
  for (int which = 0; which < 5; ++which) {
    const Bytes seed = control_seed(which);
    EXPECT_EQ(control_message(seed.data(), seed.size()), 0);
    for (int i = 0; i < 5000; ++i) {
      Bytes b = seed;
      for (std::size_t k = 0, n = 1 + m.below(3); k < n; ++k) m.bytes(b, b.size());
      control_message(b.data(), b.size());
    }
  }
  EXPECT_LT(g_max_alloc.load(), kMaxAllocation);
}

TEST(FuzzReplay, WriteSeeds) {
  const char* dir = std::getenv("CRYPTMAP_FUZZ_SEED_DIR");
  if (!dir) GTEST_SKIP() << "set CRYPTMAP_FUZZ_SEED_DIR to write the seed corpus";
  auto put = [&](const std::string& sub, const std::string& name, const void* p, std::size_t n) {
    std::filesystem::create_directories(std::string(dir) + "/" + sub);
    test::write_file(std::string(dir) + "/" + sub + "/" + name,
                     std::span(static_cast<const std::byte*>(p), n));
  };
  const Bytes l1 = luks1_seed(), l2 = luks2_seed();
  put("luks1_header", "seed", l1.data(), 1024);
  put("luks2_image", "seed", l2.data(), l2.size());
  const Bytes dec = luks2_decrypt_seed();
  put("luks2_image", "seed-decrypt", dec.data(), dec.size());
  const Bytes shift = luks2_shift_seed();
  put("luks2_image", "seed-datashift", shift.data(), shift.size());
  Bytes area(l2.begin() + 4096, l2.begin() + 16384);
  put("luks2_json", "seed", area.data(), area.size());
  const Bytes bl = bitlk_seed();
  put("bitlk_metadata", "seed", bl.data(), bl.size());
  const Bytes fv = fvault2_seed();
  put("fvault2_metadata", "seed", fv.data(), fv.size());
  int i = 0;
  for (const char* c : kCipherSeeds)
    put("cipher_spec", "seed" + std::to_string(i++), c, std::strlen(c));
  for (const char* c : {"rbd:pool/image@snap:conf=/etc/ceph/ceph.conf:id=admin",
                        "nbd+unix:///export?socket=/run/nbd.sock"})
    put("store_uri", "seed" + std::to_string(i++), c, std::strlen(c));
  for (const char* c : kTokenSeeds) {
    const std::string in = std::string(1, '\0') + c;
    put("luks2_token", "seed" + std::to_string(i++), in.data(), in.size());
  }
  const Bytes tc = tcrypt_seed();
  put("tcrypt_header", "seed", tc.data(), tc.size());
  const Bytes la = loopaes_keyfile_seed();
  put("loopaes_keyfile", "seed", la.data(), la.size());
  const Bytes is = integrity_superblock_seed();
  put("integrity_superblock", "seed", is.data(), is.size());
  const Bytes ij = integrity_journal_seed();
  put("integrity_journal", "seed", ij.data(), ij.size());
  for (int which = 0; which < 5; ++which) {
    const Bytes c = control_seed(which);
    put("control_message", "seed" + std::to_string(which), c.data(), c.size());
  }
}

}  // namespace
}  // namespace cryptmap::fuzz

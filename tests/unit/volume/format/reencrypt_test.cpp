// volume/format/luks2_reencrypt.h on in-memory images: a whole run keeps the data (decrypted
// with the new key afterwards), a stop after some hotzones resumes, a wrong passphrase and a
// tampered reencryption keyslot change nothing (docs/reencrypt.md §5), and an image in
// reencryption is served through its two crypt segments (§9), an online run keeps every
// write made through the served volume while the boundary moves under it (§10), and a
// decryption under a detached header goes backward through linear segments to plaintext (§11).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "crypto/cipher_spec.h"
#include "crypto/sector_cipher.h"
#include "tests/support/data.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/luks.h"
#include "volume/format/luks2_reencrypt.h"
#include "volume/format/luks_admin.h"
#include "volume/segment/segment_map.h"
#include "volume/store/mem_backing_store.h"
#include "volume/volume.h"

namespace cryptmap::volume {
namespace {

constexpr std::uint64_t kDataOffset = 16 << 20;
constexpr std::uint64_t kData = 2 << 20;

std::span<const std::byte> pass(const char* s) {
  return {reinterpret_cast<const std::byte*>(s), std::strlen(s)};
}

// Reads the data area and decrypts it with the image's current key (one segment, no
// reencryption).
std::vector<std::byte> plaintext(const MemBackingStore& img) {
  auto h = load_luks_header(img, std::nullopt);
  EXPECT_TRUE(h) << h.error().message();
  if (!h) return {};
  auto k = (*h)->unlock(pass("right"), std::nullopt);
  EXPECT_TRUE(k) << k.error().message();
  if (!k) return {};
  const VolumeLayout l = (*h)->layout();
  crypto::SectorCipherConfig cfg;
  cfg.spec = l.cipher;
  cfg.sector_size = l.sector_size;
  cfg.iv_offset = l.iv_offset;
  auto c = crypto::make_sector_cipher(cfg, k->volume_key.span());
  EXPECT_TRUE(c) << c.error().message();
  std::vector<std::byte> data(kData);
  EXPECT_TRUE(img.read_at(ByteOffset{l.data_offset_bytes}, data));
  EXPECT_TRUE((*c)->decrypt({data, {}, SectorIndex{0}}));
  return data;
}

// A LUKS2 image (fast pbkdf2, 4096-byte sectors) whose data decrypts to deterministic bytes.
std::unique_ptr<MemBackingStore> image_with_data() {
  auto img = std::make_unique<MemBackingStore>(kDataOffset + kData, "mem:reenc.img");
  LuksFormatOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  o.data_device_bytes = kDataOffset + kData;
  auto f = luks_format(*img, o, pass("right"));
  EXPECT_TRUE(f) << f.error().message();
  crypto::SectorCipherConfig cfg;
  cfg.spec = *crypto::CipherSpec::parse("aes-xts-plain64");
  cfg.sector_size = 4096;
  auto c = crypto::make_sector_cipher(cfg, f->volume_key.span());
  auto data = test::deterministic_bytes(kData, 18);
  EXPECT_TRUE((*c)->encrypt({data, {}, SectorIndex{0}}));
  EXPECT_TRUE(img->write_at(ByteOffset{kDataOffset}, data));
  return img;
}

ReencryptInitOptions init_options(const char* resilience) {
  ReencryptInitOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  o.resilience = resilience;
  o.cipher = "aes-cbc-essiv:sha256";
  o.key_bits = 256;
  o.sector_size = 512;
  return o;
}

std::vector<std::byte> all_of(const MemBackingStore& img) {
  std::vector<std::byte> b(img.size_bytes());
  EXPECT_TRUE(img.read_at(ByteOffset{0}, b));
  return b;
}

TEST(Reencrypt, AWholeRunKeepsTheDataUnderTheNewKeyForEveryResilienceMode) {
  for (const char* res : {"checksum", "journal", "none"}) {
    auto img = image_with_data();
    ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options(res)));
    auto st = reencrypt_status(*img);
    ASSERT_TRUE(st);
    EXPECT_TRUE(st->in_reencryption);
    EXPECT_EQ(st->resilience, res);
    EXPECT_EQ(st->total_bytes, kData);
    ReencryptRunOptions ro;
    ro.max_hotzone_bytes = 256 << 10;
    auto r = reencrypt_run(*img, pass("right"), ro);
    ASSERT_TRUE(r) << res << ": " << r.error().message();
    EXPECT_TRUE(r->finished);
    auto h = load_luks_header(*img, std::nullopt);
    ASSERT_TRUE(h) << h.error().message();
    EXPECT_EQ((*h)->layout().cipher.to_string(), "aes-cbc-essiv:sha256");
    EXPECT_EQ((*h)->layout().sector_size, 512u);
    EXPECT_EQ(plaintext(*img), test::deterministic_bytes(kData, 18)) << res;
  }
}

TEST(Reencrypt, AStoppedRunResumesWhereItStopped) {
  auto img = image_with_data();
  ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options("checksum")));
  ReencryptRunOptions ro;
  ro.max_hotzone_bytes = 256 << 10;
  int calls = 0;
  ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 3; };
  auto first = reencrypt_run(*img, pass("right"), ro);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_FALSE(first->finished);
  EXPECT_EQ(first->bytes, 512u << 10);
  auto st = reencrypt_status(*img);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->done_bytes, 512u << 10);
  EXPECT_FALSE(st->crashed);
  ro.progress = nullptr;
  auto second = reencrypt_run(*img, pass("right"), ro);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_TRUE(second->finished);
  EXPECT_EQ(second->bytes, kData - (512u << 10));
  EXPECT_EQ(plaintext(*img), test::deterministic_bytes(kData, 18));
}

TEST(Reencrypt, AWrongPassphraseChangesNothing) {
  auto img = image_with_data();
  const auto before = all_of(*img);
  auto r = reencrypt_init(*img, pass("wrong"), init_options("checksum"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kBadKey);
  EXPECT_EQ(all_of(*img), before);
  ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options("checksum")));
  const auto initialized = all_of(*img);
  auto run = reencrypt_run(*img, pass("wrong"), {});
  ASSERT_FALSE(run);
  EXPECT_EQ(run.error().code, Errc::kBadKey);
  EXPECT_EQ(all_of(*img), initialized);
}

TEST(Reencrypt, ATamperedReencryptKeyslotIsRefusedBeforeAnyDataMoves) {
  auto img = image_with_data();
  ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options("checksum")));
  // Shrink the checksum block size in the JSON: valid LUKS2, but not what the digest covers.
  auto disk = luks2::read_luks2_header(*img, "mem");
  ASSERT_TRUE(disk);
  auto j = nlohmann::ordered_json::parse(disk->meta.json_text);
  for (auto& [id, k] : j["keyslots"].items())
    if (k["type"] == "reencrypt") k["area"]["sector_size"] = 512;
  const auto salt = disk->bin.salt;
  ASSERT_TRUE(luks2::write_luks2_header(*img, disk->bin, salt, disk->other_salt, j.dump()));
  const auto before = all_of(*img);
  auto r = reencrypt_run(*img, pass("right"), {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCorrupt);
  EXPECT_STREQ(r.error().what, "Reencryption metadata is invalid.");
  EXPECT_EQ(all_of(*img), before);
}

TEST(Reencrypt, AnUnknownRequirementIsRefusedAndChangesNothing) {
  auto img = image_with_data();
  auto disk = luks2::read_luks2_header(*img, "mem");
  ASSERT_TRUE(disk);
  auto j = nlohmann::ordered_json::parse(disk->meta.json_text);
  j["config"]["requirements"] = {{"mandatory", {"cryptmap-test-unknown"}}};
  const auto salt = disk->bin.salt;
  ASSERT_TRUE(luks2::write_luks2_header(*img, disk->bin, salt, disk->other_salt, j.dump()));
  const auto before = all_of(*img);
  auto r = reencrypt_init(*img, pass("right"), init_options("checksum"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
  EXPECT_STREQ(r.error().what, "Unmet LUKS2 requirements detected.");
  EXPECT_EQ(all_of(*img), before);
}

TEST(Reencrypt, AnImageInReencryptionIsNotOpenedAndNotInitializedTwice) {
  auto img = image_with_data();
  ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options("journal")));
  auto h = load_luks_header(*img, std::nullopt);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error().code, Errc::kUnsupported);
  auto again = reencrypt_init(*img, pass("right"), init_options("journal"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kBusy);
}

// A detached header (data at offset 0) over a data store of kData bytes whose plaintext is
// deterministic: decryption's setting (docs/reencrypt.md §11).
struct Detached {
  std::unique_ptr<MemBackingStore> hdr, data;
};
Detached detached_with_data() {
  Detached d{std::make_unique<MemBackingStore>(kDataOffset, "mem:dec.hdr"),
             std::make_unique<MemBackingStore>(kData, "mem:dec.img")};
  LuksFormatOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  o.detached_header = true;
  o.offset_sectors = 0;
  o.data_device_bytes = kData;
  auto f = luks_format(*d.hdr, o, pass("right"));
  EXPECT_TRUE(f) << f.error().message();
  if (!f) return d;
  auto h = load_luks_header(*d.hdr, std::nullopt);
  EXPECT_TRUE(h && (*h)->layout().data_offset_bytes == 0);
  crypto::SectorCipherConfig cfg;
  cfg.spec = (*h)->layout().cipher;
  cfg.sector_size = (*h)->layout().sector_size;
  auto c = crypto::make_sector_cipher(cfg, f->volume_key.span());
  auto data = test::deterministic_bytes(kData, 19);
  EXPECT_TRUE((*c)->encrypt({data, {}, SectorIndex{0}}));
  EXPECT_TRUE(d.data->write_at(ByteOffset{0}, data));
  return d;
}

nlohmann::ordered_json header_json(const MemBackingStore& hdr) {
  auto disk = luks2::read_luks2_header(hdr, "mem");
  EXPECT_TRUE(disk);
  return disk ? nlohmann::ordered_json::parse(disk->meta.json_text) : nlohmann::ordered_json{};
}

TEST(Reencrypt, DecryptionGoesBackwardWithLinearSegmentsAndEndsInPlaintext) {
  for (const char* res : {"checksum", "journal", "none"}) {
    auto d = detached_with_data();
    ReencryptInitOptions io;
    io.mode = "decrypt";
    io.resilience = res;
    io.pbkdf.type = "pbkdf2";
    io.pbkdf.force_iterations = 1000;
    io.data = d.data.get();
    ASSERT_TRUE(reencrypt_init(*d.hdr, pass("right"), io)) << res;
    auto j = header_json(*d.hdr);
    EXPECT_EQ(j["keyslots"]["1"]["mode"], "decrypt");
    EXPECT_EQ(j["keyslots"]["1"]["direction"], "backward");
    EXPECT_EQ(j["segments"]["2"].dump(),
              R"({"type":"linear","offset":"0","size":"dynamic","flags":["backup-final"]})");
    EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["0","1"])");
    // Two hotzones of 256 KiB from the end, then a stop.
    ReencryptRunOptions ro;
    ro.max_hotzone_bytes = 256 << 10;
    ro.data = d.data.get();
    int calls = 0;
    ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 3; };
    auto first = reencrypt_run(*d.hdr, pass("right"), ro);
    ASSERT_TRUE(first) << res << ": " << first.error().message();
    EXPECT_FALSE(first->finished);
    auto st = reencrypt_status(*d.hdr, d.data.get());
    ASSERT_TRUE(st);
    EXPECT_EQ(st->done_bytes, 512u << 10);
    j = header_json(*d.hdr);
    const std::string left = std::to_string(kData - (512 << 10));
    // Post segments (backward): the encrypted rest, the plaintext from the boundary, backups.
    EXPECT_EQ(j["segments"]["0"]["type"], "crypt");
    EXPECT_EQ(j["segments"]["0"]["size"], left);
    EXPECT_EQ(j["segments"]["1"].dump(),
              R"({"type":"linear","offset":")" + left + R"(","size":"dynamic"})");
    EXPECT_EQ(j["segments"]["2"]["flags"][0], "backup-previous");
    EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["2","0"])");
    // The plaintext part is plain already, the rest still ciphertext.
    std::vector<std::byte> tail(512 << 10);
    ASSERT_TRUE(d.data->read_at(ByteOffset{kData - (512 << 10)}, tail));
    const auto want = test::deterministic_bytes(kData, 19);
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), want.end() - (512 << 10)));
    ro.progress = nullptr;
    auto second = reencrypt_run(*d.hdr, pass("right"), ro);
    ASSERT_TRUE(second) << res << ": " << second.error().message();
    EXPECT_TRUE(second->finished);
    j = header_json(*d.hdr);
    EXPECT_EQ(j["segments"].dump(), R"({"0":{"type":"linear","offset":"0","size":"dynamic"}})");
    EXPECT_TRUE(j["keyslots"].empty());
    EXPECT_TRUE(j["digests"].empty());
    EXPECT_FALSE(j["config"].contains("requirements"));
    std::vector<std::byte> all(kData);
    ASSERT_TRUE(d.data->read_at(ByteOffset{0}, all));
    EXPECT_EQ(all, want) << res;
  }
}

TEST(Reencrypt, DecryptionNeedsADetachedHeaderAtDataOffsetZero) {
  auto img = image_with_data();
  const auto before = all_of(*img);
  ReencryptInitOptions io;
  io.mode = "decrypt";
  auto r = reencrypt_init(*img, pass("right"), io);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsupported);
  EXPECT_EQ(all_of(*img), before);
}

TEST(Reencrypt, EncryptionGoesForwardFromLinearSegmentsUnderTheFormattedKey) {
  // A plain data store and a fresh detached header for it (docs/reencrypt.md §12).
  MemBackingStore hdr(kDataOffset, "mem:enc.hdr"), data(kData, "mem:enc.img");
  const auto plain = test::deterministic_bytes(kData, 20);
  ASSERT_TRUE(data.write_at(ByteOffset{0}, plain));
  LuksFormatOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  o.detached_header = true;
  o.offset_sectors = 0;
  o.sector_size = 512;
  o.data_device_bytes = kData;
  auto f = luks_format(hdr, o, pass("right"));
  ASSERT_TRUE(f) << f.error().message();
  ReencryptInitOptions io;
  io.mode = "encrypt";
  io.pbkdf = o.pbkdf;
  io.data = &data;
  ASSERT_TRUE(reencrypt_init(hdr, pass("right"), io));
  auto j = header_json(hdr);
  EXPECT_EQ(j["keyslots"]["1"]["mode"], "encrypt");
  EXPECT_EQ(j["keyslots"]["1"]["direction"], "forward");
  EXPECT_EQ(j["segments"]["0"].dump(), R"({"type":"linear","offset":"0","size":"dynamic"})");
  EXPECT_EQ(j["segments"]["1"]["type"], "linear");
  EXPECT_EQ(j["segments"]["2"]["type"], "crypt");
  EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["2"])");
  ReencryptRunOptions ro;
  ro.max_hotzone_bytes = 256 << 10;
  ro.data = &data;
  int calls = 0;
  ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 2; };
  auto first = reencrypt_run(hdr, pass("right"), ro);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_FALSE(first->finished);
  j = header_json(hdr);
  // Post segments (forward): the encrypted start, the plain rest, backups; digest: final first.
  EXPECT_EQ(j["segments"]["0"]["type"], "crypt");
  EXPECT_EQ(j["segments"]["0"]["size"], std::to_string(256 << 10));
  EXPECT_EQ(j["segments"]["1"].dump(), R"({"type":"linear","offset":")" +
                                           std::to_string(256 << 10) + R"(","size":"dynamic"})");
  EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["3","0"])");
  ro.progress = nullptr;
  auto second = reencrypt_run(hdr, pass("right"), ro);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_TRUE(second->finished);
  // Now a plain LUKS2 header whose key decrypts the data to what it was.
  auto h = load_luks_header(hdr, std::nullopt);
  ASSERT_TRUE(h) << h.error().message();
  auto k = (*h)->unlock(pass("right"), std::nullopt);
  ASSERT_TRUE(k);
  EXPECT_EQ(k->volume_key.size(), f->volume_key.size());
  EXPECT_EQ(std::memcmp(k->volume_key.data(), f->volume_key.data(), f->volume_key.size()), 0);
  crypto::SectorCipherConfig cfg;
  cfg.spec = (*h)->layout().cipher;
  cfg.sector_size = (*h)->layout().sector_size;
  auto c = crypto::make_sector_cipher(cfg, k->volume_key.span());
  ASSERT_TRUE(c);
  std::vector<std::byte> all(kData);
  ASSERT_TRUE(data.read_at(ByteOffset{0}, all));
  EXPECT_NE(all, plain);
  ASSERT_TRUE((*c)->decrypt({all, {}, SectorIndex{0}}));
  EXPECT_EQ(all, plain);
}

// Encryption with a data shift (docs/reencrypt.md §13): 2.5 MiB of plain data, a 2 MiB
// reduction (shift and data offset 1 MiB). The first MiB moves to the image's end at init; the
// hotzones go backward: [1.5, 2.5) MiB, then the short [1, 1.5) MiB, then the moved [0, 1) MiB.
constexpr std::uint64_t kMiB = std::uint64_t{1} << 20;
constexpr std::uint64_t kShiftData = 5 * kMiB / 2;

struct Shifted {
  std::unique_ptr<MemBackingStore> img;
  std::vector<std::byte> plain;
};
Shifted shifted_image() {
  Shifted s{std::make_unique<MemBackingStore>(kShiftData + 2 * kMiB, "mem:shift.img"),
            test::deterministic_bytes(kShiftData, 21)};
  EXPECT_TRUE(s.img->write_at(ByteOffset{0}, s.plain));
  EncryptShiftOptions o;
  o.reduce_bytes = 2 * kMiB;
  o.format.pbkdf.type = "pbkdf2";
  o.format.pbkdf.force_iterations = 1000;
  auto r = reencrypt_encrypt_shift_init(*s.img, pass("right"), o);
  EXPECT_TRUE(r) << r.error().message();
  return s;
}

// A handle on a store the test keeps, not owned: the header factory's product, or a second
// handle on the same image (the daemon opens the image twice: for serving and for the run).
class Borrowed final : public BackingStore {
 public:
  explicit Borrowed(BackingStore& s) : s_(s) {}
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
  const std::string& name() const noexcept override { return s_.name(); }

 private:
  BackingStore& s_;
};

// cryptsetup 2.6's datashift decryption (docs/reencrypt.md §11.1) of an image cryptmap encrypted
// with its header inside (data offset 1 MiB): the header goes to a store of its own, the data to
// the image's start; a failed write in the moved part is recovered from its checksums.
TEST(Reencrypt, DecryptionWithADataShiftMovesTheDataToTheImageStart) {
  Shifted s = shifted_image();
  auto enc = reencrypt_run(*s.img, pass("right"), {});
  ASSERT_TRUE(enc && enc->finished);
  const std::uint64_t data = kShiftData + kMiB;  // the encrypted volume: image size - 1 MiB
  std::vector<std::byte> header_before(kMiB), moved_src(kMiB);
  s.img->peek(0, header_before);
  s.img->peek(kMiB, moved_src);
  MemBackingStore hdr(kMiB, "mem:exported.hdr");
  bool made = false;
  auto factory = [&](std::uint64_t bytes) -> Result<std::unique_ptr<BackingStore>> {
    EXPECT_EQ(bytes, kMiB);
    made = true;
    return std::unique_ptr<BackingStore>(new Borrowed(hdr));
  };
  DecryptShiftOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  // Refused before anything is written or created.
  EXPECT_EQ(reencrypt_decrypt_shift_init(*s.img, pass("wrong"), o, factory).error().code,
            Errc::kBadKey);
  o.resilience = "none";
  EXPECT_EQ(reencrypt_decrypt_shift_init(*s.img, pass("right"), o, factory).error().code,
            Errc::kInvalid);
  EXPECT_FALSE(made);
  std::vector<std::byte> now(kMiB);
  s.img->peek(0, now);
  EXPECT_EQ(now, header_before);

  o.resilience = "checksum";
  auto init = reencrypt_decrypt_shift_init(*s.img, pass("right"), o, factory);
  ASSERT_TRUE(init) << init.error().message();
  auto j = header_json(hdr);
  const std::string mib = std::to_string(kMiB);
  EXPECT_EQ(j["segments"]["0"].dump(),
            R"({"type":"crypt","offset":"0","size":")" + mib +
                R"(","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512})");
  EXPECT_EQ(j["segments"]["1"]["offset"], std::to_string(2 * kMiB));
  EXPECT_EQ(j["segments"]["1"]["iv_tweak"], std::to_string(kMiB / 512));
  EXPECT_EQ(j["segments"]["2"]["flags"].dump(), R"(["backup-moved-segment"])");
  EXPECT_EQ(j["segments"]["4"].dump(),
            R"({"type":"linear","offset":"0","size":"dynamic","flags":["backup-final"]})");
  EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["0","1","2","3"])");
  EXPECT_EQ(j["keyslots"]["1"]["area"]["type"], "datashift-checksum");
  EXPECT_EQ(j["keyslots"]["1"]["area"]["shift_size"], mib);
  EXPECT_EQ(j["keyslots"]["1"]["direction"], "forward");
  EXPECT_EQ(j["config"]["requirements"]["mandatory"].dump(), R"(["online-reencrypt-v3"])");
  s.img->peek(0, now);  // the data's first MiB over the image's header
  EXPECT_EQ(now, moved_src);

  // One hotzone, then a stop: the plain part [1 MiB, 2 MiB) at image offset 1 MiB.
  ReencryptRunOptions ro;
  ro.data = s.img.get();
  int calls = 0;
  ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 2; };
  auto first = reencrypt_run(hdr, pass("right"), ro);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_FALSE(first->finished);
  j = header_json(hdr);
  EXPECT_EQ(j["segments"]["1"].dump(),
            R"({"type":"linear","offset":")" + mib + R"(","size":")" + mib + R"("})");
  EXPECT_EQ(j["segments"]["2"]["offset"], std::to_string(3 * kMiB));
  EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["3","5","0","2"])");
  auto st = reencrypt_status(hdr, s.img.get());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->done_bytes, kMiB);
  EXPECT_EQ(st->total_bytes, data);

  // The moved part's data write fails after its header named it: the next run recovers it from
  // the checksums and finishes.
  s.img->fail_writes(0, kMiB / 2);
  ro.progress = nullptr;
  EXPECT_FALSE(reencrypt_run(hdr, pass("right"), ro));
  s.img->fail_writes(0, 0);
  st = reencrypt_status(hdr, s.img.get());
  ASSERT_TRUE(st && st->crashed);
  EXPECT_EQ(st->done_bytes, data - kMiB);
  auto second = reencrypt_run(hdr, pass("right"), ro);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_TRUE(second->finished);
  j = header_json(hdr);
  EXPECT_EQ(j["segments"].dump(), R"({"0":{"type":"linear","offset":"0","size":"dynamic"}})");
  EXPECT_TRUE(j["keyslots"].empty());
  EXPECT_TRUE(j["digests"].empty());
  EXPECT_FALSE(j["config"].contains("requirements"));
  std::vector<std::byte> plain(kShiftData);
  s.img->peek(0, plain);
  EXPECT_EQ(plain, s.plain);
}

TEST(Reencrypt, EncryptionWithADataShiftMovesTheDataBehindTheHeader) {
  Shifted s = shifted_image();
  auto j = header_json(*s.img);
  const std::string end = std::to_string(kShiftData + kMiB), mib = std::to_string(kMiB);
  EXPECT_EQ(j["segments"]["0"].dump(),
            R"({"type":"linear","offset":")" + end + R"(","size":")" + mib + R"("})");
  EXPECT_EQ(j["segments"]["1"].dump(), R"({"type":"linear","offset":")" + mib + R"(","size":")" +
                                           std::to_string(kShiftData - kMiB) + R"("})");
  EXPECT_EQ(j["segments"]["2"]["flags"].dump(), R"(["backup-moved-segment"])");
  EXPECT_EQ(j["segments"]["3"].dump(), R"({"type":"linear","offset":"0","size":")" +
                                           std::to_string(kShiftData) +
                                           R"(","flags":["backup-previous"]})");
  EXPECT_EQ(j["segments"]["4"]["offset"], mib);
  EXPECT_EQ(
      j["keyslots"]["1"]["area"].dump(),
      R"({"offset":"290816","size":"4096","type":"datashift","shift_size":")" + mib + R"("})");
  EXPECT_EQ(j["keyslots"]["1"]["direction"], "backward");
  EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["4"])");
  EXPECT_EQ(j["config"]["keyslots_size"], std::to_string(kMiB - 32768));
  // The first MiB of the data is at the image's end, the rest in place.
  std::vector<std::byte> moved(kMiB);
  s.img->peek(kShiftData + kMiB, moved);
  EXPECT_TRUE(std::equal(moved.begin(), moved.end(), s.plain.begin()));

  // One hotzone, then a stop: post segments from cryptsetup's _enc_create_segments_shift_after.
  ReencryptRunOptions ro;
  int calls = 0;
  ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 2; };
  auto first = reencrypt_run(*s.img, pass("right"), ro);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_FALSE(first->finished);
  j = header_json(*s.img);
  EXPECT_EQ(j["segments"]["1"]["size"], std::to_string(kMiB / 2));  // the rest left in place
  EXPECT_EQ(j["segments"]["2"].dump(),
            R"({"type":"crypt","offset":")" + std::to_string(kMiB + 3 * kMiB / 2) +
                R"(","size":")" + mib + R"(","iv_tweak":")" + std::to_string(3 * kMiB / 2 / 512) +
                R"(","encryption":"aes-xts-plain64","sector_size":512})");
  EXPECT_EQ(j["segments"]["3"]["flags"].dump(), R"(["backup-previous"])");
  EXPECT_EQ(j["segments"]["5"]["flags"].dump(), R"(["backup-moved-segment"])");
  EXPECT_EQ(j["digests"]["0"]["segments"].dump(), R"(["4","2"])");
  auto st = reencrypt_status(*s.img);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->done_bytes, kMiB);
  EXPECT_EQ(st->total_bytes, kShiftData);

  // The second hotzone's data write fails after its header named it: the next run recovers it
  // from the untouched source (nothing but the header protects it) and finishes.
  s.img->fail_writes(2 * kMiB, kMiB / 2);
  ro.progress = nullptr;
  EXPECT_FALSE(reencrypt_run(*s.img, pass("right"), ro));
  s.img->fail_writes(0, 0);
  ASSERT_TRUE(reencrypt_status(*s.img)->crashed);
  EXPECT_FALSE(reencrypt_run(*s.img, pass("wrong"), ro));
  auto second = reencrypt_run(*s.img, pass("right"), ro);
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_TRUE(second->finished);
  j = header_json(*s.img);
  EXPECT_EQ(
      j["segments"].dump(),
      R"({"0":{"type":"crypt","offset":")" + mib +
          R"(","size":"dynamic","iv_tweak":"0","encryption":"aes-xts-plain64","sector_size":512}})");
  auto h = load_luks_header(*s.img, std::nullopt);
  ASSERT_TRUE(h) << h.error().message();
  auto k = (*h)->unlock(pass("right"), std::nullopt);
  ASSERT_TRUE(k);
  crypto::SectorCipherConfig cfg;
  cfg.spec = (*h)->layout().cipher;
  cfg.sector_size = 512;
  auto c = crypto::make_sector_cipher(cfg, k->volume_key.span());
  ASSERT_TRUE(c);
  std::vector<std::byte> all(kShiftData);
  s.img->peek(kMiB, all);
  ASSERT_TRUE((*c)->decrypt({all, {}, SectorIndex{0}}));
  EXPECT_EQ(all, s.plain);
  s.img->peek(kShiftData + kMiB, moved);  // the moved copy is wiped
  EXPECT_FALSE(std::equal(moved.begin(), moved.end(), s.plain.begin()));
}

TEST(Reencrypt, EncryptionWithADataShiftRefusesBadSizesAndChangesNothing) {
  MemBackingStore img(4 * kMiB, "mem:shift-bad.img");
  ASSERT_TRUE(img.write_at(ByteOffset{0}, test::deterministic_bytes(4 * kMiB, 22)));
  const auto before = all_of(img);
  EncryptShiftOptions o;
  o.format.pbkdf.type = "pbkdf2";
  o.format.pbkdf.force_iterations = 1000;
  for (std::uint64_t reduce : {std::uint64_t{1000}, 4 * kMiB, std::uint64_t{64 * 1024}, 8 * kMiB}) {
    o.reduce_bytes = reduce;
    auto r = reencrypt_encrypt_shift_init(img, pass("right"), o);
    EXPECT_FALSE(r) << reduce;
    EXPECT_EQ(all_of(img), before) << reduce;
  }
  o.reduce_bytes = 2 * kMiB;
  o.format.offset_sectors = 4096;  // 2 MiB: above half the reduction
  auto r = reencrypt_encrypt_shift_init(img, pass("right"), o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("half of --reduce-device-size"), std::string::npos);
  EXPECT_EQ(all_of(img), before);
}

// open of an image in reencryption (docs/reencrypt.md §9): the new key before the boundary, the
// old one after it; what is written through the two segments is what the finished run keeps.
TEST(Reencrypt, AnImageInReencryptionOpensThroughBothSegments) {
  for (const char* res : {"checksum", "journal"}) {
    auto img = image_with_data();
    ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options(res)));
    ReencryptRunOptions ro;
    ro.max_hotzone_bytes = 256 << 10;
    int calls = 0;
    ro.progress = [&](std::uint64_t, std::uint64_t) { return ++calls < 3; };
    auto first = reencrypt_run(*img, pass("right"), ro);
    ASSERT_TRUE(first) << res << ": " << first.error().message();
    ASSERT_FALSE(first->finished);
    auto wrong = reencrypt_open(*img, pass("wrong"));
    ASSERT_FALSE(wrong);
    EXPECT_EQ(wrong.error().code, Errc::kBadKey);
    auto u = reencrypt_open(*img, pass("right"));
    ASSERT_TRUE(u) << res << ": " << u.error().message();
    const VolumeLayout& l = u->layout;
    ASSERT_EQ(l.segments.size(), 2u);
    EXPECT_EQ(l.size_bytes, kData);
    EXPECT_EQ(l.sector_size, 4096u);  // the larger of 4096 (old) and 512 (new)
    EXPECT_EQ(l.segments[0].length_bytes, 512u << 10);
    EXPECT_EQ(l.segments[0].cipher.encryption, "aes-cbc-essiv:sha256");
    EXPECT_EQ(l.segments[0].cipher.sector_size, 512u);
    EXPECT_EQ(l.segments[0].cipher.key_bytes, 32u);
    EXPECT_EQ(l.segments[1].offset_bytes, 512u << 10);
    EXPECT_EQ(l.segments[1].image_offset_bytes, kDataOffset + (512u << 10));
    EXPECT_EQ(l.segments[1].cipher.encryption, "aes-xts-plain64");
    EXPECT_EQ(l.segments[1].cipher.key_bytes, 64u);
    EXPECT_EQ(u->volume_key.size(), 96u);
    auto c = make_segmented_cipher(l, u->volume_key.span());
    ASSERT_TRUE(c) << c.error().message();
    std::vector<std::byte> data(kData);
    ASSERT_TRUE(img->read_at(ByteOffset{kDataOffset}, data));
    ASSERT_TRUE((*c)->decrypt({data, {}, SectorIndex{0}}));
    EXPECT_EQ(data, test::deterministic_bytes(kData, 18)) << res;
    // New data across the boundary, written as the served volume writes it; the run then
    // finishes and the whole volume decrypts under the new key alone.
    auto fresh = test::deterministic_bytes(kData, 19);
    ASSERT_TRUE((*c)->encrypt({fresh, {}, SectorIndex{0}}));
    ASSERT_TRUE(img->write_at(ByteOffset{kDataOffset}, fresh));
    ro.progress = nullptr;
    auto second = reencrypt_run(*img, pass("right"), ro);
    ASSERT_TRUE(second) << second.error().message();
    EXPECT_TRUE(second->finished);
    EXPECT_EQ(plaintext(*img), test::deterministic_bytes(kData, 19)) << res;
  }
}

// Online (docs/reencrypt.md §10): three threads write and read back their own 4 KiB blocks
// (and 512-byte pieces of them, read-modify-write) through the served volume, with a small
// cache, while the session converts hotzone by hotzone under it; every read returns what its
// thread wrote last, and after the finish the image decrypts under the new key alone to
// exactly the writes.
// Writers and readers on `vol` (3 threads, 4 KiB and 512-byte pieces, each read checked
// against `model`, which follows the writes) while `session` steps to its end in hotzones of
// `hotzone` bytes.
struct Hammered {
  std::uint64_t steps = 0, errors = 0, mismatches = 0, ops = 0;
};
// `hotzone` 0: hotzones of different lengths (a data shift's), each checked to move the run on.
Hammered hammer_while_stepping(ReencryptSession& session, Volume& vol,
                               std::vector<std::byte>& model, std::uint64_t hotzone,
                               std::uint64_t size = kData) {
  constexpr std::uint64_t kBlock = 4096;
  const std::uint64_t kBlocks = size / kBlock;
  constexpr unsigned kThreads = 3;
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> mismatches{0}, errors{0}, ops{0};
  auto worker = [&](unsigned t) {
    std::mt19937_64 rng(t + 1);
    std::vector<std::byte> buf(kBlock);
    std::uint64_t round = 0;
    while (!done.load() || round < 50) {
      std::uint64_t b = rng() % kBlocks;
      b -= b % kThreads;
      b += t;
      if (b >= kBlocks) continue;
      const std::uint64_t piece = (rng() & 1) ? kBlock : 512;  // 512: read-modify-write
      const std::uint64_t at = b * kBlock + (piece == 512 ? (rng() % 8) * 512 : 0);
      auto data = test::deterministic_bytes(piece, 1000 * t + ++round);
      if (!vol.write(ByteOffset{at}, data)) ++errors;
      std::memcpy(model.data() + at, data.data(), piece);
      if (!vol.read(ByteOffset{b * kBlock}, buf)) ++errors;
      if (std::memcmp(buf.data(), model.data() + b * kBlock, kBlock) != 0) ++mismatches;
      ++ops;
    }
  };
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  Hammered h;
  while (session.next_hotzone().length > 0) {
    const auto before = session.done_bytes();
    auto r = session.step(&vol);
    EXPECT_TRUE(r) << r.error().message();
    if (!r) break;
    if (hotzone)
      EXPECT_EQ(session.done_bytes(), before + hotzone);
    else
      EXPECT_GT(session.done_bytes(), before);
    ++h.steps;
  }
  done.store(true);
  for (auto& t : threads) t.join();
  h.errors = errors.load();
  h.mismatches = mismatches.load();
  h.ops = ops.load();
  return h;
}

TEST(Reencrypt, AnOnlineRunKeepsEveryWriteWhileTheBoundaryMoves) {
  for (const char* res : {"checksum", "journal", "none"}) {
    auto img = image_with_data();
    ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options(res)));
    auto session = ReencryptSession::start(*img, pass("right"), 128 << 10);
    ASSERT_TRUE(session) << session.error().message();
    VolumeOptions vo;
    vo.cache_bytes = 256 << 10;
    auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*img), vo, nullptr);
    ASSERT_TRUE(served) << served.error().message();
    Volume& vol = **served;
    ASSERT_EQ(vol.size_bytes(), kData);
    EXPECT_EQ((*session)->step(nullptr).error().code, Errc::kInvalid);  // held only online

    std::vector<std::byte> model = test::deterministic_bytes(kData, 18);
    const Hammered h = hammer_while_stepping(**session, vol, model, 128 << 10);
    EXPECT_EQ(h.steps, kData / (128 << 10));
    EXPECT_EQ(h.errors, 0u) << res;
    EXPECT_EQ(h.mismatches, 0u) << res;
    EXPECT_GT(h.ops, 0u);
    auto fin = (*session)->stop();
    ASSERT_TRUE(fin) << fin.error().message();
    EXPECT_TRUE(fin->finished);
    ASSERT_TRUE(vol.flush());
    std::vector<std::byte> all(kData);
    ASSERT_TRUE(vol.read(ByteOffset{0}, all));
    EXPECT_EQ(all, model) << res;
    served->reset();
    EXPECT_EQ(plaintext(*img), model) << res;
  }
}

// Online decryption under a detached header (docs/reencrypt.md §10): the served volume is crypt
// below the boundary and plaintext above it, the boundary moving down hotzone by hotzone; every
// write lands, and at the end the data device holds the plaintext and the volume is one linear
// segment (what cryptsetup reloads an active device with).
TEST(Reencrypt, AnOnlineDecryptionKeepsEveryWriteWhileTheBoundaryMovesDown) {
  for (const char* res : {"checksum", "journal"}) {
    auto d = detached_with_data();
    ReencryptInitOptions io;
    io.mode = "decrypt";
    io.resilience = res;
    io.pbkdf.type = "pbkdf2";
    io.pbkdf.force_iterations = 1000;
    io.data = d.data.get();
    ASSERT_TRUE(reencrypt_init(*d.hdr, pass("right"), io)) << res;
    auto session = ReencryptSession::start(*d.hdr, pass("right"), 128 << 10, d.data.get());
    ASSERT_TRUE(session) << session.error().message();
    auto paused = (*session)->layout_now();
    ASSERT_TRUE(paused) << paused.error().message();
    ASSERT_EQ(paused->segments.size(), 1u);  // nothing decrypted yet: all crypt
    EXPECT_EQ(paused->segments[0].kind, SegmentKind::kCrypt);
    EXPECT_EQ(paused->cipher.cipher, "cipher_null");
    auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*d.data), {}, nullptr);
    ASSERT_TRUE(served) << served.error().message();
    Volume& vol = **served;
    ASSERT_EQ(vol.size_bytes(), kData);
    std::vector<std::byte> model = test::deterministic_bytes(kData, 19);
    std::vector<std::byte> all(kData);
    ASSERT_TRUE(vol.read(ByteOffset{0}, all));
    ASSERT_EQ(all, model);

    const Hammered h = hammer_while_stepping(**session, vol, model, 128 << 10);
    EXPECT_EQ(h.steps, kData / (128 << 10));
    EXPECT_EQ(h.errors, 0u) << res;
    EXPECT_EQ(h.mismatches, 0u) << res;
    EXPECT_GT(h.ops, 0u);
    auto fin = (*session)->stop();
    ASSERT_TRUE(fin) << fin.error().message();
    EXPECT_TRUE(fin->finished);
    auto linear = (*session)->layout_now();
    ASSERT_TRUE(linear) << linear.error().message();
    ASSERT_EQ(linear->segments.size(), 1u);
    EXPECT_EQ(linear->segments[0].kind, SegmentKind::kLinear);
    EXPECT_EQ(linear->segments[0].length_bytes, kData);
    ASSERT_TRUE(vol.flush());
    ASSERT_TRUE(vol.read(ByteOffset{0}, all));
    EXPECT_EQ(all, model) << res;
    served->reset();
    ASSERT_TRUE(d.data->read_at(ByteOffset{0}, all));
    EXPECT_EQ(all, model) << res;  // the device is the plaintext
  }
}

// Encryption with a data shift, online (docs/reencrypt.md §10, §13): `open` serves the header's
// segments where they are (the moved start at the image's end, the rest in place), and the
// online run moves the data behind the header while three threads write and read through the
// served volume; every read returns the last write, and the finished image holds exactly the
// writes under the new key.
TEST(Reencrypt, AnOnlineEncryptionWithADataShiftKeepsEveryWriteWhileTheDataMoves) {
  Shifted s = shifted_image();
  auto opened = reencrypt_open(*s.img, pass("right"));
  ASSERT_TRUE(opened) << opened.error().message();
  const VolumeLayout& paused = opened->layout;
  ASSERT_EQ(paused.segments.size(), 2u);
  EXPECT_EQ(paused.segments[0].kind, SegmentKind::kLinear);
  EXPECT_EQ(paused.segments[0].length_bytes, kMiB);
  EXPECT_EQ(paused.segments[0].image_offset_bytes, kShiftData + kMiB);  // the moved start
  EXPECT_EQ(paused.segments[1].offset_bytes, kMiB);
  EXPECT_EQ(paused.segments[1].image_offset_bytes, kMiB);  // in place
  EXPECT_EQ(paused.size_bytes, kShiftData);

  auto session = ReencryptSession::start(*s.img, pass("right"), 0);
  ASSERT_TRUE(session) << session.error().message();
  VolumeOptions vo;
  vo.cache_bytes = 256 << 10;
  auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*s.img), vo, nullptr);
  ASSERT_TRUE(served) << served.error().message();
  Volume& vol = **served;
  ASSERT_EQ(vol.size_bytes(), kShiftData);
  std::vector<std::byte> all(kShiftData);
  ASSERT_TRUE(vol.read(ByteOffset{0}, all));
  ASSERT_EQ(all, s.plain);

  std::vector<std::byte> model = s.plain;
  const Hammered h = hammer_while_stepping(**session, vol, model, 0, kShiftData);
  EXPECT_EQ(h.steps, 3u);  // [1.5, 2.5) MiB, [1, 1.5) MiB, then the moved start [0, 1) MiB
  EXPECT_EQ(h.errors, 0u);
  EXPECT_EQ(h.mismatches, 0u);
  EXPECT_GT(h.ops, 0u);
  auto fin = (*session)->stop();
  ASSERT_TRUE(fin) << fin.error().message();
  EXPECT_TRUE(fin->finished);
  ASSERT_TRUE(vol.flush());
  ASSERT_TRUE(vol.read(ByteOffset{0}, all));
  EXPECT_EQ(all, model);
  served->reset();
  // The image: the header in its first MiB, the writes encrypted behind it.
  auto h2 = load_luks_header(*s.img, std::nullopt);
  ASSERT_TRUE(h2) << h2.error().message();
  auto k = (*h2)->unlock(pass("right"), std::nullopt);
  ASSERT_TRUE(k) << k.error().message();
  const VolumeLayout l = (*h2)->layout();
  EXPECT_EQ(l.data_offset_bytes, kMiB);
  crypto::SectorCipherConfig cfg;
  cfg.spec = l.cipher;
  cfg.sector_size = l.sector_size;
  auto c = crypto::make_sector_cipher(cfg, k->volume_key.span());
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(s.img->read_at(ByteOffset{kMiB}, all));
  ASSERT_TRUE((*c)->decrypt({all, {}, SectorIndex{0}}));
  EXPECT_EQ(all, model);
}

// cryptsetup 2.6's decryption with a data shift, online (docs/reencrypt.md §10, §11.1): served
// through the exported header, the moved first part at the image's start and the rest at the
// shift until the run moves it down; the moved part is converted last, in place. Every read
// returns the last write; the image then holds exactly the writes in plaintext from offset 0.
TEST(Reencrypt, AnOnlineDecryptionWithADataShiftKeepsEveryWriteWhileTheDataMoves) {
  Shifted s = shifted_image();
  auto enc = reencrypt_run(*s.img, pass("right"), {});
  ASSERT_TRUE(enc && enc->finished);
  const std::uint64_t data = kShiftData + kMiB;  // image size - 1 MiB
  MemBackingStore hdr(kMiB, "mem:exported.hdr");
  auto factory = [&](std::uint64_t) -> Result<std::unique_ptr<BackingStore>> {
    return std::unique_ptr<BackingStore>(new Borrowed(hdr));
  };
  DecryptShiftOptions o;
  o.pbkdf.type = "pbkdf2";
  o.pbkdf.force_iterations = 1000;
  ASSERT_TRUE(reencrypt_decrypt_shift_init(*s.img, pass("right"), o, factory));
  auto opened = reencrypt_open(hdr, pass("right"), s.img.get());
  ASSERT_TRUE(opened) << opened.error().message();
  ASSERT_EQ(opened->layout.segments.size(), 2u);
  EXPECT_EQ(opened->layout.segments[0].image_offset_bytes, 0u);  // the moved part
  EXPECT_EQ(opened->layout.segments[1].image_offset_bytes, 2 * kMiB);
  EXPECT_EQ(opened->layout.segments[1].iv_offset, kMiB / 512);
  EXPECT_EQ(opened->layout.size_bytes, data);

  auto session = ReencryptSession::start(hdr, pass("right"), 0, s.img.get());
  ASSERT_TRUE(session) << session.error().message();
  VolumeOptions vo;
  vo.cache_bytes = 256 << 10;
  auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*s.img), vo, nullptr);
  ASSERT_TRUE(served) << served.error().message();
  Volume& vol = **served;
  ASSERT_EQ(vol.size_bytes(), data);
  std::vector<std::byte> all(data);
  ASSERT_TRUE(vol.read(ByteOffset{0}, all));
  ASSERT_TRUE(std::equal(s.plain.begin(), s.plain.end(), all.begin()));

  std::vector<std::byte> model = all;
  const Hammered h = hammer_while_stepping(**session, vol, model, 0, data);
  EXPECT_EQ(h.steps, 4u);  // [1, 2), [2, 3), [3, 3.5) MiB, then the moved part [0, 1) MiB
  EXPECT_EQ(h.errors, 0u);
  EXPECT_EQ(h.mismatches, 0u);
  EXPECT_GT(h.ops, 0u);
  auto fin = (*session)->stop();
  ASSERT_TRUE(fin) << fin.error().message();
  EXPECT_TRUE(fin->finished);
  ASSERT_TRUE(vol.flush());
  ASSERT_TRUE(vol.read(ByteOffset{0}, all));
  EXPECT_EQ(all, model);
  served->reset();
  ASSERT_TRUE(s.img->read_at(ByteOffset{0}, all));
  EXPECT_EQ(all, model);  // the device is the plaintext, from its start
}

// The session's own handle on the image, failing the next `count` writes that overlap
// [off, off+len) with kIo (a store fault that goes away, or not, for a large count).
class FlakyImage final : public BackingStore {
 public:
  explicit FlakyImage(BackingStore& s) : s_(s) {}
  void fail_writes(std::uint64_t off, std::uint64_t len, int count) {
    off_ = off;
    len_ = len;
    count_ = count;
  }
  Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
    return s_.read_at(off, out);
  }
  Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
    if (count_ > 0 && off.value < off_ + len_ && off_ < off.value + in.size()) {
      --count_;
      return fail(make_error(Errc::kIo, "flaky image write", off.value));
    }
    return s_.write_at(off, in);
  }
  Result<void> sync() override { return s_.sync(); }
  Result<void> discard(ByteOffset off, std::uint64_t len) override { return s_.discard(off, len); }
  std::uint64_t size_bytes() const noexcept override { return s_.size_bytes(); }
  bool read_only() const noexcept override { return false; }
  const std::string& name() const noexcept override { return s_.name(); }

 private:
  BackingStore& s_;
  std::uint64_t off_ = 0, len_ = 0;
  int count_ = 0;
};

// An online step whose hotzone write fails once (docs/reencrypt.md §10): the hotzone is
// recovered under the hold from the resilience data, as open recovers it, and the volume serves
// on with the boundary past it; the header is paused there, and a later run finishes.
TEST(Reencrypt, AFailedOnlineStepRecoversItsHotzoneAndServesOn) {
  for (const char* res : {"checksum", "journal"}) {
    auto img = image_with_data();
    ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options(res)));
    FlakyImage flaky(*img);
    auto session = ReencryptSession::start(flaky, pass("right"), 128 << 10);
    ASSERT_TRUE(session) << session.error().message();
    auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*img), {}, nullptr);
    ASSERT_TRUE(served) << served.error().message();
    Volume& vol = **served;
    ASSERT_TRUE((*session)->step(&vol));
    flaky.fail_writes(kDataOffset + (128 << 10), 128 << 10, 1);
    auto r = (*session)->step(&vol);
    ASSERT_FALSE(r) << res;
    EXPECT_EQ(r.error().code, Errc::kIo);
    EXPECT_EQ((*session)->done_bytes(), 256u << 10) << res;
    EXPECT_EQ((*session)->fenced_hotzone().length, 0u) << res;
    std::vector<std::byte> all(kData);
    ASSERT_TRUE(vol.read(ByteOffset{0}, all)) << res;
    EXPECT_EQ(all, test::deterministic_bytes(kData, 18)) << res;
    auto st = reencrypt_status(*img);
    ASSERT_TRUE(st);
    EXPECT_FALSE(st->crashed) << res;
    EXPECT_EQ(st->done_bytes, 256u << 10) << res;
    served->reset();
    session->reset();
    auto fin = reencrypt_run(*img, pass("right"), {});
    ASSERT_TRUE(fin) << fin.error().message();
    EXPECT_TRUE(fin->finished);
    EXPECT_EQ(plaintext(*img), test::deterministic_bytes(kData, 18)) << res;
  }
}

// The online start of a datashift decryption (DecryptShiftStart): an image cryptmap encrypted
// with a data shift (header inside, data offset 1 MiB), its bytes before the start in
// `original_` (and `now_`, the same size, for what a test reads back), and the options of the
// decryption (PBKDF2 at 1000 iterations).
class ReencryptDatashiftSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto enc = reencrypt_run(*s_.img, pass("right"), {});
    ASSERT_TRUE(enc && enc->finished);
    original_.resize(size_);
    now_.resize(size_);
    ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, original_));
    o_.pbkdf.type = "pbkdf2";
    o_.pbkdf.force_iterations = 1000;
  }

  Shifted s_ = shifted_image();
  const std::uint64_t size_ = s_.img->size_bytes();
  std::vector<std::byte> original_, now_;
  DecryptShiftOptions o_;
};

// The online start of cryptsetup 2.6's decryption with a data shift (docs/reencrypt.md §10 item
// 10): the export writes only NEW-FILE, the prepare nothing at all (its session runs on the
// header in memory); the switch moves the data's first part and commits the header into
// NEW-FILE, leaving the image and the header as the offline init leaves them; the served volume
// made before the switch then serves the run, every read returning the last write.
TEST_F(ReencryptDatashiftSwitchTest, AnOnlineStartSwitchesTheHeaderUnderTheVolume) {
  const std::uint64_t data = kShiftData + kMiB;

  // Offline, on a copy: what the switch must leave.
  MemBackingStore offline(size_, "mem:offline.img");
  ASSERT_TRUE(offline.write_at(ByteOffset{0}, original_));
  MemBackingStore offline_hdr(kMiB, "mem:offline.hdr");
  ASSERT_TRUE(reencrypt_decrypt_shift_init(
      offline, pass("right"), o_, [&](std::uint64_t) -> Result<std::unique_ptr<BackingStore>> {
        return std::unique_ptr<BackingStore>(new Borrowed(offline_hdr));
      }));

  MemBackingStore hdr(kMiB, "mem:new.hdr");
  auto factory = [&](std::uint64_t) -> Result<std::unique_ptr<BackingStore>> {
    return std::unique_ptr<BackingStore>(new Borrowed(hdr));
  };
  auto wrong = reencrypt_decrypt_shift_export(*s_.img, pass("wrong"), o_, factory);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::kBadKey);
  auto exported = reencrypt_decrypt_shift_export(*s_.img, pass("right"), o_, factory);
  ASSERT_TRUE(exported) << exported.error().message();
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, now_));
  EXPECT_EQ(now_, original_);  // the export writes nothing of the image
  std::vector<std::byte> head(*exported), exported_bytes(*exported);
  ASSERT_TRUE(hdr.read_at(ByteOffset{0}, exported_bytes));
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, head));
  EXPECT_EQ(exported_bytes, head);

  // A changed export is refused, nothing written.
  {
    MemBackingStore changed(kMiB, "mem:changed.hdr");
    ASSERT_TRUE(changed.write_at(ByteOffset{0}, exported_bytes));
    const std::byte one{1};
    ASSERT_TRUE(changed.write_at(ByteOffset{*exported - 1}, std::span(&one, 1)));
    auto refused = DecryptShiftStart::prepare(changed, *s_.img, pass("right"), o_, 0);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::kBusy);
  }
  auto start = DecryptShiftStart::prepare(hdr, *s_.img, pass("right"), o_, 0);
  ASSERT_TRUE(start) << start.error().message();
  VolumeOptions vo;
  vo.cache_bytes = 256 << 10;
  auto served =
      (*start)->session().open_served_volume(std::make_unique<Borrowed>(*s_.img), vo, nullptr);
  ASSERT_TRUE(served) << served.error().message();
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, now_));
  EXPECT_EQ(now_, original_);  // nothing written before the switch
  auto st = reencrypt_status(hdr, s_.img.get());
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->in_reencryption);
  EXPECT_FALSE((*start)->switched());

  ASSERT_TRUE((*start)->switch_header());
  EXPECT_TRUE((*start)->switched());
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, now_));
  std::vector<std::byte> off_img(size_);
  ASSERT_TRUE(offline.read_at(ByteOffset{0}, off_img));
  EXPECT_EQ(now_, off_img);  // the image as the offline init leaves it
  st = reencrypt_status(hdr, s_.img.get());
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->in_reencryption);
  EXPECT_EQ(st->mode, "decrypt");
  auto off_st = reencrypt_status(offline_hdr, &offline);
  ASSERT_TRUE(off_st);
  EXPECT_EQ(st->done_bytes, off_st->done_bytes);
  EXPECT_EQ(st->total_bytes, off_st->total_bytes);
  EXPECT_EQ(st->resilience, off_st->resilience);

  Volume& vol = **served;
  ASSERT_EQ(vol.size_bytes(), data);
  std::vector<std::byte> all(data);
  ASSERT_TRUE(vol.read(ByteOffset{0}, all));
  ASSERT_TRUE(std::equal(s_.plain.begin(), s_.plain.end(), all.begin()));
  std::vector<std::byte> model = all;
  const Hammered h = hammer_while_stepping((*start)->session(), vol, model, 0, data);
  EXPECT_EQ(h.steps, 4u);
  EXPECT_EQ(h.errors, 0u);
  EXPECT_EQ(h.mismatches, 0u);
  auto fin = (*start)->session().stop();
  ASSERT_TRUE(fin) << fin.error().message();
  EXPECT_TRUE(fin->finished);
  ASSERT_TRUE(vol.flush());
  served->reset();
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, all));
  EXPECT_EQ(all, model);                     // the plaintext from the image's start
  st = reencrypt_status(hdr, s_.img.get());  // the session wrote NEW-FILE after the switch
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->in_reencryption);
}

// A switch whose data move fails (the image's writes at its start fail) leaves the image as it
// was, its own header written back, and the export not in reencryption.
TEST_F(ReencryptDatashiftSwitchTest, AFailedSwitchLeavesTheImageAsItWas) {
  MemBackingStore hdr(kMiB, "mem:new.hdr");
  ASSERT_TRUE(reencrypt_decrypt_shift_export(
      *s_.img, pass("right"), o_, [&](std::uint64_t) -> Result<std::unique_ptr<BackingStore>> {
        return std::unique_ptr<BackingStore>(new Borrowed(hdr));
      }));
  // The move's write lands in part (its first 64 KiB), then fails.
  class Torn final : public BackingStore {
   public:
    explicit Torn(BackingStore& s) : s_(s) {}
    Result<void> read_at(ByteOffset off, std::span<std::byte> out) const override {
      return s_.read_at(off, out);
    }
    Result<void> write_at(ByteOffset off, std::span<const std::byte> in) override {
      if (fail_ && off.value == 0 && in.size() > (64u << 10)) {
        fail_ = false;
        (void)s_.write_at(off, in.first(64u << 10));
        return fail(make_error(Errc::kIo, "torn image write", off.value));
      }
      return s_.write_at(off, in);
    }
    Result<void> sync() override { return s_.sync(); }
    Result<void> discard(ByteOffset off, std::uint64_t len) override {
      return s_.discard(off, len);
    }
    std::uint64_t size_bytes() const noexcept override { return s_.size_bytes(); }
    bool read_only() const noexcept override { return false; }
    const std::string& name() const noexcept override { return s_.name(); }

   private:
    BackingStore& s_;
    bool fail_ = true;
  } torn(*s_.img);
  auto start2 = DecryptShiftStart::prepare(hdr, torn, pass("right"), o_, 0);
  ASSERT_TRUE(start2) << start2.error().message();
  auto r = (*start2)->switch_header();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_FALSE((*start2)->switched());
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, now_));
  EXPECT_EQ(now_, original_);
  auto st = reencrypt_status(hdr, s_.img.get());
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->in_reencryption);
  // Then a commit that fails (the header's writes): the image is written back as well.
  FlakyImage flaky_hdr(hdr);
  flaky_hdr.fail_writes(0, kMiB, 1000);
  auto start3 = DecryptShiftStart::prepare(flaky_hdr, *s_.img, pass("right"), o_, 0);
  ASSERT_TRUE(start3) << start3.error().message();
  ASSERT_FALSE((*start3)->switch_header());
  ASSERT_TRUE(s_.img->read_at(ByteOffset{0}, now_));
  EXPECT_EQ(now_, original_);
  st = reencrypt_status(hdr, s_.img.get());
  ASSERT_TRUE(st);
  EXPECT_FALSE(st->in_reencryption);
}

// When the hotzone cannot be recovered either (the fault stays), only its I/O fails (kIo, EIO
// at the FUSE edge) and the rest serves the data; the header names the hotzone, and open's
// recovery brings it back once the store is healthy (with resilience none a failed data write
// is fenced at once: nothing to recover from).
TEST(Reencrypt, AnUnrecoverableOnlineStepFailsOnlyItsHotzone) {
  for (const char* res : {"checksum", "journal", "none"}) {
    auto img = image_with_data();
    ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options(res)));
    FlakyImage flaky(*img);
    auto session = ReencryptSession::start(flaky, pass("right"), 128 << 10);
    ASSERT_TRUE(session) << session.error().message();
    auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*img), {}, nullptr);
    ASSERT_TRUE(served) << served.error().message();
    Volume& vol = **served;
    ASSERT_TRUE((*session)->step(&vol));
    flaky.fail_writes(kDataOffset + (128 << 10), 128 << 10, 1000);
    ASSERT_FALSE((*session)->step(&vol)) << res;
    EXPECT_EQ((*session)->done_bytes(), 128u << 10) << res;
    EXPECT_EQ((*session)->fenced_hotzone().offset, 128u << 10) << res;
    EXPECT_EQ((*session)->fenced_hotzone().length, 128u << 10) << res;
    const auto model = test::deterministic_bytes(kData, 18);
    std::vector<std::byte> piece(4096);
    auto hot = vol.read(ByteOffset{(128 << 10) + 8192}, piece);
    ASSERT_FALSE(hot) << res;
    EXPECT_EQ(hot.error().code, Errc::kIo);
    std::vector<std::byte> head(128 << 10), tail(kData - (256 << 10));
    ASSERT_TRUE(vol.read(ByteOffset{0}, head)) << res;
    ASSERT_TRUE(vol.read(ByteOffset{256 << 10}, tail)) << res;
    EXPECT_TRUE(std::equal(head.begin(), head.end(), model.begin())) << res;
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), model.begin() + (256 << 10))) << res;
    if (std::string(res) == "none") continue;  // its header was never written: the run is lost
    auto st = reencrypt_status(*img);
    ASSERT_TRUE(st);
    EXPECT_TRUE(st->crashed) << res;
    served->reset();
    session->reset();
    auto opened = reencrypt_open(*img, pass("right"));  // open's recovery, the fault gone
    ASSERT_TRUE(opened) << opened.error().message();
    auto fin = reencrypt_run(*img, pass("right"), {});
    ASSERT_TRUE(fin) << fin.error().message();
    EXPECT_TRUE(fin->finished);
    EXPECT_EQ(plaintext(*img), model) << res;
  }
}

// Holding a range waits for the requests on it and blocks new ones there only.
TEST(Reencrypt, AHeldRangeBlocksOnlyItsOwnRequests) {
  auto img = image_with_data();
  ASSERT_TRUE(reencrypt_init(*img, pass("right"), init_options("checksum")));
  auto session = ReencryptSession::start(*img, pass("right"), 128 << 10);
  ASSERT_TRUE(session) << session.error().message();
  auto served = (*session)->open_served_volume(std::make_unique<Borrowed>(*img), {}, nullptr);
  ASSERT_TRUE(served) << served.error().message();
  Volume& vol = **served;
  EXPECT_EQ(vol.hold_range(ByteOffset{kData}, 512, [] { return ok(); }).error().code,
            Errc::kInvalid);
  std::atomic<bool> inside_done{false}, outside_done{false};
  std::thread inside, outside;
  auto r = vol.hold_range(ByteOffset{0}, 128 << 10, [&]() -> Result<void> {
    inside = std::thread([&] {
      std::vector<std::byte> b(4096);
      (void)vol.read(ByteOffset{64 << 10}, b);
      inside_done.store(true);
    });
    outside = std::thread([&] {
      std::vector<std::byte> b(4096);
      (void)vol.read(ByteOffset{1 << 20}, b);
      outside_done.store(true);
    });
    outside.join();  // outside the held range: completes while it is held
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(inside_done.load());
    return ok();
  });
  ASSERT_TRUE(r);
  inside.join();
  EXPECT_TRUE(outside_done.load());
  EXPECT_TRUE(inside_done.load());
}

}  // namespace
}  // namespace cryptmap::volume

#include "tests/fuzz/fuzz_targets.h"

#include <span>
#include <string>
#include <string_view>

#include <algorithm>
#include <array>
#include <cstring>

#include "base/bytes.h"
#include "base/check.h"
#include "crypto/cipher_spec.h"
#include "crypto/key_protect.h"
#include "fs/control.h"
#include "volume/format/bitlk.h"
#include "volume/format/dm_integrity.h"
#include "volume/format/dm_integrity_journal.h"
#include "volume/format/fvault2.h"
#include "volume/format/internal/luks1_disk.h"
#include "volume/format/internal/luks2_metadata.h"
#include "volume/format/internal/span_store.h"
#include "volume/format/loopaes.h"
#include "volume/format/luks.h"
#include "volume/format/luks2_reencrypt.h"
#include "volume/format/luks_admin.h"
#include "volume/format/luks_token.h"
#include "volume/format/plain.h"
#include "volume/format/tcrypt.h"
#include "volume/store/mem_backing_store.h"
#include "volume/store/nbd_backing_store.h"
#include "volume/store/rbd_backing_store.h"

namespace cryptmap::fuzz {
namespace {
std::span<const std::byte> as_span(const std::uint8_t* d, std::size_t n) {
  return {reinterpret_cast<const std::byte*>(d), n};
}
}  // namespace

int luks1_header(const std::uint8_t* data, std::size_t size) {
  auto bytes = as_span(data, size);
  auto p = volume::luks1::parse_phdr(bytes, size, "fuzz");
  if (p) (void)p->cipher_spec();
  volume::format::SpanStore store(bytes, "fuzz");
  auto h = volume::load_luks_header(store, volume::VolumeType::kLuks1);
  if (h) (void)(*h)->layout();
  auto d = volume::luks_dump(store);
  (void)d;
  return 0;
}

int luks2_image(const std::uint8_t* data, std::size_t size) {
  volume::format::SpanStore store(as_span(data, size), "fuzz");
  auto h = volume::load_luks_header(store, std::nullopt);
  if (h) (void)(*h)->layout();
  auto d = volume::luks_dump(store, false);
  auto j = volume::luks_dump(store, true);
  (void)d;
  (void)j;
  (void)volume::is_luks(store);
  (void)volume::reencrypt_status(store);  // the reencryption fields (docs/reencrypt.md)
  return 0;
}

int luks2_json(const std::uint8_t* data, std::size_t size) {
  auto m = volume::luks2::parse_luks2_json(as_span(data, size));
  if (m) {
    std::string unknown;
    (void)volume::luks2::requirement_state(*m, &unknown);
  }
  return 0;
}

int luks2_token(const std::uint8_t* data, std::size_t size) {
  constexpr std::uint64_t kHeaderBytes = 576 * 512;  // headers + a small keyslots area
  static const std::vector<std::byte> header = [] {
    volume::MemBackingStore s(kHeaderBytes + (32u << 10), "mem:token");
    volume::LuksFormatOptions o;
    o.type = volume::VolumeType::kLuks2;
    o.pbkdf.type = "pbkdf2";
    o.pbkdf.force_iterations = 1000;
    o.offset_sectors = kHeaderBytes / 512;
    o.data_device_bytes = s.size_bytes();
    CRYPTMAP_CHECK(volume::luks_format(s, o, std::as_bytes(std::span("token", 5))));
    std::vector<std::byte> b(kHeaderBytes);
    CRYPTMAP_CHECK(s.read_at(ByteOffset{0}, b));
    return b;
  }();
  if (size == 0) return 0;
  volume::MemBackingStore s(header.size(), "mem:fuzz");
  CRYPTMAP_CHECK(s.write_at(ByteOffset{0}, header));
  volume::TokenImport o;
  if (data[0] & 1) o.token_id = (data[0] >> 1) & 31;
  o.replace = (data[0] & 0x40) != 0;
  if (data[0] & 0x80) o.keyslot = 0;
  const std::string_view json(reinterpret_cast<const char*>(data + 1), size - 1);
  auto id = volume::luks_token_import(s, json, o);
  if (!id) return 0;
  auto text = volume::luks_token_export(s, *id);
  CRYPTMAP_CHECK(text);
  CRYPTMAP_CHECK(volume::luks_token_remove(s, *id));
  volume::TokenImport again;  // the exported text imports back to the same bytes
  again.token_id = *id;
  CRYPTMAP_CHECK(volume::luks_token_import(s, *text, again));
  auto text2 = volume::luks_token_export(s, *id);
  CRYPTMAP_CHECK(text2 && *text2 == *text);
  CRYPTMAP_CHECK(volume::luks_tokens(s));
  CRYPTMAP_CHECK(volume::luks_token_remove(s, *id));
  return 0;
}

int cipher_spec(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto c = crypto::CipherSpec::parse(text);
  if (c) {
    auto again = crypto::CipherSpec::parse(c->to_string());
    (void)again;
  }
  volume::PlainOptions o;
  o.cipher = std::string(text);
  (void)volume::plain_layout(o, 1u << 20);
  const std::string pass = "fuzz";
  (void)volume::plain_hash(
      text, std::span(reinterpret_cast<const std::byte*>(pass.data()), pass.size()), 32);
  return 0;
}

std::vector<std::byte> bitlk_image(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> img(kBitlkSeedImageBytes);
  const auto in = as_span(data, size);
  std::copy_n(in.begin(), std::min<std::size_t>(512, in.size()), img.begin());
  for (int i = 0; i < 3; ++i) store_le64(img.data() + 176 + 8 * i, kBitlkSeedFve[i]);
  if (in.size() > 512) {
    const auto block = in.subspan(512, std::min<std::size_t>(in.size() - 512, 65536));
    for (std::uint64_t off : kBitlkSeedFve)
      std::copy(block.begin(), block.end(), img.begin() + static_cast<std::ptrdiff_t>(off));
    // Copies 2 and 3 get a matching CRC-32 so that mutations reach the entry parser; copy 1
    // keeps whatever the input says (the checksum path).
    for (int c = 1; c < 3; ++c) {
      std::byte* p = img.data() + kBitlkSeedFve[c];
      const std::size_t n = std::size_t{load_le16(p + 8)} * 16;
      if (n + 8 > 65536) continue;
      store_le32(p + n, 0x00020008u);  // size 8, version 2
      store_le32(p + n + 4, crypto::crc32_ieee(std::span<const std::byte>(p, n)));
    }
  }
  return img;
}

int bitlk_metadata(const std::uint8_t* data, std::size_t size) {
  const auto img = bitlk_image(data, size);
  volume::format::SpanStore store(img, "fuzz");
  (void)volume::is_bitlk(store);
  auto h = volume::BitlkHeader::load(store);
  if (!h) return 0;
  (void)(*h)->layout();
  (void)(*h)->check_activation();
  (void)(*h)->dump("fuzz");
  // Password and recovery VMKs would run the 2^20-round KDF: only a clear key is tried.
  if ((*h)->has_clear_key() && size < 4096) (void)(*h)->unlock({});
  return 0;
}

namespace {
void put16(std::vector<std::uint8_t>& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v);
  b[at + 1] = static_cast<std::uint8_t>(v >> 8);
}
void put32(std::vector<std::uint8_t>& b, std::size_t at, std::uint32_t v) {
  store_le32(reinterpret_cast<std::byte*>(b.data() + at), v);
}
void put64(std::vector<std::uint8_t>& b, std::size_t at, std::uint64_t v) {
  store_le64(reinterpret_cast<std::byte*>(b.data() + at), v);
}
// Appends an entry header (size, type, value, version 1) + payload.
void entry(std::vector<std::uint8_t>& b, std::uint16_t type, std::uint16_t value,
           const std::vector<std::uint8_t>& payload) {
  const std::size_t at = b.size();
  b.resize(at + 8);
  put16(b, at, static_cast<std::uint16_t>(8 + payload.size()));
  put16(b, at + 2, type);
  put16(b, at + 4, value);
  put16(b, at + 6, 1);
  b.insert(b.end(), payload.begin(), payload.end());
}
// An AES-CCM key entry payload: nonce, tag, encrypted {u16 size, ..., key at 12}.
std::vector<std::uint8_t> ccm_payload(std::span<const std::byte> key,
                                      std::span<const std::byte> secret, std::uint8_t nonce0) {
  std::vector<std::byte> datum(12 + secret.size()), ct(datum.size()), tag(16), nonce(12);
  store_le32(datum.data(), static_cast<std::uint32_t>(datum.size()));  // u16 size (+ u16 0)
  std::copy(secret.begin(), secret.end(), datum.begin() + 12);
  for (std::size_t i = 0; i < nonce.size(); ++i) nonce[i] = std::byte(nonce0 + i);
  (void)crypto::aes_ccm_encrypt(key, nonce, datum, ct, tag);
  std::vector<std::uint8_t> out;
  for (auto v : {std::span<const std::byte>(nonce), std::span<const std::byte>(tag),
                 std::span<const std::byte>(ct)})
    for (std::byte x : v) out.push_back(std::to_integer<std::uint8_t>(x));
  return out;
}
}  // namespace

std::vector<std::uint8_t> bitlk_seed() {
  std::vector<std::uint8_t> bs(512);
  const std::uint8_t jmp[3] = {0xEB, 0x58, 0x90};
  std::memcpy(bs.data(), jmp, 3);
  std::memcpy(bs.data() + 3, "-FVE-FS-", 8);
  put16(bs, 11, 512);
  const std::uint8_t guid[16] = {0x3b, 0xd6, 0x67, 0x49, 0x29, 0x2e, 0xd8, 0x4a,
                                 0x83, 0x99, 0xf6, 0xa3, 0x39, 0xe3, 0xd0, 0x01};
  std::memcpy(bs.data() + 160, guid, 16);
  for (int i = 0; i < 3; ++i) put64(bs, 176 + 8 * i, kBitlkSeedFve[i]);
  bs[510] = 0x55;
  bs[511] = 0xAA;

  std::vector<std::uint8_t> b(112);
  std::memcpy(b.data(), "-FVE-FS-", 8);
  put16(b, 10, 2);
  put16(b, 12, 4);
  put16(b, 14, 4);
  put64(b, 16, kBitlkSeedImageBytes);
  put32(b, 28, kBitlkSeedVhBytes / 512);
  for (int i = 0; i < 3; ++i) put64(b, 32 + 8 * i, kBitlkSeedFve[i]);
  put64(b, 56, kBitlkSeedVhOffset);
  put32(b, 68, 1);
  put32(b, 72, 48);
  for (int i = 0; i < 16; ++i) b[80 + i] = static_cast<std::uint8_t>(0xA0 + i);  // volume GUID
  put16(b, 100, 0x8004);                                                         // AES-XTS-128
  put64(b, 104, 132000000000000000ull);                                          // 2019

  std::vector<std::byte> clear_key(32), vmk(32), fvek(32);
  for (int i = 0; i < 32; ++i) {
    clear_key[i] = std::byte(0x20 + i);
    vmk[i] = std::byte(0x80 + i);
    fvek[i] = std::byte(0x40 + i);
  }
  const std::string desc = "fuzz seed";
  std::vector<std::uint8_t> d;
  for (char c : desc) d.insert(d.end(), {static_cast<std::uint8_t>(c), 0});
  d.insert(d.end(), {0, 0});
  entry(b, 0x0007, 0x0002, d);
  std::vector<std::uint8_t> v(28);
  for (int i = 0; i < 16; ++i) v[i] = static_cast<std::uint8_t>(0xC0 + i);  // VMK GUID
  put16(v, 26, 0x0000);                                                     // clear key
  std::vector<std::uint8_t> key_payload(4);
  put32(key_payload, 0, 0x2000);
  for (std::byte x : clear_key) key_payload.push_back(std::to_integer<std::uint8_t>(x));
  entry(v, 0x0000, 0x0001, key_payload);
  entry(v, 0x0000, 0x0005, ccm_payload(clear_key, vmk, 1));
  entry(b, 0x0002, 0x0008, v);
  entry(b, 0x0003, 0x0005, ccm_payload(vmk, fvek, 2));
  std::vector<std::uint8_t> vh(16);
  put64(vh, 0, kBitlkSeedVhOffset);
  put64(vh, 8, kBitlkSeedVhBytes);
  entry(b, 0x000F, 0x000F, vh);
  put32(b, 64, static_cast<std::uint32_t>(b.size() - 64));
  put32(b, 76, static_cast<std::uint32_t>(b.size() - 64));
  b.resize((b.size() + 15) / 16 * 16);
  put16(b, 8, static_cast<std::uint16_t>(b.size() / 16));
  const std::size_t block = b.size();
  b.resize(block + 8);
  put16(b, block, 8);
  put16(b, block + 2, 2);
  put32(b, block + 4,
        crypto::crc32_ieee(std::span(reinterpret_cast<const std::byte*>(b.data()), block)));
  bs.insert(bs.end(), b.begin(), b.end());
  return bs;
}

namespace {
// Writes {CRC-32C, seed 0xFFFFFFFF} over b[0, n) as Core Storage does.
void fix_crc32c(std::byte* b, std::size_t n) {
  store_le32(b + 4, 0xFFFFFFFFu);
  store_le32(b, crypto::crc32c(0xFFFFFFFFu, std::span<const std::byte>(b + 8, n - 8)));
}
}  // namespace

int fvault2_metadata(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> img(128u << 10);
  const auto in = as_span(data, std::min<std::size_t>(size, 64u << 10));
  std::copy(in.begin(), in.end(), img.begin());
  fix_crc32c(img.data(), 512);
  fix_crc32c(img.data() + 4096, 8192);
  volume::format::SpanStore store(img, "fuzz");
  (void)volume::is_fvault2(store);
  auto h = volume::Fvault2Header::load(store);
  if (h) {
    (void)(*h)->layout();
    (void)(*h)->dump("fuzz");
  }
  return 0;
}

std::vector<std::uint8_t> fvault2_seed() {
  std::vector<std::uint8_t> b(4096 + 8192 + 64);
  put16(b, 8, 1);  // version
  b[88] = 0x43;    // "CS", big-endian
  b[89] = 0x53;
  put32(b, 96, 4096);  // block size
  put64(b, 104, 1);    // disk label at block 1
  put32(b, 168, 16);   // key data size
  for (int i = 0; i < 16; ++i) b[176 + i] = static_cast<std::uint8_t>(i + 1);
  for (int i = 0; i < 16; ++i) b[304 + i] = static_cast<std::uint8_t>(0xF0 + i);
  put16(b, 4096 + 10, 0x0011);
  put32(b, 4096 + 220, 8192);      // volume groups descriptor after the label
  put64(b, 4096 + 8192 + 8, 4);    // 4 encrypted metadata blocks
  put64(b, 4096 + 8192 + 32, 16);  // at block 16 (zeros: the walk stops)
  return b;
}

int control_message(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  if (auto req = fs::decode_request(in)) {
    auto again = fs::encode_request(*req);
    CRYPTMAP_CHECK(again && again->size() == size && std::memcmp(again->data(), data, size) == 0);
  }
  if (auto rep = fs::decode_reply(in)) {
    auto again = fs::encode_reply(*rep);
    CRYPTMAP_CHECK(again && again->size() == size && std::memcmp(again->data(), data, size) == 0);
  }
  return 0;
}

std::vector<std::uint8_t> control_seed(int which) {
  Result<SecretBytes> body = make_error(Errc::kInvalid, "control seed");
  if (which == 4) {  // a reencrypt progress reply
    fs::Reply r;
    r.daemon_pid = 42;
    r.progress = true;
    r.done_bytes = 1ull << 20;
    r.total_bytes = 1ull << 30;
    body = fs::encode_reply(r);
  } else if (which == 3) {  // a reencrypt request: the passphrase, a hotzone size
    fs::Request r;
    r.verb = fs::Verb::kReencrypt;
    r.name = "data";
    r.hotzone_bytes = 1ull << 20;
    r.volume_key = *SecretBytes::copy_of(std::string_view("passphrase"));
    body = fs::encode_request(r);
  } else if (which == 2) {
    fs::Reply r;
    r.daemon_pid = 42;
    for (int i = 0; i < 2; ++i) {
      fs::VolumeStatus v;
      v.name = "v" + std::to_string(i);
      v.source.image = "/srv/disk.img";
      v.layout.cipher.cipher = "aes";
      v.layout.segments.push_back({volume::SegmentKind::kCrypt, 0, 4096, 0, 0, {}});
      v.size_bytes = 4096;
      v.open_flags = fs::kOpenNoReadWorkqueue;
      r.volumes.push_back(std::move(v));
    }
    body = fs::encode_reply(r);
  } else {
    fs::Request r;
    r.verb = which == 1 ? fs::Verb::kResize : fs::Verb::kAdd;
    r.name = "data";
    r.source = {"/srv/disk.img", "", {}};
    r.layout.cipher.cipher = "aes";
    r.layout.cascade = {"serpent"};
    r.layout.allow_discards = true;
    r.new_size = which == 1 ? (1ull << 33) : 0;
    if (which == 0) r.volume_key = *SecretBytes::copy_of(std::string_view("0123456789abcdef"));
    body = fs::encode_request(r);
  }
  CRYPTMAP_CHECK(body.has_value());
  const auto* p = reinterpret_cast<const std::uint8_t*>(body->data());
  return std::vector<std::uint8_t>(p, p + body->size());
}

int store_uri(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  (void)volume::is_nbd_uri(text);
  (void)volume::is_store_uri(text);
  auto spec = volume::parse_rbd_spec(text);
  if (spec) {
    // What parses names a pool and an image, and says the same when written back out.
    CRYPTMAP_CHECK(!spec->pool.empty() && !spec->image.empty());
    std::string again = "rbd:" + spec->pool + "/" + spec->image;
    if (!spec->snap.empty()) again.append("@").append(spec->snap);
    if (!spec->conf.empty()) again.append(":conf=").append(spec->conf);
    if (!spec->id.empty()) again.append(":id=").append(spec->id);
    auto back = volume::parse_rbd_spec(again);
    CRYPTMAP_CHECK(back && back->pool == spec->pool && back->image == spec->image);
  }
  return 0;
}

namespace {
std::uint32_t fuzz_crc32(const std::byte* p, std::size_t n) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= static_cast<std::uint8_t>(p[i]);
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
  }
  return ~c;
}
void put_be32(std::byte* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (24 - 8 * i));
}
}  // namespace

int tcrypt_header(const std::uint8_t* data, std::size_t size) {
  std::array<std::byte, 512> h{};
  std::memcpy(h.data(), data, std::min<std::size_t>(size, 512));
  const std::uint8_t ctl = size > 512 ? data[512] : 0;
  std::uint64_t image = 1u << 20;
  if (size >= 521) {
    image = 0;
    for (int i = 0; i < 8; ++i) image = (image << 8) | data[513 + i];
  }
  if ((ctl & 1) != 0) {
    std::memcpy(h.data() + 64, (ctl & 2) != 0 ? "VERA" : "TRUE", 4);
    put_be32(h.data() + 72, fuzz_crc32(h.data() + 256, 256));
    put_be32(h.data() + 252, fuzz_crc32(h.data() + 64, 188));
  }
  volume::TcryptOptions o;
  o.veracrypt = (ctl & 2) != 0;
  o.hidden = (ctl & 0x40) != 0;
  o.system = (ctl & 0x80) != 0;
  static const char* const kChains[][2] = {
      {"aes", "xts-plain64"},      {"serpent-twofish-aes", "xts-plain64"},
      {"twofish", "lrw-benbi"},    {"aes-twofish-serpent", "lrw-benbi"},
      {"camellia", "xts-plain64"}, {"kuznyechik-camellia", "xts-plain64"},
      {"blowfish", "cbc-tcw"},     {"", ""}};
  auto hdr = volume::tcrypt_parse_header(h, o.veracrypt);
  if (hdr) {
    const auto& c = kChains[(ctl >> 2) & 7];
    auto l = volume::tcrypt_layout(*hdr, c[0], c[1], o, image);
    if (l) {
      volume::TcryptMatch m;
      m.header = *hdr;
      m.chain = c[0];
      m.mode = c[1];
      m.layout = *l;
      (void)volume::tcrypt_dump(m, "fuzz", false);
      (void)volume::tcrypt_dump(m, "fuzz", true);
    }
  }
  const auto bytes = as_span(data, size);
  const std::array<std::span<const std::byte>, 2> files{bytes, bytes.first(size / 2)};
  (void)volume::tcrypt_pool(bytes.first(std::min<std::size_t>(size, 130)), files, o.veracrypt);
  if ((ctl & 0x20) != 0) {
    o.veracrypt = false;
    o.hash = "sha512";
    o.cipher = "aes";
    volume::format::SpanStore store(bytes, "fuzz");
    (void)volume::tcrypt_unlock(store, o, bytes.first(std::min<std::size_t>(size, 64)));
  }
  return 0;
}

int loopaes_keyfile(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  volume::LoopaesOptions o;
  static constexpr std::uint32_t kBits[] = {128, 192, 256, 128};
  o.key_bits = kBits[data[0] & 3];
  if ((data[0] & 4) != 0) o.hash = "sha1";
  auto k = volume::loopaes_parse_keyfile(as_span(data + 1, size - 1), o);
  if (!k) return 0;
  CRYPTMAP_CHECK(k->key_count == 1 || k->key_count == 64 || k->key_count == 65);
  CRYPTMAP_CHECK(k->volume_key.size() == k->key_count * (o.key_bits / 8));
  auto l = volume::loopaes_layout(o, k->key_count, 1u << 20);
  CRYPTMAP_CHECK(l && l->key_bytes == k->volume_key.size());
  return 0;
}

std::vector<std::uint8_t> loopaes_keyfile_seed() {
  std::vector<std::uint8_t> b{0};
  for (int i = 0; i < 65; ++i) {
    const std::string line = "fuzz seed key line " + std::to_string(100 + i) + "\n";
    b.insert(b.end(), line.begin(), line.end());
  }
  return b;
}

int integrity_superblock(const std::uint8_t* data, std::size_t size) {
  std::array<std::byte, 512> sector{};
  std::memcpy(sector.data(), data, std::min<std::size_t>(size, 512));
  std::uint64_t dev = 524288, start = 32768;
  if (size >= 520) dev = load_le64(reinterpret_cast<const std::byte*>(data) + 512);
  if (size >= 528) start = load_le64(reinterpret_cast<const std::byte*>(data) + 520);
  namespace vi = volume::integrity;
  auto sb = vi::parse_superblock(sector);
  if (!sb) return 0;
  (void)vi::describe_superblock(*sb);
  (void)vi::check_luks2_superblock(*sb, sb->integrity_tag_size, sb->block_bytes());
  auto g = vi::geometry_from_superblock(*sb, dev, start);
  if (!g) return 0;
  // Whatever the superblock says, an accepted geometry keeps every data sector and tag inside
  // the device, after the journal.
  const std::uint64_t last = g->provided_data_sectors - 1;
  CRYPTMAP_CHECK(g->data_sector(last) < dev);
  CRYPTMAP_CHECK(g->data_sector(0) >= start + g->initial_sectors);
  CRYPTMAP_CHECK(g->tag_byte(last) + g->tag_size <=
                 g->data_sector(last & ~(g->interleave_sectors() - 1)) * 512);
  const vi::Superblock again = vi::format_superblock(*g);
  (void)again;
  return 0;
}

std::vector<std::uint8_t> integrity_superblock_seed() {
  namespace vi = volume::integrity;
  vi::GeometryParams p;
  p.dev_sectors = 524288;
  p.start = 32768;
  p.tag_size = 48;
  p.sector_size = 4096;
  auto g = vi::compute_geometry(p);
  CRYPTMAP_CHECK(g.has_value());
  std::vector<std::byte> sb(512);
  vi::serialize_superblock(vi::format_superblock(*g), sb);
  std::vector<std::uint8_t> out(528);
  std::memcpy(out.data(), sb.data(), 512);
  store_le64(reinterpret_cast<std::byte*>(out.data()) + 512, p.dev_sectors);
  store_le64(reinterpret_cast<std::byte*>(out.data()) + 520, p.start);
  return out;
}

namespace {

// The journal the integrity_journal target edits: 4 sections for 512-byte (bit 1 of byte 0
// clear) or 4 KiB blocks, sections sealed with the sequences of byte 1, three entries in use
// per section.
struct FuzzJournal {
  volume::integrity::Geometry g;
  std::vector<std::byte> bytes;
};

FuzzJournal fuzz_journal(bool big_blocks, std::uint8_t seqs) {
  namespace vi = volume::integrity;
  vi::GeometryParams p;
  p.dev_sectors = big_blocks ? 32768 : 8192;
  p.tag_size = big_blocks ? 32 : 16;
  p.sector_size = big_blocks ? 4096 : 512;
  p.journal_sections = 4;
  auto g = vi::compute_geometry(p);
  CRYPTMAP_CHECK(g.has_value());
  FuzzJournal j{*g, std::vector<std::byte>(std::size_t{g->journal_sections} *
                                           g->journal_section_sectors * 512)};
  vi::write_initial_journal(j.g, j.bytes);
  const std::size_t section = std::size_t{j.g.journal_section_sectors} * 512;
  for (std::uint32_t i = 0; i < j.g.journal_sections; ++i) {
    const unsigned seq = (seqs >> (2 * i)) & 3;
    for (std::uint32_t s = 0; s < j.g.journal_section_sectors; ++s)
      store_le64(j.bytes.data() + i * section + s * 512 + 504, vi::journal_commit_id(i, s, seq));
    for (std::uint32_t n = 0; n < 3; ++n)
      store_le64(j.bytes.data() + i * section + vi::journal_entry_offset(j.g, n),
                 std::uint64_t{i * 3 + n} * j.g.sectors_per_block());
  }
  return j;
}

}  // namespace

int integrity_journal(const std::uint8_t* data, std::size_t size) {
  namespace vi = volume::integrity;
  if (size < 2) return 0;
  FuzzJournal j = fuzz_journal((data[0] & 2) != 0, data[1]);
  // Edits: (LE32 offset modulo the journal size, byte).
  for (std::size_t k = 2; k + 5 <= size; k += 5) {
    const std::uint32_t at = load_le32(reinterpret_cast<const std::byte*>(data) + k);
    j.bytes[at % j.bytes.size()] = static_cast<std::byte>(data[k + 4]);
  }
  const bool journal_mode = (data[0] & 1) != 0;
  auto r = vi::plan_journal_replay(j.g, j.bytes, journal_mode);
  if (!r) return 0;  // a clear error; the planner writes nothing by construction
  CRYPTMAP_CHECK(r->write_sections <= j.g.journal_sections);
  CRYPTMAP_CHECK(r->write_start < j.g.journal_sections);
  CRYPTMAP_CHECK(r->commit_seq < 4 && r->erase_seq < 4);
  CRYPTMAP_CHECK(r->empty ? r->writes.empty() : true);
  std::vector<std::byte> block(j.g.block_bytes());
  for (const vi::JournalWrite& w : r->writes) {
    CRYPTMAP_CHECK(w.section < j.g.journal_sections && w.entry < j.g.journal_section_entries);
    CRYPTMAP_CHECK(w.sector < j.g.provided_data_sectors);
    CRYPTMAP_CHECK(w.sector % j.g.sectors_per_block() == 0);
    vi::journal_entry_block(j.g, j.bytes, w.section, w.entry, block);
    CRYPTMAP_CHECK(vi::journal_entry_tag(j.g, j.bytes, w.section, w.entry).size() == j.g.tag_size);
  }
  // Deterministic: the same bytes give the same plan.
  auto again = vi::plan_journal_replay(j.g, j.bytes, journal_mode);
  CRYPTMAP_CHECK(again && again->writes == r->writes && again->reinitialise == r->reinitialise);
  return 0;
}

std::vector<std::uint8_t> integrity_journal_seed() {
  // Mode J, 4 KiB blocks; section 0 carries sequence 1, 1..3 sequence 0 (the kernel's first
  // commit after format); one edit (a byte of entry 0's data).
  std::vector<std::uint8_t> out = {3, 0x01, 0, 0x10, 0, 0, 0x5a};
  return out;
}

}  // namespace cryptmap::fuzz

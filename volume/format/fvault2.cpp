// FileVault 2 (Core Storage) metadata and unlock (docs/bitlk.md §8).
#include "volume/format/fvault2.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "crypto/cipher_spec.h"
#include "crypto/hash.h"
#include "crypto/kdf.h"
#include "crypto/key_protect.h"
#include "volume/format/internal/base64.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

constexpr std::size_t kHeader = 512;
constexpr std::size_t kBlock = 8192;                  // metadata block
constexpr std::uint64_t kMaxOffset = 1ull << 30;      // metadata beyond 1 GiB is refused
constexpr std::uint64_t kMaxEncryptedBlocks = 65536;  // bound on the metadata walk

Error corrupt(const char* what, std::uint64_t object = kNoObject) {
  return make_error(Errc::kCorrupt, what, object);
}

// CRC-32C over everything after the 8-byte {value, seed} pair; the seed must be 0xFFFFFFFF.
bool crc_ok(std::span<const std::byte> b) {
  return load_le32(b.data() + 4) == 0xFFFFFFFFu &&
         crypto::crc32c(0xFFFFFFFFu, b.subspan(8)) == load_le32(b.data());
}

std::string uuid_text(const std::byte* p) {
  char s[40];
  std::snprintf(s, sizeof s, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                std::to_integer<unsigned>(p[0]), std::to_integer<unsigned>(p[1]),
                std::to_integer<unsigned>(p[2]), std::to_integer<unsigned>(p[3]),
                std::to_integer<unsigned>(p[4]), std::to_integer<unsigned>(p[5]),
                std::to_integer<unsigned>(p[6]), std::to_integer<unsigned>(p[7]),
                std::to_integer<unsigned>(p[8]), std::to_integer<unsigned>(p[9]),
                std::to_integer<unsigned>(p[10]), std::to_integer<unsigned>(p[11]),
                std::to_integer<unsigned>(p[12]), std::to_integer<unsigned>(p[13]),
                std::to_integer<unsigned>(p[14]), std::to_integer<unsigned>(p[15]));
  return s;
}

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (any case) to 16 bytes.
bool parse_uuid(std::string_view s, std::array<std::byte, 16>& out) {
  if (s.size() != 36) return false;
  std::size_t o = 0;
  for (std::size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
      ++i;
      continue;
    }
    auto nib = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = nib(s[i]), lo = nib(s[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[o++] = std::byte(static_cast<std::uint8_t>(hi * 16 + lo));
    i += 2;
  }
  return o == 16;
}

// The first non-empty value of `<key>KEY</key><TYPE ...>VALUE</TYPE>` in a plist (no
// whitespace in between, as cryptsetup's pattern matches it); empty when there is none.
std::string plist_value(std::string_view xml, std::string_view key, std::string_view type) {
  std::string k = "<key>";
  k.append(key).append("</key><").append(type);
  std::string close = "</";
  close.append(type).append(">");
  for (auto at = xml.find(k); at != std::string_view::npos; at = xml.find(k, at + 1)) {
    const auto gt = xml.find('>', at + k.size());
    if (gt == std::string_view::npos) return {};
    const auto lt = xml.find('<', gt + 1);
    if (lt == std::string_view::npos) return {};
    if (lt == gt + 1 || xml.substr(lt, close.size()) != close) continue;
    return std::string(xml.substr(gt + 1, lt - gt - 1));
  }
  return {};
}

// The XML text of a decrypted block at [off, off + size) (bounds checked).
Result<std::string_view> block_xml(std::span<const std::byte> b, std::uint32_t off,
                                   std::uint32_t size) {
  if (off > kBlock || size > kBlock - off) return corrupt("FVAULT2: XML outside its block", off);
  std::string_view x(reinterpret_cast<const char*>(b.data()) + off, size);
  return x.substr(0, x.find('\0'));
}

}  // namespace

bool is_fvault2(const BackingStore& image) {
  std::array<std::byte, kHeader> h{};
  if (image.size_bytes() < kHeader || !image.read_at(ByteOffset{0}, h)) return false;
  return crc_ok(h) && load_be16(h.data() + 88) == 0x4353;
}

Result<std::unique_ptr<Fvault2Header>> Fvault2Header::load(const BackingStore& image) {
  std::unique_ptr<Fvault2Header> f(new Fvault2Header);
  std::array<std::byte, kHeader> h{};
  if (image.size_bytes() < kHeader)
    return make_error(Errc::kInvalid, "FVAULT2: device too small for a volume header");
  CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{0}, h));
  if (!crc_ok(h) || load_be16(h.data() + 88) != 0x4353)
    return make_error(Errc::kInvalid, "FVAULT2: no Core Storage volume header (CRC or magic)");
  if (load_le16(h.data() + 8) != 1)
    return make_error(Errc::kUnsupported, "Unsupported FVAULT2 version", load_le16(h.data() + 8));
  if (load_le32(h.data() + 168) != 16)
    return make_error(Errc::kUnsupported, "FVAULT2: metadata key size (only AES-128)");
  const std::uint64_t bs = load_le32(h.data() + 96);
  if (bs < 512 || bs > (1u << 20)) return corrupt("FVAULT2: block size", bs);
  std::array<std::byte, 32> md_key{};
  std::memcpy(md_key.data(), h.data() + 176, 16);
  std::memcpy(md_key.data() + 16, h.data() + 304, 16);
  f->pv_uuid_ = uuid_text(h.data() + 304);

  // Disk label (block type 0x0011) -> volume groups descriptor.
  const std::uint64_t label_blk = load_le64(h.data() + 104);
  if (label_blk > kMaxOffset / bs) return corrupt("FVAULT2: disk label offset", label_blk);
  std::vector<std::byte> b(kBlock);
  std::uint64_t off = label_blk * bs;
  if (off + kBlock > image.size_bytes()) return corrupt("FVAULT2: disk label past the end", off);
  CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{off}, b));
  if (!crc_ok(b)) return corrupt("FVAULT2: disk label checksum (CRC-32C) mismatch", off);
  off += load_le32(b.data() + 220);
  if (off > kMaxOffset || off + 40 > image.size_bytes())
    return corrupt("FVAULT2: volume groups descriptor offset", off);
  std::array<std::byte, 40> vgd{};
  CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{off}, vgd));
  const std::uint64_t blocks = load_le64(vgd.data() + 8);
  const std::uint64_t start_blk = load_le64(vgd.data() + 32);
  if (start_blk > kMaxOffset / bs) return corrupt("FVAULT2: encrypted metadata offset", start_blk);
  const std::uint64_t start = start_blk * bs;

  // Encrypted metadata: each 8 KiB block XTS-decrypted with tweak = its index.
  bool got19 = false, got1a = false, got305 = false;
  for (std::uint64_t i = 0; i < blocks && i < kMaxEncryptedBlocks; ++i) {
    const std::uint64_t o = start + i * kBlock;
    if (o > kMaxOffset || o + kBlock > image.size_bytes())
      return corrupt("FVAULT2: encrypted metadata past the end", o);
    CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{o}, b));
    if (std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; })) break;
    CRYPTMAP_TRY_VOID(crypto::aes_xts_decrypt_unit(md_key, i, b));
    if (!crc_ok(b)) return corrupt("FVAULT2: encrypted metadata block checksum mismatch", i);
    const std::uint16_t type = load_le16(b.data() + 10);
    if (type == 0x0019) {
      CRYPTMAP_TRY(xml, block_xml(b, load_le32(b.data() + 112), load_le32(b.data() + 116)));
      auto pwk = format::base64_decode(plist_value(xml, "PassphraseWrappedKEKStruct", "data"));
      auto kwvk = format::base64_decode(plist_value(xml, "KEKWrappedVolumeKeyStruct", "data"));
      if (!pwk || pwk->size() != 284 || !kwvk || kwvk->size() != 256)
        return corrupt("FVAULT2: wrapped key structures in block 0x0019", i);
      std::memcpy(f->salt_.data(), pwk->data() + 8, 16);
      std::memcpy(f->wrapped_kek_.data(), pwk->data() + 32, 24);
      f->iterations_ = load_le32(pwk->data() + 168);
      std::memcpy(f->wrapped_vk_.data(), kwvk->data() + 8, 24);
      secure_zero(pwk->data(), pwk->size());
      secure_zero(kwvk->data(), kwvk->size());
      got19 = true;
    } else if (type == 0x001A) {
      CRYPTMAP_TRY(xml, block_xml(b, load_le32(b.data() + 128), load_le32(b.data() + 132)));
      const std::string size = plist_value(xml, "com.apple.corestorage.lv.size", "integer");
      const std::string fam = plist_value(xml, "com.apple.corestorage.lv.familyUUID", "string");
      char* end = nullptr;
      const unsigned long long v = std::strtoull(size.c_str(), &end, 16);
      if (size.empty() || v == 0 || v == ~0ull || !parse_uuid(fam, f->family_bin_))
        return corrupt("FVAULT2: logical volume size or family UUID in block 0x001A", i);
      f->lv_size_ = v;
      f->family_uuid_ = uuid_text(f->family_bin_.data());
      got1a = true;
    } else if (type == 0x0305) {
      f->lv_offset_ = std::uint64_t{load_le32(b.data() + 104)} * bs;
      got305 = true;
    }
  }
  secure_zero(b.data(), b.size());
  secure_zero(md_key.data(), md_key.size());
  if (!got19 || !got1a || !got305)
    return corrupt("FVAULT2: necessary metadata blocks (0x0019, 0x001A, 0x0305) not found");
  if (f->iterations_ == 0) return corrupt("FVAULT2: PBKDF2 iteration count 0");

  VolumeLayout& l = f->layout_;
  l.type = VolumeType::kFvault2;
  CRYPTMAP_TRY(spec, crypto::CipherSpec::parse("aes-xts-plain64"));
  l.cipher = std::move(spec);
  l.key_bytes = 32;
  l.sector_size = 512;
  l.iv_offset = 0;
  l.data_offset_bytes = f->lv_offset_;
  l.size_bytes = f->lv_size_ / 512 * 512;
  l.uuid = f->family_uuid_;
  return f;
}

Result<SecretBytes> Fvault2Header::unlock(std::span<const std::byte> passphrase) const {
  CRYPTMAP_TRY(pk, SecretBytes::allocate(16));
  CRYPTMAP_TRY_VOID(crypto::pbkdf2("sha256", passphrase, salt_, iterations_, pk.span()));
  CRYPTMAP_TRY(kek, SecretBytes::allocate(16));
  if (auto r = crypto::aes_key_unwrap(pk.span(), wrapped_kek_, kek.span()); !r) {
    if (r.error().code == Errc::kBadKey)
      return make_error(Errc::kBadKey, "No key available with this passphrase.");
    return r.error();
  }
  CRYPTMAP_TRY(vk, SecretBytes::allocate(32));
  CRYPTMAP_TRY_VOID(crypto::aes_key_unwrap(kek.span(), wrapped_vk_, vk.span().first(16)));
  std::array<std::byte, 32> h{};
  CRYPTMAP_TRY_VOID(crypto::hash_digest(
      "sha256", {std::span<const std::byte>(vk.span().first(16)), family_bin_}, h));
  std::memcpy(vk.data() + 16, h.data(), 16);
  secure_zero(h.data(), h.size());
  return vk;
}

std::string Fvault2Header::dump(const std::string& device) const {
  std::string o = "Header information for FVAULT2 device " + device + ".\n";
  o += "Physical volume UUID: \t" + pv_uuid_ + "\n";
  o += "Family UUID:          \t" + family_uuid_ + "\n";
  o += "Logical volume offset:\t" + std::to_string(lv_offset_) + " [bytes]\n";
  o += "Logical volume size:  \t" + std::to_string(lv_size_) + " [bytes]\n";
  o += "Cipher:               \taes\n";
  o += "Cipher mode:          \txts-plain64\n";
  o += "PBKDF2 iterations:    \t" + std::to_string(iterations_) + "\n";
  o += "PBKDF2 salt:          \t";
  for (std::byte x : salt_) o += to_hex(std::span(&x, 1)) + " ";
  o += "\n";
  return o;
}

}  // namespace cryptmap::volume

// BitLocker metadata: parsing, unlocking and the segment map (docs/bitlk.md).
#include "volume/format/bitlk.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "base/bytes.h"
#include "crypto/cipher_spec.h"
#include "crypto/hash.h"
#include "crypto/key_protect.h"
#include "volume/segment/segment_map.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

constexpr std::size_t kFveArea = 65536;      // each metadata copy's area (dm-zero'd)
constexpr std::size_t kFveBlockHeader = 64;  // "-FVE-FS-" block header
constexpr std::size_t kMetaHeader = 48;      // metadata header after it
constexpr std::size_t kEntryHeader = 8;      // size, type, value, version (u16 each)
constexpr std::size_t kVmkHeader = 28;       // GUID, modified, unknown, protection
constexpr std::size_t kKeyDatumHeader = 12;  // decrypted key data: size u16, ... , method u32
constexpr std::size_t kCcmNonce = 12, kCcmTag = 16;

// Entry types and values (docs/bitlk.md §3).
constexpr std::uint16_t kTypeVmk = 0x0002, kTypeFvek = 0x0003, kTypeDescription = 0x0007,
                        kTypeVolumeHeader = 0x000F, kTypeStartupKey = 0x0006;
constexpr std::uint16_t kValueKey = 0x0001, kValueString = 0x0002, kValueStretchKey = 0x0003,
                        kValueAesCcm = 0x0005, kValueVmk = 0x0008, kValueExternalKey = 0x0009,
                        kValueOffsetSize = 0x000F;
// VMK protection.
constexpr std::uint16_t kProtClearKey = 0x0000, kProtTpm = 0x0100, kProtStartupKey = 0x0200,
                        kProtTpmPin = 0x0500, kProtRecovery = 0x0800, kProtSmartCard = 0x1000,
                        kProtPassword = 0x2000;

constexpr std::array<std::uint8_t, 16> kBitlkGuid = {
    0x3b, 0xd6, 0x67, 0x49, 0x29, 0x2e, 0xd8, 0x4a, 0x83, 0x99, 0xf6, 0xa3, 0x39, 0xe3, 0xd0, 0x01};
constexpr std::array<std::uint8_t, 16> kEowGuid = {0x3b, 0x4d, 0xa8, 0x92, 0x80, 0xdd, 0x0e, 0x4d,
                                                   0x9e, 0x4e, 0xb1, 0xe3, 0x28, 0x4e, 0xae, 0xd8};

bool guid_is(const std::byte* p, const std::array<std::uint8_t, 16>& g) {
  return std::memcmp(p, g.data(), 16) == 0;
}

// GUID text as cryptsetup prints it (the first three fields little-endian).
std::string guid_text(const std::byte* p) {
  char b[40];
  std::snprintf(b, sizeof b, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", load_le32(p),
                load_le16(p + 4), load_le16(p + 6), std::to_integer<unsigned>(p[8]),
                std::to_integer<unsigned>(p[9]), std::to_integer<unsigned>(p[10]),
                std::to_integer<unsigned>(p[11]), std::to_integer<unsigned>(p[12]),
                std::to_integer<unsigned>(p[13]), std::to_integer<unsigned>(p[14]),
                std::to_integer<unsigned>(p[15]));
  return b;
}

// UTF-16LE (up to a NUL) to UTF-8; unpaired surrogates become U+FFFD.
std::string utf16_to_utf8(const std::byte* p, std::size_t bytes) {
  std::string out;
  for (std::size_t i = 0; i + 1 < bytes; i += 2) {
    std::uint32_t c = load_le16(p + i);
    if (c == 0) break;
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < bytes) {
      const std::uint32_t lo = load_le16(p + i + 2);
      if (lo >= 0xDC00 && lo < 0xE000) {
        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
        i += 2;
      } else {
        c = 0xFFFD;
      }
    } else if (c >= 0xD800 && c < 0xE000) {
      c = 0xFFFD;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return out;
}

// UTF-8 passphrase to UTF-16LE (no terminator), into locked memory. kInvalid for bad UTF-8.
Result<SecretBytes> utf8_to_utf16le(std::span<const std::byte> in) {
  CRYPTMAP_TRY(out, SecretBytes::allocate(in.size() * 4 + 2));
  std::size_t o = 0;
  auto put = [&](std::uint32_t u) {
    store_le32(out.data() + o, u);  // writes 4, keeps 2
    o += 2;
  };
  for (std::size_t i = 0; i < in.size();) {
    const auto b0 = std::to_integer<std::uint32_t>(in[i]);
    std::uint32_t c = 0;
    std::size_t n = 0;
    if (b0 < 0x80) {
      c = b0, n = 1;
    } else if ((b0 & 0xE0) == 0xC0) {
      c = b0 & 0x1F, n = 2;
    } else if ((b0 & 0xF0) == 0xE0) {
      c = b0 & 0x0F, n = 3;
    } else if ((b0 & 0xF8) == 0xF0) {
      c = b0 & 0x07, n = 4;
    } else {
      return make_error(Errc::kInvalid, "BITLK passphrase: not valid UTF-8");
    }
    if (i + n > in.size()) return make_error(Errc::kInvalid, "BITLK passphrase: not valid UTF-8");
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = std::to_integer<std::uint32_t>(in[i + k]);
      if ((b & 0xC0) != 0x80)
        return make_error(Errc::kInvalid, "BITLK passphrase: not valid UTF-8");
      c = (c << 6) | (b & 0x3F);
    }
    i += n;
    if (c >= 0x10000) {
      c -= 0x10000;
      put(0xD800 + (c >> 10));
      put(0xDC00 + (c & 0x3FF));
    } else {
      put(c);
    }
  }
  CRYPTMAP_TRY(exact, SecretBytes::copy_of(out.span().first(o)));
  return exact;
}

// The 16-byte key of a recovery password (8 groups of 6 digits, each divisible by 11 and
// below 11 * 65536, separated by '-'); nothing when the text is not one.
Result<SecretBytes> recovery_key(std::span<const std::byte> pass) {
  std::size_t len = pass.size();
  if (len == 56 && pass[55] == std::byte{'\n'}) len = 55;
  if (len != 55) return make_error(Errc::kInvalid, "not a recovery password");
  CRYPTMAP_TRY(key, SecretBytes::allocate(16));
  for (std::size_t g = 0; g < 8; ++g) {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 6; ++k) {
      const auto c = std::to_integer<char>(pass[g * 7 + k]);
      if (c < '0' || c > '9') return make_error(Errc::kInvalid, "not a recovery password");
      v = v * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (g < 7 && pass[g * 7 + 6] != std::byte{'-'})
      return make_error(Errc::kInvalid, "not a recovery password");
    if (v % 11 != 0 || v / 11 > 0xFFFF)
      return make_error(Errc::kInvalid, "not a recovery password");
    key.data()[2 * g] = std::byte(static_cast<std::uint8_t>((v / 11) & 0xFF));
    key.data()[2 * g + 1] = std::byte(static_cast<std::uint8_t>((v / 11) >> 8));
  }
  return key;
}

std::string filetime_text(std::uint64_t ft) {
  // 100 ns ticks since 1601-01-01; cryptsetup prints ctime() of it.
  const std::uint64_t kEpochDiff = 11644473600ull;
  const std::time_t t = static_cast<std::time_t>(ft / 10000000ull - kEpochDiff);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char b[64];
  std::strftime(b, sizeof b, "%a %b %e %H:%M:%S %Y", &tm);
  return b;
}

struct MethodInfo {
  std::uint16_t method;
  const char* spec;
  std::uint32_t key_bytes;   // volume key as dm-crypt takes it
  std::uint32_t data_bytes;  // key data needed from the FVEK datum
};
constexpr MethodInfo kMethods[] = {
    {0x8000, "aes-cbc-elephant", 32, 64}, {0x8001, "aes-cbc-elephant", 64, 64},
    {0x8002, "aes-cbc-eboiv", 16, 16},    {0x8003, "aes-cbc-eboiv", 32, 32},
    {0x8004, "aes-xts-plain64", 32, 32},  {0x8005, "aes-xts-plain64", 64, 64},
};
const MethodInfo* find_method(std::uint16_t m) {
  for (const auto& i : kMethods)
    if (i.method == m) return &i;
  return nullptr;
}

Error corrupt(const char* what, std::uint64_t object = kNoObject) {
  return make_error(Errc::kCorrupt, what, object);
}

}  // namespace

struct BitlkHeader::Vmk {
  std::string guid;
  std::string name;  // a string entry inside the VMK ("ExternalKey")
  std::uint16_t protection = 0;
  std::array<std::byte, 16> salt{};
  std::size_t ccm_at = 0, ccm_len = 0;  // nonce|tag|data in meta_
  std::size_t clear_at = 0, clear_len = 0;
};

BitlkHeader::~BitlkHeader() { secure_zero(meta_.data(), meta_.size()); }

bool is_bitlk(const BackingStore& image) {
  std::array<std::byte, 512> bs{};
  if (image.size_bytes() < bs.size() || !image.read_at(ByteOffset{0}, bs)) return false;
  if (std::memcmp(bs.data() + 3, "-FVE-FS-", 8) == 0) return true;
  return std::memcmp(bs.data() + 3, "MSWIN4.1", 8) == 0 &&
         (guid_is(bs.data() + 424, kBitlkGuid) || guid_is(bs.data() + 424, kEowGuid));
}

Result<std::unique_ptr<BitlkHeader>> BitlkHeader::load(const BackingStore& image) {
  std::unique_ptr<BitlkHeader> h(new BitlkHeader);
  const std::uint64_t image_size = image.size_bytes();
  std::array<std::byte, 512> bs{};
  if (image_size < bs.size())
    return make_error(Errc::kInvalid, "BITLK: device too small for a boot sector");
  CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{0}, bs));
  std::size_t sb = 0;
  if (std::memcmp(bs.data() + 3, "-FVE-FS-", 8) == 0) {
    sb = 160;
  } else if (std::memcmp(bs.data() + 3, "MSWIN4.1", 8) == 0) {
    sb = 424;
    h->togo_ = true;
  } else {
    return make_error(Errc::kInvalid, "BITLK: invalid or unknown signature");
  }
  if (bs[0] == std::byte{0xEB} && bs[1] == std::byte{0x52} && bs[2] == std::byte{0x90})
    return make_error(Errc::kUnsupported, "BITLK version 1 is currently not supported");
  if (bs[0] != std::byte{0xEB} || bs[1] != std::byte{0x58} || bs[2] != std::byte{0x90})
    return make_error(Errc::kInvalid, "BITLK: unknown boot sector jump");
  std::uint32_t ss = load_le16(bs.data() + 11);
  if (ss == 0) ss = 512;
  if (ss != 512 && ss != 4096)
    return make_error(Errc::kUnsupported, "BITLK: sector size (only 512 and 4096)", ss);
  if (guid_is(bs.data() + sb, kEowGuid))
    h->eow_ = true;
  else if (!guid_is(bs.data() + sb, kBitlkGuid))
    return make_error(Errc::kInvalid, "BITLK: unknown volume GUID in the boot sector");
  std::array<std::uint64_t, 3> offs{};
  for (int i = 0; i < 3; ++i) offs[i] = load_le64(bs.data() + sb + 16 + 8 * i);

  // The first metadata copy whose header and CRC-32 check.
  std::vector<std::byte> blk(kFveArea);
  bool found = false;
  Error last = corrupt("BITLK: no valid FVE metadata copy found");
  for (int c = 0; c < 3 && !found; ++c) {
    const std::uint64_t off = offs[c];
    if (off % ss != 0 || off > image_size || image_size - off < kFveArea) {
      last = corrupt("BITLK: FVE metadata offset outside the device", off);
      continue;
    }
    if (auto r = image.read_at(ByteOffset{off}, blk); !r) {
      last = r.error();
      continue;
    }
    const std::byte* p = blk.data();
    if (std::memcmp(p, "-FVE-FS-", 8) != 0) {
      last = corrupt("BITLK: FVE metadata signature", off);
      continue;
    }
    const std::uint16_t fve_version = load_le16(p + 10);
    if (fve_version == 1)
      return make_error(Errc::kUnsupported, "BITLK version 1 is currently not supported");
    if (fve_version != 2) {
      last = corrupt("BITLK: FVE metadata version", fve_version);
      continue;
    }
    const std::uint32_t meta_size = load_le32(p + 64);
    if (meta_size < kMetaHeader || meta_size > kFveArea - kFveBlockHeader) {
      last = corrupt("BITLK: FVE metadata size", meta_size);
      continue;
    }
    // Validation block right after the block (its size in 16-byte units at +8): u16 size,
    // u16 version, CRC-32 of the block.
    const std::size_t block_bytes = std::size_t{load_le16(p + 8)} * 16;
    if (block_bytes >= kFveBlockHeader + meta_size && block_bytes + 8 <= kFveArea) {
      const std::uint16_t vsize = load_le16(p + block_bytes);
      const std::uint16_t vver = load_le16(p + block_bytes + 2);
      if (vsize >= 8 && vver == 2 &&
          crypto::crc32_ieee(std::span(blk).first(block_bytes)) != load_le32(p + block_bytes + 4)) {
        last = corrupt("BITLK: FVE metadata checksum (CRC-32) mismatch", off);
        continue;
      }
    }
    found = true;
    h->version_ = fve_version;
    h->curr_state_ = load_le16(p + 12);
    h->next_state_ = load_le16(p + 14);
    h->volume_size_ = load_le64(p + 16);
    h->vh_size_ = std::uint64_t{load_le32(p + 28)} * ss;
    h->vh_offset_ = load_le64(p + 56);
    for (int i = 0; i < 3; ++i) h->fve_offsets_[i] = load_le64(p + 32 + 8 * i);
    h->guid_ = guid_text(p + 80);
    h->method_ = load_le16(p + 100);
    h->created_ = load_le64(p + 104);
    h->meta_.assign(blk.begin(),
                    blk.begin() + static_cast<std::ptrdiff_t>(kFveBlockHeader + meta_size));
  }
  secure_zero(blk.data(), blk.size());
  if (!found) return last;

  // Entries.
  const std::byte* m = h->meta_.data();
  const std::size_t end = h->meta_.size();
  for (std::size_t at = kFveBlockHeader + kMetaHeader; at + kEntryHeader <= end;) {
    const std::size_t size = load_le16(m + at);
    const std::uint16_t type = load_le16(m + at + 2), value = load_le16(m + at + 4);
    if (size == 0) break;
    if (size < kEntryHeader || size > end - at) return corrupt("BITLK: metadata entry size", at);
    const std::size_t body = at + kEntryHeader, body_len = size - kEntryHeader;
    if (type == kTypeVmk && value == kValueVmk) {
      if (body_len < kVmkHeader) return corrupt("BITLK: VMK entry too short", at);
      Vmk v;
      v.guid = guid_text(m + body);
      v.protection = load_le16(m + body + 26);
      for (std::size_t s = body + kVmkHeader; s + kEntryHeader <= at + size;) {
        const std::size_t ss2 = load_le16(m + s);
        const std::uint16_t sval = load_le16(m + s + 4);
        if (ss2 == 0) break;
        if (ss2 < kEntryHeader || ss2 > at + size - s)
          return corrupt("BITLK: VMK nested entry size", s);
        const std::size_t sb2 = s + kEntryHeader, sl = ss2 - kEntryHeader;
        if (sval == kValueStretchKey) {
          if (sl < 4 + 16) return corrupt("BITLK: stretch key entry too short", s);
          std::memcpy(v.salt.data(), m + sb2 + 4, 16);
        } else if (sval == kValueAesCcm) {
          if (sl <= kCcmNonce + kCcmTag) return corrupt("BITLK: VMK key entry too short", s);
          v.ccm_at = sb2;
          v.ccm_len = sl;
        } else if (sval == kValueKey) {
          if (sl <= 4) return corrupt("BITLK: clear key entry too short", s);
          v.clear_at = sb2 + 4;
          v.clear_len = sl - 4;
        } else if (sval == kValueString) {
          v.name = utf16_to_utf8(m + sb2, sl);
        }
        s += ss2;
      }
      h->vmks_.push_back(std::move(v));
    } else if (type == kTypeFvek && value == kValueAesCcm) {
      if (body_len <= kCcmNonce + kCcmTag) return corrupt("BITLK: FVEK entry too short", at);
      h->fvek_at_ = body;
      h->fvek_len_ = body_len;
    } else if (type == kTypeDescription && value == kValueString) {
      h->description_ = utf16_to_utf8(m + body, body_len);
    } else if (type == kTypeVolumeHeader && value == kValueOffsetSize) {
      if (body_len < 16) return corrupt("BITLK: volume header entry too short", at);
      h->vh_offset_ = load_le64(m + body);
      h->vh_size_ = load_le64(m + body + 8);
    }
    at += size;
  }

  // Layout and segment map (cryptsetup's dm table, docs/bitlk.md §6).
  VolumeLayout& l = h->layout_;
  l.type = VolumeType::kBitlk;
  l.sector_size = ss;
  l.iv_large_sectors = ss != 512;
  l.uuid = h->guid_;
  const MethodInfo* mi = find_method(h->method_);
  if (mi != nullptr) {
    CRYPTMAP_TRY(spec, crypto::CipherSpec::parse(mi->spec));
    l.cipher = std::move(spec);
    l.key_bytes = mi->key_bytes;
  }
  const std::uint64_t dev = image_size / ss * ss;
  struct Range {
    std::uint64_t off, len;
  };
  std::vector<Range> zero;
  for (std::uint64_t o : h->fve_offsets_) zero.push_back({o, kFveArea});
  if (h->vh_size_ != 0) zero.push_back({h->vh_offset_, h->vh_size_});
  std::sort(zero.begin(), zero.end(), [](const Range& a, const Range& b) { return a.off < b.off; });
  std::vector<Segment> segs;
  std::uint64_t pos = 0;
  auto crypt_to = [&](std::uint64_t until) {
    if (until > pos) segs.push_back({SegmentKind::kCrypt, pos, until - pos, pos, pos / 512, {}});
    pos = std::max(pos, until);
  };
  if (h->vh_size_ != 0) {
    if (h->vh_offset_ > dev || h->vh_size_ > dev - h->vh_offset_ || h->vh_size_ % ss != 0 ||
        h->vh_offset_ % ss != 0)
      return corrupt("BITLK: volume header area outside the device", h->vh_offset_);
    segs.push_back({SegmentKind::kCrypt, 0, h->vh_size_, h->vh_offset_, h->vh_offset_ / 512, {}});
    pos = h->vh_size_;
  }
  for (const Range& z : zero) {
    if (z.off < pos || z.off % ss != 0 || z.off > dev || z.len > dev - z.off)
      return corrupt("BITLK: metadata areas overlap or lie outside the device", z.off);
    crypt_to(z.off);
    segs.push_back({SegmentKind::kZero, z.off, z.len, 0, 0, {}});
    pos = z.off + z.len;
  }
  crypt_to(dev);
  l.segments = std::move(segs);
  l.size_bytes = dev;
  CRYPTMAP_TRY_VOID(validate_segments(l, image_size));
  return h;
}

Result<void> BitlkHeader::check_activation() const {
  if (eow_)
    return make_error(Errc::kUnsupported,
                      "BITLK devices with type 'Encrypt on write' are currently not supported");
  if (curr_state_ != 4 || next_state_ != 4)
    return make_error_fmt(Errc::kUnsupported, "BITLK: partially encrypted volume", curr_state_,
                          "activation of partially decrypted BITLK device is not supported "
                          "(state %u/%u)",
                          curr_state_, next_state_);
  if (find_method(method_) == nullptr)
    return make_error_fmt(Errc::kUnsupported, "BITLK: encryption method", method_,
                          "0x%04x is not supported", method_);
  if (fvek_len_ == 0) return corrupt("BITLK: no FVEK entry in the metadata");
  return ok();
}

bool BitlkHeader::has_clear_key() const noexcept {
  return std::any_of(vmks_.begin(), vmks_.end(),
                     [](const Vmk& v) { return v.protection == kProtClearKey && v.clear_len; });
}

namespace {

// AES-CCM key datum (nonce|tag|data at `at`) decrypted with `key`; checks the datum's size.
Result<SecretBytes> decrypt_datum(std::span<const std::byte> meta, std::size_t at, std::size_t len,
                                  std::span<const std::byte> key) {
  const std::size_t n = len - kCcmNonce - kCcmTag;
  CRYPTMAP_TRY(out, SecretBytes::allocate(n));
  CRYPTMAP_TRY_VOID(crypto::aes_ccm_decrypt(key, meta.subspan(at, kCcmNonce),
                                            meta.subspan(at + kCcmNonce + kCcmTag, n),
                                            meta.subspan(at + kCcmNonce, kCcmTag), out.span()));
  if (n < kKeyDatumHeader || load_le16(out.data()) != n)
    return make_error(Errc::kCorrupt, "BITLK: wrong key size in a decrypted key entry");
  return out;
}

// The startup key inside a .BEK file for the VMK `guid`; kInvalid when it is not one.
Result<SecretBytes> startup_key(std::span<const std::byte> bek, const std::string& guid) {
  if (bek.size() < kMetaHeader + kEntryHeader + 24 || load_le32(bek.data()) != bek.size() ||
      load_le32(bek.data() + 4) != 1)
    return make_error(Errc::kInvalid, "not a BEK file");
  if (guid_text(bek.data() + 16) != guid) return make_error(Errc::kInvalid, "BEK for another VMK");
  const std::byte* e = bek.data() + kMetaHeader;
  const std::size_t esize = load_le16(e);
  if (load_le16(e + 2) != kTypeStartupKey || load_le16(e + 4) != kValueExternalKey ||
      esize > bek.size() - kMetaHeader || esize < kEntryHeader + 24)
    return make_error(Errc::kInvalid, "BEK: unexpected entry");
  for (std::size_t s = kEntryHeader + 24; s + kEntryHeader <= esize;) {
    const std::size_t n = load_le16(e + s);
    if (n < kEntryHeader || n > esize - s) break;
    if (load_le16(e + s + 4) == kValueKey && n > kEntryHeader + 4)
      return SecretBytes::copy_of(std::span(e + s + kEntryHeader + 4, n - kEntryHeader - 4));
    s += n;
  }
  return make_error(Errc::kInvalid, "BEK: no key entry");
}

}  // namespace

Result<SecretBytes> BitlkHeader::open_vmk(const Vmk& v,
                                          std::span<const std::byte> passphrase) const {
  if (v.ccm_len == 0) return make_error(Errc::kBadKey, "BITLK: VMK without an encrypted key");
  SecretBytes key;
  std::array<std::byte, 32> h{};
  switch (v.protection) {
    case kProtClearKey: {
      if (v.clear_len == 0) return make_error(Errc::kBadKey, "BITLK: clear key missing");
      CRYPTMAP_TRY(k, SecretBytes::copy_of(std::span(meta_).subspan(v.clear_at, v.clear_len)));
      key = std::move(k);
      break;
    }
    case kProtPassword: {
      auto u16 = utf8_to_utf16le(passphrase);  // binary input (a .BEK file) is no password
      if (!u16) return make_error(Errc::kBadKey, "BITLK: passphrase is not UTF-8 text");
      CRYPTMAP_TRY(stretched, SecretBytes::allocate(32));
      CRYPTMAP_TRY_VOID(crypto::hash_digest("sha256", {u16->span()}, h));
      CRYPTMAP_TRY_VOID(crypto::hash_digest("sha256", {std::span<const std::byte>(h)}, h));
      CRYPTMAP_TRY_VOID(
          crypto::bitlk_stretch(h, v.salt, crypto::kBitlkStretchIterations, stretched.span()));
      key = std::move(stretched);
      break;
    }
    case kProtRecovery: {
      auto rk = recovery_key(passphrase);
      if (!rk) return make_error(Errc::kBadKey, "BITLK: not a recovery password");
      CRYPTMAP_TRY(stretched, SecretBytes::allocate(32));
      CRYPTMAP_TRY_VOID(crypto::hash_digest("sha256", {rk->span()}, h));
      CRYPTMAP_TRY_VOID(
          crypto::bitlk_stretch(h, v.salt, crypto::kBitlkStretchIterations, stretched.span()));
      key = std::move(stretched);
      break;
    }
    case kProtStartupKey: {
      auto sk = startup_key(passphrase, v.guid);
      if (!sk) return make_error(Errc::kBadKey, "BITLK: not this VMK's startup key");
      key = std::move(*sk);
      break;
    }
    default:
      return make_error(Errc::kBadKey, "BITLK: VMK protection not supported");
  }
  secure_zero(h.data(), h.size());
  if (key.size() != 16 && key.size() != 24 && key.size() != 32)
    return make_error(Errc::kBadKey, "BITLK: VMK key size");
  auto datum = decrypt_datum(meta_, v.ccm_at, v.ccm_len, key.span());
  if (!datum) return datum.error();
  if (datum->size() < kKeyDatumHeader + 32)
    return make_error(Errc::kCorrupt, "BITLK: VMK key data too short");
  return SecretBytes::copy_of(datum->span().subspan(kKeyDatumHeader, 32));
}

Result<SecretBytes> BitlkHeader::unlock(std::span<const std::byte> passphrase) const {
  const MethodInfo* mi = find_method(method_);
  if (mi == nullptr)
    return make_error_fmt(Errc::kUnsupported, "BITLK: encryption method", method_,
                          "0x%04x is not supported", method_);
  if (fvek_len_ == 0) return corrupt("BITLK: no FVEK entry in the metadata");
  for (const Vmk& v : vmks_) {
    auto vmk = open_vmk(v, passphrase);
    if (!vmk) {
      if (vmk.error().code == Errc::kBadKey) continue;
      return vmk.error();
    }
    CRYPTMAP_TRY(fvek, decrypt_datum(meta_, fvek_at_, fvek_len_, vmk->span()));
    const auto data = fvek.span().subspan(kKeyDatumHeader);
    if (data.size() < mi->data_bytes)
      return make_error(Errc::kCorrupt, "BITLK: FVEK key data too short", data.size());
    CRYPTMAP_TRY(vk, SecretBytes::allocate(mi->key_bytes));
    if (method_ == 0x8000) {  // 128-bit Elephant: CBC key, 16 zero, Elephant key, 16 zero
      std::memcpy(vk.data(), data.data(), 16);
      std::memcpy(vk.data() + 16, data.data() + 32, 16);
    } else {
      std::memcpy(vk.data(), data.data(), mi->key_bytes);
    }
    return vk;
  }
  return make_error(Errc::kBadKey, "No key available with this passphrase.");
}

std::string BitlkHeader::dump(const std::string& device) const {
  std::string o;
  auto line = [&](const std::string& s) {
    o.append(s);
    o.push_back('\n');
  };
  line(std::string("Info for BITLK ") + (togo_ ? "To Go " : "") + "device " + device + ".");
  line(std::string("Version:      \t").append(std::to_string(version_)));
  line("GUID:         \t" + guid_);
  line(std::string("Sector size:  \t").append(std::to_string(layout_.sector_size)) + " [bytes]");
  line(std::string("Volume size:  \t").append(std::to_string(volume_size_)) + " [bytes]");
  line("Created:      \t" + filetime_text(created_));
  line("Description:  \t" + description_);
  const MethodInfo* mi = find_method(method_);
  if (mi != nullptr) {
    line("Cipher name:  \t" + layout_.cipher.cipher);
    std::string mode = layout_.cipher.chain_mode;
    mode.append("-").append(layout_.cipher.iv_mode);
    line("Cipher mode:  \t" + mode);
    line(std::string("Cipher key:   \t").append(std::to_string(mi->key_bytes * 8)) + " bits");
  }
  line("");
  line("Keyslots:");
  int n = 0;
  for (const Vmk& v : vmks_) {
    line(std::string(" ").append(std::to_string(n++)) + ": VMK");
    if (!v.name.empty()) line("\tName:       \t" + v.name);
    line("\tGUID:       \t" + v.guid);
    const char* prot = "VMK protected with unknown method";
    switch (v.protection) {
      case kProtClearKey:
        prot = "VMK protected with clear key";
        break;
      case kProtTpm:
        prot = "VMK protected with TPM";
        break;
      case kProtStartupKey:
        prot = "VMK protected with startup key";
        break;
      case kProtTpmPin:
        prot = "VMK protected with TPM and PIN";
        break;
      case kProtRecovery:
        prot = "VMK protected with recovery passphrase";
        break;
      case kProtSmartCard:
        prot = "VMK protected with smart card";
        break;
      case kProtPassword:
        prot = "VMK protected with passphrase";
        break;
      default:
        break;
    }
    line(std::string("\tProtection: \t") + prot);
    line("\tSalt:       \t" + to_hex(v.salt));
    if (v.ccm_len)
      line(std::string("\tKey data size:\t")
               .append(std::to_string(v.ccm_len - kCcmNonce - kCcmTag)) +
           " [bytes]");
  }
  if (fvek_len_) {
    line(std::string(" ").append(std::to_string(n)) + ": FVEK");
    line(std::string("\tKey data size:\t").append(std::to_string(fvek_len_ - kCcmNonce - kCcmTag)) +
         " [bytes]");
  }
  line("");
  line("Metadata segments:");
  int s = 0;
  for (std::uint64_t off : fve_offsets_) {
    line(std::string(" ").append(std::to_string(s++)) + ": FVE metadata area");
    line(std::string("\tOffset: \t").append(std::to_string(off)) + " [bytes]");
    line(std::string("\tSize:   \t").append(std::to_string(kFveArea)) + " [bytes]");
  }
  if (vh_size_ != 0) {
    line(std::string(" ").append(std::to_string(s)) + ": Volume header");
    line(std::string("\tOffset: \t").append(std::to_string(vh_offset_)) + " [bytes]");
    line(std::string("\tSize:   \t").append(std::to_string(vh_size_)) + " [bytes]");
    if (mi != nullptr) line("\tCipher: \t" + layout_.cipher.to_string());
  }
  return o;
}

}  // namespace cryptmap::volume

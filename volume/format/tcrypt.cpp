#include "volume/format/tcrypt.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_group.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "crypto/kdf.h"
#include "crypto/sector_cipher.h"
#include "crypto/tcrypt_cbc.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {
namespace {

// docs/tcrypt.md §1 and §2.
constexpr std::size_t kHeaderBytes = 512;
constexpr std::size_t kSaltBytes = 64;
constexpr std::size_t kDerivedKeyBytes = 192;
constexpr std::uint64_t kHiddenHeaderOffset = 65536;
constexpr std::uint64_t kHiddenHeaderOffsetOld = 1536;  // from the end (TrueCrypt < 6)
constexpr std::uint64_t kBackupHeaderFromEnd = 131072;
constexpr std::uint64_t kBackupHiddenFromEnd = 65536;
constexpr std::uint64_t kSystemHeaderOffset = 31744;
constexpr std::size_t kPoolBytes = 64;
constexpr std::size_t kPoolBytesLong = 128;
constexpr std::size_t kKeyfileMax = 1024 * 1024;

// zlib's CRC-32 (reflected 0xEDB88320).
constexpr std::array<std::uint32_t, 256> make_crc_table() {
  std::array<std::uint32_t, 256> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr auto kCrcTable = make_crc_table();

std::uint32_t crc_step(std::uint32_t crc, std::byte b) noexcept {
  return kCrcTable[(crc ^ static_cast<std::uint8_t>(b)) & 0xFF] ^ (crc >> 8);
}

std::uint32_t crc32(std::span<const std::byte> d) noexcept {
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::byte b : d) c = crc_step(c, b);
  return ~c;
}

std::uint64_t be(std::span<const std::byte> h, std::size_t off, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint8_t>(h[off + i]);
  return v;
}

// A cipher chain cryptsetup tries (docs/tcrypt.md §5), key order, with cryptsetup's mode name.
struct Chain {
  const char* name;
  const char* mode;  // "xts-plain64", "lrw-benbi"; TrueCrypt 1.0-4.3 CBC: "cbc-tcw" (single
                     // cipher), "cbci-tcrypt" (outer CBC), "cbc-tcrypt" (with blowfish_le)
  std::array<const char*, 3> ciphers;
  std::size_t count;
};

constexpr std::array<Chain, 36> kChains{{
    {"aes", "xts-plain64", {"aes"}, 1},
    {"serpent", "xts-plain64", {"serpent"}, 1},
    {"twofish", "xts-plain64", {"twofish"}, 1},
    {"camellia", "xts-plain64", {"camellia"}, 1},
    {"kuznyechik", "xts-plain64", {"kuznyechik"}, 1},
    {"twofish-aes", "xts-plain64", {"twofish", "aes"}, 2},
    {"serpent-twofish-aes", "xts-plain64", {"serpent", "twofish", "aes"}, 3},
    {"aes-serpent", "xts-plain64", {"aes", "serpent"}, 2},
    {"aes-twofish-serpent", "xts-plain64", {"aes", "twofish", "serpent"}, 3},
    {"serpent-twofish", "xts-plain64", {"serpent", "twofish"}, 2},
    {"kuznyechik-camellia", "xts-plain64", {"kuznyechik", "camellia"}, 2},
    {"twofish-kuznyechik", "xts-plain64", {"twofish", "kuznyechik"}, 2},
    {"serpent-camellia", "xts-plain64", {"serpent", "camellia"}, 2},
    {"aes-kuznyechik", "xts-plain64", {"aes", "kuznyechik"}, 2},
    {"camellia-serpent-kuznyechik", "xts-plain64", {"camellia", "serpent", "kuznyechik"}, 3},
    {"aes", "lrw-benbi", {"aes"}, 1},
    {"serpent", "lrw-benbi", {"serpent"}, 1},
    {"twofish", "lrw-benbi", {"twofish"}, 1},
    {"twofish-aes", "lrw-benbi", {"twofish", "aes"}, 2},
    {"serpent-twofish-aes", "lrw-benbi", {"serpent", "twofish", "aes"}, 3},
    {"aes-serpent", "lrw-benbi", {"aes", "serpent"}, 2},
    {"aes-twofish-serpent", "lrw-benbi", {"aes", "twofish", "serpent"}, 3},
    {"serpent-twofish", "lrw-benbi", {"serpent", "twofish"}, 2},
    {"aes", "cbc-tcw", {"aes"}, 1},
    {"serpent", "cbc-tcw", {"serpent"}, 1},
    {"twofish", "cbc-tcw", {"twofish"}, 1},
    {"twofish-aes", "cbci-tcrypt", {"twofish", "aes"}, 2},
    {"serpent-twofish-aes", "cbci-tcrypt", {"serpent", "twofish", "aes"}, 3},
    {"aes-serpent", "cbci-tcrypt", {"aes", "serpent"}, 2},
    {"aes-twofish-serpent", "cbci-tcrypt", {"aes", "twofish", "serpent"}, 3},
    {"serpent-twofish", "cbci-tcrypt", {"serpent", "twofish"}, 2},
    {"cast5", "cbc-tcw", {"cast5"}, 1},
    {"des3_ede", "cbc-tcw", {"des3_ede"}, 1},
    {"blowfish_le", "cbc-tcrypt", {"blowfish_le"}, 1},
    {"blowfish_le-aes", "cbc-tcrypt", {"blowfish_le", "aes"}, 2},
    {"serpent-blowfish_le-aes", "cbc-tcrypt", {"serpent", "blowfish_le", "aes"}, 3},
}};

constexpr std::size_t kCipherKeyBytes = 32;
constexpr std::size_t kLrwTweakBytes = 16;
constexpr std::size_t kCbcKeysAt = 32;  // CBC: the ciphers' keys follow the 32-byte IV region
constexpr std::size_t kTcwWhiteningBytes = 16;

bool is_xts(const Chain& c) { return std::strncmp(c.mode, "xts", 3) == 0; }
bool is_cbc(const Chain& c) { return std::strncmp(c.mode, "cbc", 3) == 0; }
const char* iv_mode(const Chain& c) { return is_xts(c) ? "plain64" : is_cbc(c) ? "tcw" : "benbi"; }
const char* chain_mode(const Chain& c) { return is_xts(c) ? "xts" : is_cbc(c) ? "cbc" : "lrw"; }

std::vector<std::string> cipher_names(const Chain& c) {
  return {c.ciphers.begin(), c.ciphers.begin() + static_cast<std::ptrdiff_t>(c.count)};
}

// CBC: the ciphers' keys (each of its TrueCrypt size) and the IV region's used length.
std::size_t cbc_keys_bytes(const Chain& c) {
  std::size_t n = 0;
  for (std::size_t j = 0; j < c.count; ++j) n += crypto::tcrypt_cbc_key_bytes(c.ciphers[j]);
  return n;
}
std::size_t cbc_region_bytes(const Chain& c) {
  bool wide = false;  // a 16-byte block cipher in the chain
  for (std::size_t j = 0; j < c.count; ++j)
    wide = wide || crypto::tcrypt_cbc_key_bytes(c.ciphers[j]) == kCipherKeyBytes;
  return (wide ? 16 : 8) + kTcwWhiteningBytes;
}

// The volume key's length (what cryptsetup's tcryptDump calls "MK bits" / 8).
std::size_t chain_key_bytes(const Chain& c) {
  if (is_cbc(c)) return cbc_keys_bytes(c) + cbc_region_bytes(c);
  return c.count * (is_xts(c) ? 2 * kCipherKeyBytes : kCipherKeyBytes + kLrwTweakBytes);
}

// Each cipher's dm-crypt key, in key order, from key material laid out as the header's key
// area is (docs/tcrypt.md §5): the derived key for the header, the key area for the volume.
// CBC: the ciphers' keys, then the IV region (IV seed and whitening key), as cryptsetup's.
Result<SecretBytes> chain_key(const Chain& c, std::span<const std::byte> k) {
  CRYPTMAP_TRY(out, SecretBytes::allocate(chain_key_bytes(c)));
  if (is_cbc(c)) {
    const std::size_t keys = cbc_keys_bytes(c);
    std::memcpy(out.data(), k.data() + kCbcKeysAt, keys);
    std::memcpy(out.data() + keys, k.data(), cbc_region_bytes(c));
    return out;
  }
  const std::size_t per = out.size() / c.count;
  for (std::size_t j = 0; j < c.count; ++j) {
    std::byte* o = out.data() + per * j;
    if (is_xts(c)) {
      std::memcpy(o, k.data() + kCipherKeyBytes * j, kCipherKeyBytes);
      std::memcpy(o + kCipherKeyBytes, k.data() + kCipherKeyBytes * (c.count + j), kCipherKeyBytes);
    } else {
      std::memcpy(o, k.data() + kCipherKeyBytes * (j + 1), kCipherKeyBytes);
      std::memcpy(o + kCipherKeyBytes, k.data(), kLrwTweakBytes);
    }
  }
  return out;
}

std::vector<crypto::SectorCipherConfig> chain_configs(const Chain& c, std::uint64_t iv_offset) {
  std::vector<crypto::SectorCipherConfig> v;
  for (std::size_t j = 0; j < c.count; ++j) {
    crypto::SectorCipherConfig cc;
    cc.spec.cipher = c.ciphers[j];
    cc.spec.chain_mode = chain_mode(c);
    cc.spec.iv_mode = iv_mode(c);
    cc.sector_size = 512;
    cc.iv_offset = iv_offset;
    v.push_back(cc);
  }
  return v;
}

// TrueCrypt 1.0-4.3 headers (docs/tcrypt.md §5): CBC with IV = key bytes [0, block size) and
// the whitening key bytes [8, 16), the ciphers' keys from byte 32 (crypto/tcrypt_cbc.h).
Result<void> decrypt_cbc_header(const Chain& c, std::span<const std::byte> k,
                                std::span<std::byte> buf) {
  return crypto::tcrypt_cbc_decrypt_header(
      cipher_names(c), k.subspan(kCbcKeysAt, cbc_keys_bytes(c)), k.first(kCbcKeysAt), buf);
}

struct Found {
  TcryptHeader header;
  const Chain* chain = nullptr;
  SecretBytes volume_key;
};

// Tries every chain on one derived key. The header's 448 encrypted bytes are one XTS data unit
// with tweak 0 (LRW: block index 1): decrypting them as the first 448 bytes of 512-byte sector 0
// (xts-plain64 / lrw-benbi) gives exactly that, since neither mode chains blocks.
Result<std::optional<Found>> try_chains(std::span<const std::byte> raw_header,
                                        std::span<const std::byte> derived,
                                        const TcryptOptions& opts) {
  for (const Chain& c : kChains) {
    if (!opts.cipher.empty() && std::string_view(c.name).find(opts.cipher) == std::string::npos)
      continue;
    CRYPTMAP_TRY(key, chain_key(c, derived));
    CRYPTMAP_TRY(buf, SecretBytes::allocate(kHeaderBytes));
    std::memcpy(buf.data(), raw_header.data() + kSaltBytes, kHeaderBytes - kSaltBytes);
    if (is_cbc(c)) {
      CRYPTMAP_TRY_VOID(
          decrypt_cbc_header(c, derived, buf.span().first(kHeaderBytes - kSaltBytes)));
    } else {
      auto cipher = crypto::make_cascade_cipher(chain_configs(c, 0), key.span());
      if (!cipher) continue;  // a cipher this build lacks: cryptsetup skips it too
      CRYPTMAP_TRY_VOID((*cipher)->decrypt({buf.span(), {}, SectorIndex{0}}));
    }
    CRYPTMAP_TRY(full, SecretBytes::allocate(kHeaderBytes));
    std::memcpy(full.data(), raw_header.data(), kSaltBytes);
    std::memcpy(full.data() + kSaltBytes, buf.data(), kHeaderBytes - kSaltBytes);
    auto hdr = tcrypt_parse_header(full.span(), opts.veracrypt);
    if (!hdr) {
      if (hdr.error().code == Errc::kBadKey) continue;
      return fail(hdr.error());
    }
    // The volume key: the same slicing, over the header's key area (bytes 256..511).
    CRYPTMAP_TRY(vk, chain_key(c, full.span().subspan(256, 256)));
    return std::optional<Found>(Found{*hdr, &c, std::move(vk)});
  }
  return std::optional<Found>();
}

Result<void> derive(const TcryptKdf& kdf, std::span<const std::byte> input,
                    std::span<const std::byte> salt, std::span<std::byte> out) {
  if (kdf.hash == "argon2id")
    return crypto::argon2(crypto::Argon2Type::kArgon2id, input, salt, kdf.iterations,
                          kdf.memory_kib, 1, out);
  return crypto::pbkdf2(kdf.hash, input, salt, kdf.iterations, out);
}

// Runs the trial over one header: KDFs in parallel (TBB), chains inside each; the first hit
// cancels the KDFs not yet started. Among simultaneous hits cryptsetup's order wins.
Result<std::optional<TcryptMatch>> trial(std::span<const std::byte> raw_header,
                                         const TcryptOptions& opts,
                                         std::span<const std::byte> input) {
  const std::vector<TcryptKdf> kdfs = tcrypt_kdfs(opts);
  if (kdfs.empty())
    return fail(make_error_fmt(Errc::kInvalid, "tcrypt: no key derivation matches --hash",
                               kNoObject, "'%s'", opts.hash.c_str()));
  std::vector<std::optional<Found>> hits(kdfs.size());
  std::vector<std::optional<Error>> errors(kdfs.size());
  std::atomic<bool> found{false};
  tbb::task_group_context ctx;
  const auto salt = raw_header.first(kSaltBytes);
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, kdfs.size(), 1),
      [&](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t i = r.begin(); i != r.end(); ++i) {
          if (found.load(std::memory_order_relaxed)) return;
          auto derived = SecretBytes::allocate(kDerivedKeyBytes);
          if (!derived) {
            errors[i] = derived.error();
            continue;
          }
          if (auto d = derive(kdfs[i], input, salt, derived->span()); !d) {
            // A KDF a build lacks is skipped, as cryptsetup does (its OpenSSL build: Streebog).
            if (d.error().code != Errc::kUnsupported) errors[i] = d.error();
            continue;
          }
          auto hit = try_chains(raw_header, derived->span(), opts);
          if (!hit) {
            errors[i] = hit.error();
          } else if (*hit) {
            hits[i] = std::move(*hit);
            found.store(true, std::memory_order_relaxed);
            ctx.cancel_group_execution();
          }
        }
      },
      tbb::simple_partitioner(), ctx);
  for (std::size_t i = 0; i < kdfs.size(); ++i) {
    if (!hits[i]) continue;
    TcryptMatch m;
    m.header = hits[i]->header;
    m.kdf = kdfs[i];
    m.chain = hits[i]->chain->name;
    m.mode = hits[i]->chain->mode;
    m.read_only = is_cbc(*hits[i]->chain);
    m.volume_key = std::move(hits[i]->volume_key);
    return std::optional<TcryptMatch>(std::move(m));
  }
  for (const auto& e : errors)
    if (e) return fail(*e);
  return std::optional<TcryptMatch>();
}

}  // namespace

Result<SecretBytes> tcrypt_pool(std::span<const std::byte> passphrase,
                                std::span<const std::span<const std::byte>> keyfiles,
                                bool veracrypt) {
  const std::size_t max = veracrypt ? kPoolBytesLong : kPoolBytes;
  if (passphrase.size() > max)
    return fail(make_error_fmt(Errc::kInvalid, "tcrypt: passphrase too long", passphrase.size(),
                               "maximum %zu characters", max));
  if (keyfiles.empty()) return SecretBytes::copy_of(passphrase);
  const std::size_t len = passphrase.size() > kPoolBytes ? kPoolBytesLong : kPoolBytes;
  CRYPTMAP_TRY(pool, SecretBytes::allocate(len));
  auto* p = reinterpret_cast<std::uint8_t*>(pool.data());
  for (const auto& kf : keyfiles) {
    std::uint32_t crc = 0xFFFFFFFFu;
    std::size_t j = 0;
    for (std::byte b : kf.first(std::min(kf.size(), kKeyfileMax))) {
      crc = crc_step(crc, b);
      for (int s = 24; s >= 0; s -= 8) {
        p[j] = static_cast<std::uint8_t>(p[j] + static_cast<std::uint8_t>(crc >> s));
        j = (j + 1) % len;
      }
    }
    secure_zero(&crc, sizeof crc);
  }
  for (std::size_t i = 0; i < passphrase.size(); ++i)
    p[i] = static_cast<std::uint8_t>(p[i] + static_cast<std::uint8_t>(passphrase[i]));
  return pool;
}

std::vector<TcryptKdf> tcrypt_kdfs(const TcryptOptions& opts) {
  // cryptsetup's table, in its order (docs/tcrypt.md §4): {hash, iterations, veracrypt,
  // PIM base, PIM multiplier}.
  struct Row {
    const char* hash;
    std::uint32_t iterations;
    bool veracrypt;
    std::uint32_t pim_base;
    std::uint32_t pim_mult;
  };
  static constexpr std::array<Row, 14> kPbkdf2{{
      {"ripemd160", 2000, false, 0, 0},
      {"ripemd160", 1000, false, 0, 0},
      {"sha512", 1000, false, 0, 0},
      {"whirlpool", 1000, false, 0, 0},
      {"sha1", 2000, false, 0, 0},
      {"sha512", 500000, true, 15000, 1000},
      {"whirlpool", 500000, true, 15000, 1000},
      {"sha256", 500000, true, 15000, 1000},
      {"sha256", 200000, true, 0, 2048},  // boot
      {"blake2s-256", 500000, true, 15000, 1000},
      {"blake2s-256", 200000, true, 0, 2048},  // boot
      {"ripemd160", 655331, true, 15000, 1000},
      {"ripemd160", 327661, true, 0, 2048},  // boot
      {"stribog512", 500000, true, 15000, 1000},
  }};
  std::vector<TcryptKdf> out;
  auto want = [&](std::string_view hash) {
    return opts.hash.empty() || hash.find(opts.hash) != std::string_view::npos;
  };
  for (std::size_t i = 0; i < kPbkdf2.size(); ++i) {
    const Row& r = kPbkdf2[i];
    if (r.veracrypt && !opts.veracrypt) continue;
    if (!r.veracrypt && opts.pim) continue;
    if (want(r.hash)) {
      std::uint32_t it = r.iterations;
      if (opts.pim && *opts.pim != 0) it = r.pim_base + r.pim_mult * *opts.pim;
      out.push_back({r.hash, it, 0, r.veracrypt});
    }
    // Argon2id comes right after the boot SHA-256 entry in cryptsetup's table.
    if (i == 8 && opts.veracrypt && want("argon2id")) {
      TcryptKdf a{"argon2id", 6, 425984, true};
      if (opts.pim && *opts.pim != 0) {
        const std::uint32_t pim = *opts.pim;
        if (pim <= 31) {
          a.iterations = (pim - 1) / 3 + 3;
          a.memory_kib = 1024 * (64 + 32 * (pim - 1));
        } else {
          a.iterations = pim - 18;
          a.memory_kib = 1024 * 1024;
        }
      }
      out.push_back(a);
    }
  }
  return out;
}

Result<TcryptHeader> tcrypt_parse_header(std::span<const std::byte> h, bool veracrypt) {
  if (h.size() != kHeaderBytes)
    return fail(make_error(Errc::kInvalid, "tcrypt header: size", h.size()));
  TcryptHeader t;
  if (std::memcmp(h.data() + 64, "TRUE", 4) == 0) {
    t.veracrypt = false;
  } else if (std::memcmp(h.data() + 64, "VERA", 4) == 0) {
    if (!veracrypt) return fail(make_error(Errc::kBadKey, "tcrypt header: VeraCrypt magic"));
    t.veracrypt = true;
  } else {
    return fail(make_error(Errc::kBadKey, "tcrypt header: magic"));
  }
  t.version = static_cast<std::uint16_t>(be(h, 68, 2));
  t.min_program_version = static_cast<std::uint16_t>(be(h, 70, 2));
  if (crc32(h.subspan(256, 256)) != be(h, 72, 4))
    return fail(make_error(Errc::kBadKey, "tcrypt header: key area CRC-32"));
  if (t.version > 3 && crc32(h.subspan(64, 188)) != be(h, 252, 4))
    return fail(make_error(Errc::kBadKey, "tcrypt header: header CRC-32"));
  t.hidden_volume_size = be(h, 92, 8);
  t.volume_size = be(h, 100, 8);
  t.mk_offset = be(h, 108, 8);
  if (t.mk_offset == 0) t.mk_offset = 512;  // old headers: the data follows the header
  t.mk_size = be(h, 116, 8);
  t.flags = static_cast<std::uint32_t>(be(h, 124, 4));
  t.sector_size = static_cast<std::uint32_t>(be(h, 128, 4));
  if (t.sector_size == 0) t.sector_size = 512;
  return t;
}

namespace {

// --tcrypt-whole-disk (docs/tcrypt.md §6.1): the whole image, the encrypted area decrypted in
// place (a crypt segment with the system mapping's IV offset), the rest (boot track, partition
// tables, unencrypted partitions) passed through as linear segments.
Result<VolumeLayout> whole_disk_layout(VolumeLayout l, const TcryptOptions& opts,
                                       std::uint64_t image_bytes) {
  if (!opts.system)
    return fail(make_error(Errc::kInvalid,
                           "tcrypt: --tcrypt-whole-disk serves a system-encrypted disk and needs "
                           "--tcrypt-system"));
  const std::uint64_t end = image_bytes / 512 * 512;
  const std::uint64_t start = l.data_offset_bytes;
  const std::uint64_t crypt_end = l.size_bytes == 0 ? end : start + l.size_bytes;
  if (start == 0 || crypt_end > end)
    return fail(make_error(Errc::kCorrupt, "tcrypt header: system encrypted area", start));
  auto add = [&](SegmentKind kind, std::uint64_t from, std::uint64_t to, std::uint64_t iv) {
    if (to > from) l.segments.push_back({kind, from, to - from, from, iv, {}});
  };
  add(SegmentKind::kLinear, 0, start, 0);
  add(SegmentKind::kCrypt, start, crypt_end, l.iv_offset);
  add(SegmentKind::kLinear, crypt_end, end, 0);
  l.data_offset_bytes = 0;
  l.iv_offset = 0;
  l.size_bytes = end;
  return l;
}

}  // namespace

Result<VolumeLayout> tcrypt_layout(const TcryptHeader& h, const std::string& chain,
                                   const std::string& mode, const TcryptOptions& opts,
                                   std::uint64_t image_bytes) {
  const Chain* c = nullptr;
  for (const Chain& k : kChains)
    if (chain == k.name && mode == k.mode) c = &k;
  if (c == nullptr)
    return fail(make_error_fmt(Errc::kUnsupported, "tcrypt: cipher chain", kNoObject, "%s-%s",
                               chain.c_str(), mode.c_str()));
  if (h.sector_size % 512 != 0 || h.sector_size > 4096)
    return fail(make_error(Errc::kUnsupported, "tcrypt header: sector size", h.sector_size));
  const bool hidden = opts.hidden;
  std::uint64_t data = h.mk_offset;  // bytes
  if (is_xts(*c)) {                  // docs/tcrypt.md §6
    if (h.version < 3) {
      data = 512;
    } else if (hidden && h.version <= 3) {
      if (image_bytes < h.hidden_volume_size + kHiddenHeaderOffsetOld)
        return fail(
            make_error(Errc::kCorrupt, "tcrypt header: hidden volume size", h.hidden_volume_size));
      data = image_bytes - h.hidden_volume_size - kHiddenHeaderOffsetOld;
    }
  } else if (hidden) {
    if (image_bytes < h.hidden_volume_size + kHiddenHeaderOffsetOld)
      return fail(
          make_error(Errc::kCorrupt, "tcrypt header: hidden volume size", h.hidden_volume_size));
    data = image_bytes - h.hidden_volume_size - kHiddenHeaderOffsetOld;
  }
  if (data % 512 != 0)
    return fail(
        make_error(Errc::kCorrupt, "tcrypt header: data offset is not whole sectors", data));
  VolumeLayout l;
  l.type = VolumeType::kTcrypt;
  l.cipher.cipher = c->ciphers[0];
  l.cipher.chain_mode = chain_mode(*c);
  l.cipher.iv_mode = iv_mode(*c);
  for (std::size_t j = 1; j < c->count; ++j) l.cascade.emplace_back(c->ciphers[j]);
  l.key_bytes = static_cast<std::uint32_t>(chain_key_bytes(*c));
  l.sector_size = 512;
  l.data_offset_bytes = data;
  // XTS: the absolute sector; LRW: relative to the data; CBC-TCW: the header's data offset.
  l.iv_offset = is_xts(*c) ? data / 512 : is_cbc(*c) ? h.mk_offset / 512 : 0;
  std::uint64_t size = hidden ? h.hidden_volume_size : h.volume_size;
  if (opts.system) {
    // A system volume image: the encrypted area from mk_offset, as cryptsetup maps a whole
    // device that is not a partition; truncated copies are served up to their end.
    if (data >= image_bytes)
      return fail(make_error_fmt(Errc::kNoSpace, "tcrypt: system volume data offset", data,
                                 "image is %llu bytes",
                                 static_cast<unsigned long long>(image_bytes)));
    if (size == 0 || size > image_bytes - data) size = 0;
  }
  if (size % 512 != 0)
    return fail(
        make_error(Errc::kCorrupt, "tcrypt header: volume size is not whole sectors", size));
  l.size_bytes = size;  // 0: to the end of the image
  if (opts.whole_disk) return whole_disk_layout(std::move(l), opts, image_bytes);
  if (!opts.key_only) {
    const std::uint64_t need = data + (size == 0 ? 512 : size);
    if (need < data || need > image_bytes)
      return fail(make_error_fmt(Errc::kNoSpace, "tcrypt: image too small for the volume", data,
                                 "needs %llu bytes, image has %llu",
                                 static_cast<unsigned long long>(need),
                                 static_cast<unsigned long long>(image_bytes)));
  }
  return l;
}

Result<TcryptMatch> tcrypt_unlock(const BackingStore& image, const TcryptOptions& opts,
                                  std::span<const std::byte> kdf_input) {
  const std::uint64_t size = image.size_bytes();
  std::vector<std::uint64_t> offsets;
  if (opts.system) {
    offsets.push_back(kSystemHeaderOffset);
  } else if (opts.hidden) {
    if (opts.backup) {
      if (size >= kBackupHiddenFromEnd) offsets.push_back(size - kBackupHiddenFromEnd);
    } else {
      offsets.push_back(kHiddenHeaderOffset);
      if (size >= kHiddenHeaderOffsetOld) offsets.push_back(size - kHiddenHeaderOffsetOld);
    }
  } else if (opts.backup) {
    if (size >= kBackupHeaderFromEnd) offsets.push_back(size - kBackupHeaderFromEnd);
  } else {
    offsets.push_back(0);
  }
  bool read_any = false;
  for (std::uint64_t off : offsets) {
    if (off + kHeaderBytes > size) continue;
    std::array<std::byte, kHeaderBytes> raw{};
    CRYPTMAP_TRY_VOID(image.read_at(ByteOffset{off}, raw));
    read_any = true;
    CRYPTMAP_TRY(m, trial(raw, opts, kdf_input));
    if (!m) continue;
    m->header.header_offset = off;
    CRYPTMAP_TRY(layout, tcrypt_layout(m->header, m->chain, m->mode, opts, size));
    m->layout = std::move(layout);
    return std::move(*m);
  }
  if (!read_any)
    return fail(make_error_fmt(Errc::kInvalid, "tcrypt: image too small for a header", size, "%s",
                               image.name().c_str()));
  return fail(make_error(Errc::kBadKey, "No device header detected with this passphrase."));
}

std::string tcrypt_dump(const TcryptMatch& m, const std::string& image, bool dump_volume_key) {
  std::string s;
  char line[160];
  auto add = [&](const char* fmt, auto... args) {
    std::snprintf(line, sizeof line, fmt, args...);
    s.append(line);
  };
  add("%s header information for %s\n", m.header.veracrypt ? "VERACRYPT" : "TCRYPT", image.c_str());
  if (!dump_volume_key) {
    add("Version:       \t%d\n", m.header.version);
    add("Driver req.:\t%x.%x\n", m.header.min_program_version >> 8,
        m.header.min_program_version & 0xFF);
    add("Sector size:\t%u\n", m.header.sector_size);
    add("MK offset:\t%llu\n", static_cast<unsigned long long>(m.header.mk_offset));
    add("PBKDF2 hash:\t%s\n", m.kdf.hash.c_str());
    add("Cipher chain:\t%s\n", m.chain.c_str());
    add("Cipher mode:\t%s\n", m.mode.c_str());
    add("MK bits:       \t%zu\n", m.volume_key.size() * 8);
    return s;
  }
  add("Cipher chain:  \t%s\n", m.chain.c_str());
  add("Cipher mode:   \t%s\n", m.mode.c_str());
  add("Payload offset:\t%d\n", static_cast<int>(m.layout.data_offset_bytes / 512));
  add("MK bits:       \t%d\n", static_cast<int>(m.volume_key.size() * 8));
  s.append("MK dump:\t");
  const auto* k = reinterpret_cast<const std::uint8_t*>(m.volume_key.data());
  for (std::size_t i = 0; i < m.volume_key.size(); ++i) {
    add("%02x ", k[i]);
    if (i % 16 == 15 && i + 1 < m.volume_key.size()) s.append("\n\t\t");
  }
  s.append("\n");
  secure_zero(line, sizeof line);
  return s;
}

}  // namespace cryptmap::volume

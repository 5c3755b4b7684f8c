#include "volume/format/internal/luks2_disk.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/bytes.h"
#include "base/secret.h"
#include "crypto/hash.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume::luks2 {
namespace {

constexpr std::array<std::uint8_t, 6> kMagic1 = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr std::array<std::uint8_t, 6> kMagic2 = {'S', 'K', 'U', 'L', 0xba, 0xbe};
constexpr std::size_t kOffVersion = 6, kOffHdrSize = 8, kOffSeqid = 16, kOffLabel = 24,
                      kOffCsumAlg = 72, kOffSalt = 104, kOffUuid = 168, kOffSubsystem = 208,
                      kOffHdrOffset = 256, kOffCsum = 448;
constexpr std::size_t kLabelLen = 48, kCsumAlgLen = 32, kUuidLen = 40, kSaltLen = 64, kCsumLen = 64;
// LUKS2_HDR2_OFFSETS: where a secondary header may sit when the primary is unreadable.
constexpr std::array<std::uint64_t, 9> kHdr2Offsets = {
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000};

bool magic_is(const std::byte* p, const std::array<std::uint8_t, 6>& m) {
  for (std::size_t i = 0; i < m.size(); ++i)
    if (std::to_integer<std::uint8_t>(p[i]) != m[i]) return false;
  return true;
}

struct Copy {
  CopyState state = CopyState::kFail;
  std::optional<Error> error;
  BinHeader bin;
  std::optional<Metadata> meta;
};

// hdr_read_disk + parse_and_validate_json for one copy.
Copy read_copy(const BackingStore& store, std::uint64_t offset, bool secondary) {
  Copy c;
  std::array<std::byte, kHdrBinLen> raw{};
  if (offset > store.size_bytes() || store.size_bytes() - offset < kHdrBinLen) {
    // Too short for a binary header: "truncated" only if what is there starts like one.
    const std::uint64_t avail = offset > store.size_bytes() ? 0 : store.size_bytes() - offset;
    std::array<std::byte, 6> m{};
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(avail, m.size()));
    const auto& want = secondary ? kMagic2 : kMagic1;
    bool prefix = n > 0 && store.read_at(ByteOffset{offset}, std::span(m).first(n)).has_value();
    for (std::size_t i = 0; prefix && i < n; ++i)
      prefix = std::to_integer<std::uint8_t>(m[i]) == want[i];
    if (!prefix) {
      c.error = make_error(Errc::kInvalid, "LUKS2 header: bad magic", offset);
      return c;
    }
    c.state = CopyState::kFailIo;
    c.error = make_error(Errc::kCorrupt, "LUKS2 header truncated", offset);
    return c;
  }
  if (auto r = store.read_at(ByteOffset{offset}, raw); !r) {
    c.state = CopyState::kFailIo;
    c.error = r.error();
    return c;
  }
  auto bin = parse_bin_header(raw, secondary, offset);
  if (!bin) {
    c.error = bin.error();
    return c;
  }
  c.bin = *bin;
  const std::uint64_t json_len = bin->hdr_size - kHdrBinLen;
  if (store.size_bytes() - offset - kHdrBinLen < json_len) {
    c.state = CopyState::kFailIo;
    c.error = make_error(Errc::kCorrupt, "LUKS2 JSON area truncated", offset);
    return c;
  }
  std::vector<std::byte> json;
  try {
    json.resize(json_len);
  } catch (const std::bad_alloc&) {
    c.error = make_error(Errc::kNoSpace, "LUKS2 JSON area: out of memory", offset);
    return c;
  }
  if (auto r = store.read_at(ByteOffset{offset + kHdrBinLen}, json); !r) {
    c.state = CopyState::kFailIo;
    c.error = r.error();
    return c;
  }
  std::array<std::byte, 64> csum{};
  std::array<std::byte, kHdrBinLen> zeroed = raw;
  std::memset(zeroed.data() + kOffCsum, 0, kCsumLen);
  auto cr = compute_checksum(bin->checksum_alg, zeroed, json, csum);
  if (!cr) {
    c.error = make_error_fmt(Errc::kCorrupt, "LUKS2 header checksum", offset,
                             "unusable checksum algorithm '%s'", bin->checksum_alg.c_str());
    return c;
  }
  auto dsize = crypto::hash_digest_size(bin->checksum_alg);
  if (!constant_time_equal(std::span(csum).first(*dsize), std::span(bin->csum).first(*dsize))) {
    c.error = make_error(Errc::kCorrupt, "LUKS2 header checksum mismatch", offset);
    return c;
  }
  auto meta = parse_luks2_json(json);
  if (!meta) {
    c.state = CopyState::kObsolete;
    c.error = meta.error();
    return c;
  }
  c.meta = std::move(*meta);
  c.state = CopyState::kOk;
  return c;
}

}  // namespace

Result<BinHeader> parse_bin_header(std::span<const std::byte, kHdrBinLen> raw, bool secondary,
                                   std::uint64_t offset) {
  const std::byte* p = raw.data();
  if (!magic_is(p, secondary ? kMagic2 : kMagic1))
    return fail(make_error(
        Errc::kInvalid,
        secondary ? "LUKS2 secondary header: bad magic" : "LUKS2 primary header: bad magic",
        offset));
  BinHeader h;
  h.secondary = secondary;
  h.version = load_be16(p + kOffVersion);
  if (h.version != 2)
    return fail(make_error_fmt(Errc::kUnsupported, "LUKS2 header version", offset, "version %u",
                               h.version));
  h.hdr_offset = load_be64(p + kOffHdrOffset);
  if (h.hdr_offset != offset)
    return fail(
        make_error(Errc::kCorrupt, "LUKS2 header: hdr_offset differs from its position", offset));
  h.hdr_size = load_be64(p + kOffHdrSize);
  if (h.hdr_size < 0x4000 || h.hdr_size > 0x400000)
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS2 header: hdr_size out of range", offset,
                               "%llu", static_cast<unsigned long long>(h.hdr_size)));
  if (secondary && offset != h.hdr_size)
    return fail(make_error(Errc::kCorrupt,
                           "LUKS2 secondary header: hdr_size differs from its offset", offset));
  h.seqid = load_be64(p + kOffSeqid);
  h.label = read_cstr_field(p + kOffLabel, kLabelLen);
  h.checksum_alg = read_cstr_field(p + kOffCsumAlg, kCsumAlgLen);
  std::memcpy(h.salt.data(), p + kOffSalt, kSaltLen);
  h.uuid = read_cstr_field(p + kOffUuid, kUuidLen);
  h.subsystem = read_cstr_field(p + kOffSubsystem, kLabelLen);
  std::memcpy(h.csum.data(), p + kOffCsum, kCsumLen);
  return h;
}

void serialize_bin_header(const BinHeader& h, std::span<std::byte, kHdrBinLen> out) {
  std::byte* p = out.data();
  std::memset(p, 0, kHdrBinLen);
  const auto& m = h.secondary ? kMagic2 : kMagic1;
  for (std::size_t i = 0; i < m.size(); ++i) p[i] = std::byte{m[i]};
  store_be16(p + kOffVersion, h.version);
  store_be64(p + kOffHdrSize, h.hdr_size);
  store_be64(p + kOffSeqid, h.seqid);
  write_cstr_field(p + kOffLabel, kLabelLen, h.label);
  write_cstr_field(p + kOffCsumAlg, kCsumAlgLen, h.checksum_alg);
  std::memcpy(p + kOffSalt, h.salt.data(), kSaltLen);
  write_cstr_field(p + kOffUuid, kUuidLen, h.uuid);
  write_cstr_field(p + kOffSubsystem, kLabelLen, h.subsystem);
  store_be64(p + kOffHdrOffset, h.hdr_offset);
  std::memcpy(p + kOffCsum, h.csum.data(), kCsumLen);
}

Result<void> compute_checksum(const std::string& alg, std::span<const std::byte, kHdrBinLen> bin,
                              std::span<const std::byte> json_area, std::span<std::byte, 64> out) {
  CRYPTMAP_TRY(size, crypto::hash_digest_size(alg));
  if (size > out.size())
    return fail(make_error_fmt(Errc::kUnsupported, "LUKS2 checksum algorithm", kNoObject,
                               "%s digest too long", alg.c_str()));
  std::fill(out.begin(), out.end(), std::byte{0});
  return crypto::hash_digest(alg, {std::span<const std::byte>(bin), json_area}, out.first(size));
}

Result<ReadResult> read_luks2_header(const BackingStore& store, const std::string& device_name) {
  Copy c1 = read_copy(store, 0, false);
  Copy c2;
  if (c1.state != CopyState::kFail && c1.state != CopyState::kFailIo) {
    c2 = read_copy(store, c1.bin.hdr_size, true);
  } else {
    // Primary unusable: scan every offset a secondary may sit at (LUKS2_HDR2_OFFSETS). Keep
    // the most telling failure: one whose magic matched beats "bad magic".
    c2.error = make_error(Errc::kInvalid, "LUKS2 secondary header: bad magic");
    for (std::uint64_t off : kHdr2Offsets) {
      if (off > store.size_bytes() || store.size_bytes() - off < kHdrBinLen) break;
      Copy c = read_copy(store, off, true);
      if (c.state == CopyState::kOk || c.state == CopyState::kObsolete) {
        c2 = std::move(c);
        break;
      }
      if (c.error && c.error->code != Errc::kInvalid && c2.error->code == Errc::kInvalid)
        c2 = std::move(c);
    }
  }
  if (c1.state == CopyState::kOk && c2.state == CopyState::kOk) {
    if (c1.bin.seqid > c2.bin.seqid)
      c2.state = CopyState::kObsolete;
    else if (c1.bin.seqid < c2.bin.seqid)
      c1.state = CopyState::kObsolete;
  }
  ReadResult out;
  out.primary = c1.state;
  out.secondary = c2.state;
  out.primary_error = c1.error;
  out.secondary_error = c2.error;
  Copy* use = nullptr;
  Copy* other = nullptr;
  if (c1.state == CopyState::kOk) {
    use = &c1;
    other = &c2;
  } else if (c2.state == CopyState::kOk) {
    use = &c2;
    other = &c1;
    out.using_primary = false;
  } else {
    // Neither copy usable: say "not LUKS" only when neither even had the magic.
    auto bad_magic = [](const Copy& c) { return c.error && c.error->code == Errc::kInvalid; };
    if (bad_magic(c1) && (bad_magic(c2) || !c2.error))
      return fail(make_error_fmt(Errc::kInvalid, "not a valid LUKS device", kNoObject,
                                 "Device %s is not a valid LUKS device.", device_name.c_str()));
    Error e = c1.error && !bad_magic(c1) ? *c1.error : (c2.error ? *c2.error : *c1.error);
    return fail(e);
  }
  out.bin = use->bin;
  out.other_salt = other->bin.salt;
  if (other->state == CopyState::kFail || other->state == CopyState::kFailIo) {
    // The other copy's salt is unknown; a rewrite will generate a fresh one.
    out.other_salt.fill(std::byte{0});
  }
  out.meta = std::move(*use->meta);
  // device_check_size: header copies and keyslot areas must fit in the header device.
  const std::uint64_t need = out.meta.hdr_and_areas_size();
  if (need > store.size_bytes())
    return fail(make_error_fmt(Errc::kCorrupt, "LUKS2 header device too small", store.size_bytes(),
                               "%s: LUKS2 requires at least %llu bytes (truncated?)",
                               device_name.c_str(), static_cast<unsigned long long>(need)));
  return out;
}

Result<std::uint64_t> write_luks2_header(BackingStore& store, const BinHeader& bin_in,
                                         std::span<const std::byte, 64> salt_primary,
                                         std::span<const std::byte, 64> salt_secondary,
                                         const std::string& json_text) {
  const std::uint64_t json_len = bin_in.hdr_size - kHdrBinLen;
  if (!valid_metadata_size(bin_in.hdr_size))
    return fail(make_error(Errc::kInvalid, "LUKS2 write: bad hdr_size", bin_in.hdr_size));
  CRYPTMAP_TRY(check, parse_luks2_json_text(json_text, json_len));
  (void)check;
  std::vector<std::byte> area(json_len, std::byte{0});
  std::memcpy(area.data(), json_text.data(), json_text.size());
  const std::uint64_t seqid = bin_in.seqid + 1;
  for (int copy = 0; copy < 2; ++copy) {
    BinHeader b = bin_in;
    b.secondary = copy == 1;
    b.hdr_offset = copy == 0 ? 0 : bin_in.hdr_size;
    b.seqid = seqid;
    b.checksum_alg = "sha256";
    std::memcpy(b.salt.data(), (copy == 0 ? salt_primary : salt_secondary).data(), 64);
    b.csum.fill(std::byte{0});
    std::array<std::byte, kHdrBinLen> raw{};
    serialize_bin_header(b, raw);
    CRYPTMAP_TRY_VOID(store.write_at(ByteOffset{b.hdr_offset}, raw));
    CRYPTMAP_TRY_VOID(store.write_at(ByteOffset{b.hdr_offset + kHdrBinLen}, area));
    CRYPTMAP_TRY_VOID(compute_checksum(b.checksum_alg, raw, area, b.csum));
    serialize_bin_header(b, raw);
    CRYPTMAP_TRY_VOID(store.write_at(ByteOffset{b.hdr_offset}, raw));
  }
  CRYPTMAP_TRY_VOID(store.sync());
  return seqid;
}

}  // namespace cryptmap::volume::luks2

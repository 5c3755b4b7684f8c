#include "volume/format/unlock.h"

#include "volume/format/bitlk.h"
#include "volume/format/fvault2.h"
#include "volume/format/internal/luks_impl.h"
#include "volume/format/luks.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

Unlocker::Unlocker(Unlocker&&) noexcept = default;
Unlocker& Unlocker::operator=(Unlocker&&) noexcept = default;
Unlocker::~Unlocker() = default;

Result<Unlocker> Unlocker::prepare(const BackingStore& header_store, const BackingStore& data_store,
                                   const UnlockOptions& opts) {
  Unlocker u;
  u.opts_ = opts;
  if (opts.type == VolumeType::kPlain) {
    CRYPTMAP_TRY(layout, plain_layout(opts.plain, data_store.size_bytes()));
    u.layout_ = std::move(layout);
    return u;
  }
  if (opts.type == VolumeType::kLoopaes) {
    // The key count (1, 64, 65) and so the cipher come with the key file; check the rest now.
    CRYPTMAP_TRY_VOID(loopaes_check_options(opts.loopaes));
    u.data_bytes_ = data_store.size_bytes();
    CRYPTMAP_TRY(layout, loopaes_layout(opts.loopaes, 1, u.data_bytes_));
    u.layout_ = std::move(layout);
    return u;
  }
  if (opts.type == VolumeType::kBitlk || (!opts.type && is_bitlk(header_store))) {
    CRYPTMAP_TRY(bitlk, BitlkHeader::load(header_store));
    if (!opts.key_only) CRYPTMAP_TRY_VOID(bitlk->check_activation());
    u.layout_ = bitlk->layout();
    u.bitlk_ = std::move(bitlk);
    return u;
  }
  if (opts.type == VolumeType::kFvault2 || (!opts.type && is_fvault2(header_store))) {
    CRYPTMAP_TRY(fv, Fvault2Header::load(header_store));
    u.layout_ = fv->layout();
    const std::uint64_t have = data_store.size_bytes();
    if (!opts.key_only && (u.layout_.data_offset_bytes > have ||
                           u.layout_.size_bytes > have - u.layout_.data_offset_bytes))
      return make_error_fmt(Errc::kNoSpace, "Device is too small for its FVAULT2 logical volume",
                            u.layout_.data_offset_bytes, "%llu bytes (%s)",
                            static_cast<unsigned long long>(have), data_store.name().c_str());
    u.fvault2_ = std::move(fv);
    return u;
  }
  CRYPTMAP_TRY(header, load_luks_header(header_store, opts.type));
  u.layout_ = header->layout();
  if (!u.layout_.integrity.empty() && opts.integrity_no_journal)
    u.layout_.integrity_no_journal = true;
  u.header_ = std::move(header);
  const std::uint64_t have = data_store.size_bytes();
  const std::uint64_t off = u.layout_.data_offset_bytes;
  // A data segment past the end of the image (a truncated image, or a detached header given the
  // wrong image) would otherwise open as an empty or short volume.
  if (!opts.key_only &&
      (off >= have || (u.layout_.size_bytes && u.layout_.size_bytes > have - off))) {
    return make_error_fmt(Errc::kNoSpace, "Device is too small for its LUKS data segment", off,
                          "%llu bytes, data starts at byte %llu%s (%s)",
                          static_cast<unsigned long long>(have),
                          static_cast<unsigned long long>(off),
                          u.layout_.size_bytes ? ", fixed size" : "", data_store.name().c_str());
  }
  return u;
}

Result<UnlockedVolume> Unlocker::unlock(std::span<const std::byte> passphrase) const {
  UnlockedVolume out;
  out.layout = layout_;
  if (bitlk_ != nullptr || fvault2_ != nullptr) {
    CRYPTMAP_TRY(vk, bitlk_ ? bitlk_->unlock(passphrase) : fvault2_->unlock(passphrase));
    out.layout.key_bytes = static_cast<std::uint32_t>(vk.size());
    out.volume_key = std::move(vk);
    return out;
  }
  if (opts_.type == VolumeType::kLoopaes) {
    CRYPTMAP_TRY(key, loopaes_parse_keyfile(passphrase, opts_.loopaes));
    CRYPTMAP_TRY(layout, loopaes_layout(opts_.loopaes, key.key_count, data_bytes_));
    out.layout = std::move(layout);
    out.volume_key = std::move(key.volume_key);
    return out;
  }
  if (header_ == nullptr) {
    CRYPTMAP_TRY(vk, plain_volume_key(opts_.plain, passphrase, opts_.plain_key_from_file));
    out.volume_key = std::move(vk);
    return out;
  }
  CRYPTMAP_TRY(key, header_->unlock(passphrase, opts_.keyslot));
  out.layout.key_bytes = static_cast<std::uint32_t>(key.volume_key.size());
  out.volume_key = std::move(key.volume_key);
  out.keyslot = key.keyslot;
  return out;
}

Result<UnlockedVolume> Unlocker::unlock_with_volume_key(
    std::span<const std::byte> volume_key) const {
  if (header_ == nullptr)
    return fail(make_error(Errc::kUnsupported, "a volume key file opens LUKS volumes only"));
  if (volume_key.size() != layout_.key_bytes)
    return fail(
        make_error(Errc::kBadKey, "Volume key does not match the volume.", volume_key.size()));
  if (const auto* h1 = dynamic_cast<const format::Luks1Header*>(header_.get())) {
    CRYPTMAP_TRY_VOID(h1->verify_volume_key(volume_key));
  } else {
    const auto& h2 = dynamic_cast<const format::Luks2Header&>(*header_);
    const luks2::Digest* d = h2.meta().digest_for_segment(0);
    if (d == nullptr) return fail(make_error(Errc::kCorrupt, "LUKS2 segment 0 has no digest"));
    CRYPTMAP_TRY_VOID(h2.verify_volume_key(volume_key, d->id));
  }
  UnlockedVolume out;
  out.layout = layout_;
  CRYPTMAP_TRY(vk, SecretBytes::copy_of(volume_key));
  out.volume_key = std::move(vk);
  return out;
}

Result<UnlockedVolume> unlock_volume(const BackingStore& header_store,
                                     const BackingStore& data_store, const UnlockOptions& opts,
                                     std::span<const std::byte> passphrase) {
  CRYPTMAP_TRY(u, Unlocker::prepare(header_store, data_store, opts));
  return u.unlock(passphrase);
}

}  // namespace cryptmap::volume

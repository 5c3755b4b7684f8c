#include "volume/format/unlock.h"

#include "volume/format/luks.h"
#include "volume/store/backing_store.h"

namespace cryptmap::volume {

Result<UnlockedVolume> unlock_volume(const BackingStore& header_store, const BackingStore& data_store,
                                     const UnlockOptions& opts, std::span<const std::byte> passphrase) {
  UnlockedVolume out;
  if (opts.type == VolumeType::kPlain) {
    CRYPTMAP_TRY(layout, plain_layout(opts.plain, data_store.size_bytes()));
    CRYPTMAP_TRY(vk, plain_volume_key(opts.plain, passphrase, opts.plain_key_from_file));
    out.layout = std::move(layout);
    out.volume_key = std::move(vk);
    return out;
  }
  CRYPTMAP_TRY(header, load_luks_header(header_store, opts.type));
  out.layout = header->layout();
  if (out.layout.data_offset_bytes >= data_store.size_bytes() ||
      (out.layout.size_bytes && out.layout.size_bytes > data_store.size_bytes() - out.layout.data_offset_bytes))
    return fail(make_error_fmt(Errc::kNoSpace, "Device is too small for the LUKS data segment",
                               data_store.size_bytes(), "%s: data starts at byte %llu",
                               data_store.name().c_str(),
                               static_cast<unsigned long long>(out.layout.data_offset_bytes)));
  CRYPTMAP_TRY(key, header->unlock(passphrase, opts.keyslot));
  out.layout.key_bytes = static_cast<std::uint32_t>(key.volume_key.size());
  out.volume_key = std::move(key.volume_key);
  out.keyslot = key.keyslot;
  return out;
}

}  // namespace cryptmap::volume

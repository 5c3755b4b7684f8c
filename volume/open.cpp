#include "volume/open.h"

#include <fcntl.h>
#include <linux/blkzoned.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "base/unique_fd.h"
#include "crypto/sector_cipher.h"
#include "volume/integrity/integrity_volume.h"
#include "volume/segment/segment_map.h"
#include "volume/store/backing_store.h"
#include "volume/store/nbd_backing_store.h"
#include "volume/write_guard.h"
#include "volume/zone/zoned_store.h"

namespace cryptmap::volume {
namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

}  // namespace

const char* store_kind_name(StoreKind k) noexcept {
  switch (k) {
    case StoreKind::kPosix:
      return "file or block device";
    case StoreKind::kEmulatedZoned:
      return "emulated zoned image";
    case StoreKind::kBlockZoned:
      return "zoned block device";
  }
  return "?";
}

StoreFacts read_store_facts(const std::string& image) {
  StoreFacts f;
  struct stat st {};
  if (::stat(image.c_str(), &st) != 0) return f;
  if (S_ISREG(st.st_mode)) {
    f.zone_sidecar = ::access(zone_sidecar_path(image).c_str(), F_OK) == 0;
    return f;
  }
  if (!S_ISBLK(st.st_mode)) return f;
  f.block_device = true;
  if (auto model = block_device_zoned_model(image)) f.zoned_model = *model;
  // Some kernels report the zone size but not the model (and the reverse); either is enough.
  UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  std::uint32_t sectors = 0;
  if (fd.valid() && ::ioctl(fd.get(), BLKGETZONESZ, &sectors) == 0) f.zone_sectors = sectors;
  return f;
}

StoreKind choose_store_kind(const StoreFacts& facts) noexcept {
  if (facts.block_device) {
    const std::string model = trimmed(facts.zoned_model);
    if (model == "host-managed" || model == "host-aware" || facts.zone_sectors > 0)
      return StoreKind::kBlockZoned;
    return StoreKind::kPosix;
  }
  return facts.zone_sidecar ? StoreKind::kEmulatedZoned : StoreKind::kPosix;
}

Result<std::unique_ptr<BackingStore>> probe_store(const std::string& image,
                                                  const ProbeOptions& options) {
  if (is_store_uri(image)) return open_image_store(image, {.read_only = options.read_only});
  switch (choose_store_kind(read_store_facts(image))) {
    case StoreKind::kEmulatedZoned: {
      ZonedStoreOptions zo;
      zo.read_only = options.read_only;
      CRYPTMAP_TRY(zs, open_emulated_zoned_store(image, zo));
      return std::unique_ptr<BackingStore>(std::move(zs));
    }
    case StoreKind::kBlockZoned: {
      ZonedStoreOptions zo;
      zo.read_only = options.read_only;
      CRYPTMAP_TRY(zs, open_block_zoned_store(image, zo));
      return std::unique_ptr<BackingStore>(std::move(zs));
    }
    case StoreKind::kPosix:
      break;
  }
  PosixStoreOptions so;
  so.read_only = options.read_only;
  so.direct_io =
      true;  // no page cache under a loop device: see volume/store/posix_backing_store.cpp
  return open_posix_store(image, so);
}

Result<UnlockedVolume> unlock(const ImagePaths& paths, const UnlockOptions& options,
                              std::span<const std::byte> passphrase) {
  const PosixStoreOptions ro = metadata_store_options(true);
  CRYPTMAP_TRY(data, open_image_store(paths.image, ro));
  if (paths.header.empty()) return unlock_volume(*data, *data, options, passphrase);
  CRYPTMAP_TRY(header, open_image_store(paths.header, ro));
  return unlock_volume(*header, *data, options, passphrase);
}

Result<std::unique_ptr<Volume>> open_unlocked(const std::string& image, const VolumeLayout& layout,
                                              std::span<const std::byte> volume_key,
                                              const VolumeOptions& options,
                                              std::shared_ptr<spdlog::logger> logger,
                                              StoreDurability* durability) {
  CRYPTMAP_TRY(store, probe_store(image, {.read_only = options.read_only}));
  if (durability != nullptr) *durability = store->durability();
  if (!layout.integrity.empty())  // LUKS2 --integrity: docs/integrity.md
    return open_integrity_volume(layout, volume_key, std::move(store), options, std::move(logger));
  if (!layout.segments.empty()) {  // several dm table lines: volume/segment/segment_map.h
    CRYPTMAP_TRY(seg_store, make_segmented_store(layout, std::move(store)));
    if (durability != nullptr) *durability = seg_store->durability();
    CRYPTMAP_TRY(seg_cipher, make_segmented_cipher(layout, volume_key));
    VolumeLayout flat = layout;
    flat.data_offset_bytes = 0;
    flat.iv_offset = 0;
    flat.size_bytes = seg_store->size_bytes();
    return open_volume(std::move(flat), std::move(seg_cipher), std::move(seg_store), options,
                       std::move(logger));
  }
  crypto::SectorCipherConfig cc;
  cc.spec = layout.cipher;
  cc.sector_size = layout.sector_size;
  cc.iv_large_sectors = layout.iv_large_sectors;
  cc.iv_offset = layout.iv_offset;
  std::vector<crypto::SectorCipherConfig> chain{cc};
  for (const auto& c : layout.cascade) {
    chain.push_back(cc);
    chain.back().spec.cipher = c;
  }
  CRYPTMAP_TRY(cipher, crypto::make_cascade_cipher(chain, volume_key));
  if (layout.guard_size_bytes == 0)
    return open_volume(layout, std::move(cipher), std::move(store), options, std::move(logger));
  CRYPTMAP_TRY(vol, open_volume(layout, std::move(cipher), std::move(store), options, logger));
  return guard_writes(std::move(vol), layout.guard_offset_bytes, layout.guard_size_bytes,
                      std::move(logger));
}

Result<std::unique_ptr<Volume>> open_with_passphrase(const ImagePaths& paths,
                                                     const UnlockOptions& unlock_options,
                                                     std::span<const std::byte> passphrase,
                                                     const VolumeOptions& options,
                                                     std::shared_ptr<spdlog::logger> logger) {
  CRYPTMAP_TRY(unlocked, unlock(paths, unlock_options, passphrase));
  VolumeOptions vo = options;
  vo.allow_discards = options.allow_discards || unlocked.layout.allow_discards;  // LUKS2 flag
  return open_unlocked(paths.image, unlocked.layout, unlocked.volume_key.span(), vo,
                       std::move(logger));
}

}  // namespace cryptmap::volume

// volume/open.h — the one way to assemble a volume from an image: probe the store, unlock,
// key the cipher, build the engine. The daemon, `luksFormat --wipe`, tests and examples use it.
//
// What you get: a Volume (volume/volume.h) serving the plaintext of IMAGE, over the store its
// kind calls for:
//   - a regular file with an IMAGE.zones sidecar -> the emulated zoned store (volume/zone/);
//   - a zoned block device (sysfs queue/zoned host-managed or host-aware, or a zone size from
//     BLKGETZONESZ) -> the block zoned store;
//   - any other block device or file -> the POSIX store (O_DIRECT where the file system has it);
//   - an NBD URI (nbd://host[:port]/export, nbd+unix:///export?socket=PATH) -> the NBD store
//     (volume/store/nbd_backing_store.h); rbd:POOL/IMAGE[@SNAP] -> the RBD store.
// A zoned volume orders its writes (Volume::orders_writes()); ask the volume, not the image.
//
// The steps fit the CLI/daemon split: the CLI unlocks (it has the passphrase and the terminal),
// the daemon opens the unlocked volume (it has the key, sent over the control socket):
//   unlock()        header + passphrase -> layout + volume key (volume/format/unlock.h)
//   open_unlocked() store + layout + key -> Volume
// open_with_passphrase() does both, for tools, tests and examples.
//
// Errors name the image and say what to do (the stores' and unlock_volume's errors). Stateless
// free functions; thread-safe. The volume key is borrowed: the cipher keeps its own copy.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "volume/format/unlock.h"
#include "volume/store/backing_store.h"
#include "volume/volume.h"

namespace spdlog {
class logger;
}

namespace cryptmap::volume {

class BackingStore;

// Where a volume lives: its data image, and its detached LUKS header (empty: in the image).
struct ImagePaths {
  std::string image;
  std::string header;
};

enum class StoreKind : std::uint8_t { kPosix, kEmulatedZoned, kBlockZoned };
const char* store_kind_name(StoreKind k) noexcept;  // "file or block device", ...

// What probe_store looks at, gathered by read_store_facts (a path that cannot be stat'ed has
// no facts: opening it as a POSIX store then reports the error).
struct StoreFacts {
  bool block_device = false;
  bool zone_sidecar = false;       // regular file: IMAGE.zones exists
  std::string zoned_model;         // block device: sysfs queue/zoned text ("none" when absent)
  std::uint32_t zone_sectors = 0;  // block device: BLKGETZONESZ (0: not zoned, or unknown)
};
StoreFacts read_store_facts(const std::string& image);
// The decision alone (pure), so it can be tested without zoned hardware.
StoreKind choose_store_kind(const StoreFacts& facts) noexcept;

struct ProbeOptions {
  bool read_only = false;
};
// Opens IMAGE as the store its kind calls for (above).
Result<std::unique_ptr<BackingStore>> probe_store(const std::string& image,
                                                  const ProbeOptions& options);

// Reads the header (paths.header, else paths.image), checks the image holds the data segment
// and unlocks a keyslot: unlock_volume over read-only stores. Errors: unlock_volume's, and the
// stores' (naming the path that failed to open).
Result<UnlockedVolume> unlock(const ImagePaths& paths, const UnlockOptions& options,
                              std::span<const std::byte> passphrase);

// Opens the store (probe_store; options.read_only), keys the layout's sector cipher with
// `volume_key` and builds the engine. `logger` may be null (spdlog's default logger). When
// `durability` is given it receives the store's durability semantics (`status --json`).
Result<std::unique_ptr<Volume>> open_unlocked(const std::string& image, const VolumeLayout& layout,
                                              std::span<const std::byte> volume_key,
                                              const VolumeOptions& options,
                                              std::shared_ptr<spdlog::logger> logger,
                                              StoreDurability* durability = nullptr);

// unlock() then open_unlocked(); the key is wiped before this returns.
Result<std::unique_ptr<Volume>> open_with_passphrase(const ImagePaths& paths,
                                                     const UnlockOptions& unlock_options,
                                                     std::span<const std::byte> passphrase,
                                                     const VolumeOptions& options,
                                                     std::shared_ptr<spdlog::logger> logger);

}  // namespace cryptmap::volume

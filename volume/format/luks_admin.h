// LUKS header management: the library behind luksFormat, luksAddKey, luksRemoveKey,
// luksKillSlot, luksChangeKey, luksDump, isLuks, luksUUID, luksHeaderBackup/Restore and repair.
//
// Every function works on the *header* store (the image itself, or the detached header file
// given with --header) and writes the way cryptsetup 2.6.1 does, so that cryptsetup reads and
// modifies what we write and the other way round (LUKS2 rewrites keep unknown tokens/fields;
// seqid grows by one per rewrite; both copies are rewritten). Stores are borrowed for the call.
// Thread-safety: reentrant; callers must not run two writers on one image at once (cryptsetup
// uses flock on the image for that; the CLI takes the same lock).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/secret.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

class BackingStore;

// How a keyslot's passphrase is stretched (--pbkdf, --hash, --iter-time, --pbkdf-memory,
// --pbkdf-parallel, --pbkdf-force-iterations). Defaults are cryptsetup 2.6.1's.
struct PbkdfOptions {
  std::string type;             // "" = default: LUKS1 "pbkdf2", LUKS2 "argon2id"
  std::string hash = "sha256";  // pbkdf2 hash and LUKS2 AF hash
  std::uint32_t iter_time_ms = 2000;
  std::optional<std::uint32_t> force_iterations;  // pbkdf2 iterations / argon2 time cost
  std::uint32_t memory_kib = 1048576;             // argon2 upper bound (1 GiB)
  std::uint32_t parallel = 4;  // argon2 threads upper bound (capped at online CPUs)
};

struct LuksFormatOptions {
  VolumeType type = VolumeType::kLuks2;
  std::string cipher = "aes-xts-plain64";
  std::uint32_t key_bits = 512;
  PbkdfOptions pbkdf;
  std::uint32_t sector_size = 0;                // LUKS2: 0 = auto (4096 if aligned, else 512)
  std::string label, subsystem;                 // LUKS2 only
  std::string uuid;                             // "" = random
  std::optional<std::uint64_t> offset_sectors;  // --offset: data offset in 512-byte sectors
  // --align-payload (512-byte sectors, cryptsetup's): the data offset is the header's end
  // rounded up to it; with a detached header it is the data offset. Without it the data offset
  // is rounded up to 1 MiB, or to the header store's optimal I/O size when that does not divide
  // 1 MiB (cryptsetup's device_topology_alignment; an RBD image's 4 MiB objects).
  std::optional<std::uint64_t> align_payload_sectors;
  bool detached_header = false;         // header store is not the data store
  std::uint64_t data_device_bytes = 0;  // size of the data image (sector-size auto)
  std::optional<int> keyslot;           // --key-slot for the first passphrase
  // LUKS2 --integrity as the JSON names it ("hmac(sha256)", "hmac(sha512)", "aead",
  // "poly1305"); empty: none. key_bits is then the cipher key alone; the volume key gets the
  // MAC key appended (docs/integrity.md §2). The dm-integrity superblock and journal are written
  // on the data device by format_integrity_area (volume/integrity/integrity_volume.h).
  std::string integrity;
  bool integrity_no_journal = false;  // persistent flag `no-journal` (dm-integrity mode D)
};

struct FormatResult {
  SecretBytes volume_key;
  int keyslot = 0;
  std::string uuid;
};

// luksFormat. The header store must be large enough for the header areas (a detached header
// file is sized by the caller: luks_header_bytes()). `volume_key` empty = generate randomly.
Result<FormatResult> luks_format(BackingStore& header, const LuksFormatOptions& opts,
                                 std::span<const std::byte> passphrase,
                                 std::span<const std::byte> volume_key = {});
// Bytes the header (metadata + keyslot areas) needs for `opts` (to size a detached header file).
Result<std::uint64_t> luks_header_bytes(const LuksFormatOptions& opts);

// luksAddKey: unlocks with `passphrase` (or uses `volume_key` when non-empty) and stores
// `new_passphrase` in `new_slot` (or the first free slot). Returns the slot used.
Result<int> luks_add_key(BackingStore& header, std::span<const std::byte> passphrase,
                         std::optional<int> unlock_slot, std::span<const std::byte> new_passphrase,
                         std::optional<int> new_slot, const PbkdfOptions& pbkdf,
                         std::span<const std::byte> volume_key = {});
// luksRemoveKey: destroys the keyslot that `passphrase` opens. Returns the slot removed.
Result<int> luks_remove_key(BackingStore& header, std::span<const std::byte> passphrase);
// luksKillSlot: destroys `slot` (wipes its area). kNotFound when the slot is not in use.
Result<void> luks_kill_slot(BackingStore& header, int slot);
// erase / luksErase: destroys every keyslot in ascending order, each as luksKillSlot does (its
// area wiped with random bytes, one header rewrite per keyslot, as cryptsetup's loop of
// crypt_keyslot_destroy). The volume can no longer be unlocked (unless a header backup exists).
// Returns how many keyslots were destroyed (0 on an already erased header).
Result<int> luks_erase(BackingStore& header);
// luksChangeKey: replaces the passphrase of the slot `old_passphrase` opens (LUKS2: same slot
// id; LUKS1: a free slot if any, else in place). Returns the slot now holding the new one.
Result<int> luks_change_key(BackingStore& header, std::span<const std::byte> old_passphrase,
                            std::optional<int> slot, std::span<const std::byte> new_passphrase,
                            const PbkdfOptions& pbkdf);

// True when `slot` holds a key (LUKS1 ENABLED, LUKS2 present in the JSON).
bool luks_keyslot_active(const BackingStore& header, int slot);

// luksDump text as cryptsetup prints it; `json` = LUKS2 --dump-json-metadata style.
Result<std::string> luks_dump(const BackingStore& header, bool json = false);
// isLuks: true for a valid LUKS1/LUKS2 header (of `type` when given).
bool is_luks(const BackingStore& header, std::optional<VolumeType> type = std::nullopt);
Result<std::string> luks_uuid(const BackingStore& header);
// luksUUID --uuid U (empty = new random UUID). Returns the UUID set.
Result<std::string> luks_set_uuid(BackingStore& header, const std::string& uuid);

// config (LUKS2 only): the label and subsystem in the binary header, and one keyslot's
// priority in the JSON, as cryptsetup 2.6.1's `config` writes them: the priority first (one
// rewrite), then the labels (another); when either label is given, both are rewritten and an
// absent one becomes empty (crypt_set_label). Errors: kInvalid "Device is not a valid LUKS2
// device." for LUKS1, a label of 48 bytes or more, a keyslot not in use.
// `flags` (refresh --persistent): replaces the JSON's config.flags with these persistent
// activation flags, in cryptsetup's order (allow-discards, same-cpu-crypt,
// submit-from-crypt-cpus, no-journal, no-read-workqueue, no-write-workqueue; an unknown name is
// kInvalid), as LUKS2_config_set_flags writes them: one rewrite, an empty array when none.
struct LuksConfig {
  std::optional<std::string> label, subsystem;    // --label, --subsystem
  std::optional<int> priority_slot;               // --key-slot with --priority
  int priority = 1;                               // 0 ignore, 1 normal, 2 prefer
  std::optional<std::vector<std::string>> flags;  // refresh --persistent
};
Result<void> luks_config(BackingStore& header, const LuksConfig& config);

// luksHeaderBackup: writes header + keyslot areas to a new file (O_EXCL, mode 0400).
Result<void> luks_header_backup(const BackingStore& header, const std::string& backup_file);
// luksHeaderRestore: validates the backup, refuses a header whose data offset or key size
// differ from the one on the device, then writes it.
Result<void> luks_header_restore(BackingStore& header, const std::string& backup_file);
// repair: LUKS2 rewrites a damaged/stale copy from the valid one (fresh salt); LUKS1 reports
// whether the header is sound. Returns a human-readable summary.
Result<std::string> luks_repair(BackingStore& header);

// A new random UUID in canonical form.
Result<std::string> random_uuid();

}  // namespace cryptmap::volume

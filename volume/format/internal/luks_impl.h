// The two LuksHeader implementations, visible to the rest of volume/format (dump, keyslot
// management) and to its tests. Immutable after load; const methods are thread-safe.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "volume/format/internal/luks1_disk.h"
#include "volume/format/internal/luks2_disk.h"
#include "volume/format/luks.h"

namespace cryptmap::volume::format {

// The activation flags a LUKS2 header stores (config.flags: allow-discards, no-read-workqueue,
// no-write-workqueue, same-cpu-crypt, submit-from-crypt-cpus) into `l`, as cryptsetup applies
// them at activation.
void set_persistent_flags(const luks2::Metadata& m, VolumeLayout& l);

class Luks1Header final : public LuksHeader {
 public:
  // Parses the phdr (all of cryptsetup's load checks) and copies the active keyslot areas.
  static Result<std::unique_ptr<Luks1Header>> load(const BackingStore& store);

  VolumeType type() const noexcept override { return VolumeType::kLuks1; }
  VolumeLayout layout() const override { return layout_; }
  Result<UnlockedKey> unlock(std::span<const std::byte> passphrase,
                             std::optional<int> keyslot) const override;

  const luks1::Phdr& phdr() const noexcept { return phdr_; }
  // kBadKey when `vk` does not match mkDigest.
  Result<void> verify_volume_key(std::span<const std::byte> vk) const;
  // Tries one slot: kNotFound (inactive), kBadKey (wrong passphrase), other errors as they come.
  Result<SecretBytes> open_slot(int slot, std::span<const std::byte> passphrase) const;

 private:
  luks1::Phdr phdr_;
  VolumeLayout layout_;
  std::string device_;
  std::array<std::vector<std::byte>, luks1::kNumKeys> areas_;  // encrypted AF material
};

class Luks2Header final : public LuksHeader {
 public:
  // Reads both copies; refuses unknown requirements / reencryption (kUnsupported) unless
  // `for_inspection` (luksDump, isLuks).
  static Result<std::unique_ptr<Luks2Header>> load(const BackingStore& store,
                                                   bool for_inspection = false);

  VolumeType type() const noexcept override { return VolumeType::kLuks2; }
  VolumeLayout layout() const override { return layout_; }
  Result<UnlockedKey> unlock(std::span<const std::byte> passphrase,
                             std::optional<int> keyslot) const override;

  const luks2::ReadResult& disk() const noexcept { return disk_; }
  const luks2::Metadata& meta() const noexcept { return disk_.meta; }
  // Verifies `vk` against digest `digest_id` (kBadKey on mismatch, kCorrupt/kUnsupported when the
  // digest itself is malformed).
  Result<void> verify_volume_key(std::span<const std::byte> vk, int digest_id) const;
  // Tries one keyslot against the digest of segment 0 (or digest `digest_id` when given):
  // kNotFound (missing/unusable for that digest), kBadKey (wrong passphrase), other errors as
  // they come.
  Result<SecretBytes> open_slot(int slot, std::span<const std::byte> passphrase,
                                std::optional<int> digest_id = std::nullopt) const;

 private:
  luks2::ReadResult disk_;
  VolumeLayout layout_;
  std::string device_;
  std::vector<std::pair<int, std::vector<std::byte>>> areas_;  // keyslot id -> encrypted area
  std::vector<std::pair<int, Error>> area_errors_;             // areas that could not be read
};

// First 4096 bytes (or fewer) of the store; the caller inspects the magic and version.
Result<std::vector<std::byte>> read_prefix(const BackingStore& store, std::size_t n);

}  // namespace cryptmap::volume::format

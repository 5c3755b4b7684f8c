// LUKS2 binary headers (`struct luks2_hdr_disk`, 4096 bytes, two copies) and the read/write of a
// whole metadata copy (binary header + JSON area). Layout in volume/FORMATS.md §2.2; all
// integers big-endian. Reading restates cryptsetup 2.6.1 LUKS2_disk_hdr_read(): both copies are
// checked (magic, version, hdr_offset, hdr_size, checksum, JSON) before anything is trusted; the
// valid copy with the higher seqid wins (tie: primary); a damaged primary makes the reader scan
// the known secondary offsets. Nothing here repairs the image (see write_luks2_header()).
// Thread-safety: functions are reentrant; the store is borrowed for the call.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "volume/format/internal/luks2_metadata.h"

namespace cryptmap::volume {
class BackingStore;
}

namespace cryptmap::volume::luks2 {

struct BinHeader {
  bool secondary = false;
  std::uint16_t version = 2;
  std::uint64_t hdr_size = 0;  // bytes, binary + JSON area
  std::uint64_t seqid = 0;
  std::string label;         // <= 47 chars
  std::string checksum_alg;  // "sha256"
  std::array<std::byte, 64> salt{};
  std::string uuid;       // <= 39 chars
  std::string subsystem;  // <= 47 chars
  std::uint64_t hdr_offset = 0;
  std::array<std::byte, 64> csum{};
};

// Parses and sanity-checks one binary header found at `offset` (hdr_disk_sanity_check_pre).
Result<BinHeader> parse_bin_header(std::span<const std::byte, kHdrBinLen> raw, bool secondary,
                                   std::uint64_t offset);
// Serializes with the checksum field as given (zero it to compute a checksum).
void serialize_bin_header(const BinHeader& h, std::span<std::byte, kHdrBinLen> out);
// Checksum over (binary header with csum zeroed) || JSON area.
Result<void> compute_checksum(const std::string& alg, std::span<const std::byte, kHdrBinLen> bin,
                              std::span<const std::byte> json_area, std::span<std::byte, 64> out);

enum class CopyState { kOk, kObsolete, kFail, kFailIo };

struct ReadResult {
  BinHeader bin;                           // the copy in use
  std::array<std::byte, 64> other_salt{};  // salt of the other copy (kept on rewrite)
  Metadata meta;
  CopyState primary = CopyState::kFail;
  CopyState secondary = CopyState::kFail;
  std::optional<Error> primary_error, secondary_error;
  bool using_primary = true;
};

// Reads both copies from `store`. `device_name` is for messages.
// Errors: kInvalid when neither copy looks like LUKS2, kCorrupt with the most useful reason when
// copies exist but none validates, kCorrupt when the image is shorter than the header areas.
Result<ReadResult> read_luks2_header(const BackingStore& store, const std::string& device_name);

// Writes `json_text` as the new metadata: seqid = bin.seqid + 1, primary then secondary, each
// written binary (csum zero) -> JSON area -> binary with checksum, as cryptsetup does. `bin`
// provides uuid/label/subsystem/hdr_size; salts are `salt_primary`/`salt_secondary`.
// Validates the JSON first; refuses text that does not fit. Returns the new seqid.
Result<std::uint64_t> write_luks2_header(BackingStore& store, const BinHeader& bin,
                                         std::span<const std::byte, 64> salt_primary,
                                         std::span<const std::byte, 64> salt_secondary,
                                         const std::string& json_text);

}  // namespace cryptmap::volume::luks2

// VolumeLayout — everything needed to map a volume's plaintext onto its image, as a dm-crypt
// table line would say it. Produced by the format code (LUKS1/LUKS2/plain), consumed by the
// engine; immutable after open (dm-crypt: "read only after initialization"). Value type.
//
// Most volumes are one crypt segment (LUKS, plain): the fields below say where it is. Formats
// whose dm table has several lines (BitLocker: zero ranges over its metadata, relocated boot
// sectors; TrueCrypt system volumes: crypt and linear ranges) list them in `segments`
// (volume/segment/segment_map.h serves them); then data_offset_bytes and iv_offset are 0 and
// size_bytes is the sum of the segments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "crypto/cipher_spec.h"

namespace cryptmap::volume {

enum class VolumeType : std::uint8_t {
  kLuks1,
  kLuks2,
  kPlain,
  kBitlk,
  kFvault2,
  kTcrypt,
  kLoopaes,
};
// "LUKS1", "LUKS2", "PLAIN", "BITLK", "FVAULT2", "TCRYPT", "LOOPAES" (cryptsetup's names)
const char* volume_type_name(VolumeType t) noexcept;

// One line of a dm table, in volume order. Offsets and lengths in bytes, multiples of the
// layout's sector_size.
enum class SegmentKind : std::uint8_t {
  kCrypt,   // dm-crypt: ciphertext at image_offset_bytes, IVs from iv_offset
  kZero,    // dm-zero: reads zeros, writes and discards are dropped
  kLinear,  // dm-linear: plaintext at image_offset_bytes
};
const char* segment_kind_name(SegmentKind k) noexcept;  // "crypt", "zero", "linear"

// A crypt segment's own cipher, when the segments differ (a LUKS2 image in reencryption: old
// key and cipher on one side of the boundary, new on the other). `encryption` empty: the
// layout's cipher; else a cipher spec ("aes-xts-plain64"). sector_size 0: the layout's; else
// this segment's encryption sector size, which must divide the layout's sector_size (then the
// largest of all). key_bytes 0: the whole volume key; else bytes [key_offset, key_offset +
// key_bytes) of it.
struct SegmentCipher {
  std::string encryption;
  std::uint32_t sector_size = 0;
  std::uint32_t key_offset = 0;
  std::uint32_t key_bytes = 0;
  friend bool operator==(const SegmentCipher&, const SegmentCipher&) = default;
};

struct Segment {
  SegmentKind kind = SegmentKind::kCrypt;
  std::uint64_t offset_bytes = 0;  // start in the volume
  std::uint64_t length_bytes = 0;
  std::uint64_t image_offset_bytes = 0;  // crypt, linear: where the segment starts in the image
  // crypt: dm <iv_offset> of the segment's first sector, 512-byte units (as a dm-crypt table
  // line for this segment alone would say it).
  std::uint64_t iv_offset = 0;
  SegmentCipher cipher;  // crypt: {} = the layout's cipher, sector size and whole key
  friend bool operator==(const Segment&, const Segment&) = default;
};

struct VolumeLayout {
  VolumeType type = VolumeType::kLuks2;
  crypto::CipherSpec cipher;
  std::uint32_t key_bytes = 0;
  std::uint32_t sector_size = 512;  // encryption unit
  bool iv_large_sectors = false;
  std::uint64_t iv_offset = 0;          // dm <iv_offset>, 512-byte sectors
  std::uint64_t data_offset_bytes = 0;  // first ciphertext byte in the data image
  // Payload size in bytes; 0 means "dynamic": the image size minus data_offset_bytes, rounded
  // down to sector_size (LUKS2 "size": "dynamic", LUKS1, plain without --size).
  std::uint64_t size_bytes = 0;
  std::string uuid;
  std::string label;
  bool allow_discards = false;  // persistent flag / --allow-discards
  // LUKS2 persistent flags no-read-workqueue / no-write-workqueue (refresh --persistent writes
  // them): open applies them as --perf-no_read_workqueue / --perf-no_write_workqueue.
  bool no_read_workqueue = false;
  bool no_write_workqueue = false;
  // LUKS2 persistent flags same-cpu-crypt / submit-from-crypt-cpus: open and refresh turn them
  // into the request's open flags (status shows them); the engine does not act on them
  // (docs/formats.md §3.6). Not in the control protocol's layout: the open flags carry them.
  bool same_cpu_crypt = false;
  bool submit_from_crypt_cpus = false;
  // Empty: one crypt segment described by the fields above. Else the whole volume, in order,
  // without gaps, from 0 to size_bytes.
  std::vector<Segment> segments;
  // A cipher cascade (TCRYPT, docs/tcrypt.md §5): the block ciphers after cipher.cipher, in key
  // order, each with cipher's chain and IV mode; key_bytes covers all of them in equal shares.
  // Empty for a single cipher.
  std::vector<std::string> cascade;
  // Writes into [guard_offset_bytes, + guard_size_bytes) of the volume are refused (TCRYPT
  // hidden-volume protection, volume/write_guard.h); size 0: no guard.
  std::uint64_t guard_offset_bytes = 0;
  std::uint64_t guard_size_bytes = 0;
  // LUKS2 authenticated encryption (docs/integrity.md): the segment's `encryption` and
  // `integrity.type` as written ("aes-gcm-random", "aead"); both empty when not authenticated.
  // Then `cipher` is only informative (AEAD modes have no CipherSpec) and size_bytes 0 means
  // the dm-integrity superblock's provided_data_sectors.
  std::string auth_encryption;
  std::string integrity;
  // dm-integrity direct mode D: the persistent flag `no-journal` or open --integrity-no-journal.
  bool integrity_no_journal = false;
};

// Where the active volume starts on its image, in 512-byte sectors, as cryptsetup's `status`
// prints it ("offset:", and "skipped:" when the IV offset is not 0): of a volume of several dm
// table lines, the crypt or linear line with the smallest image offset and that line's IV offset
// (0 for linear); a TCRYPT volume, and one of a single line, its data_offset_bytes and iv_offset.
// docs/formats.md §3.8 gives cryptsetup's rule and its source.
struct ActiveOffsets {
  std::uint64_t offset_sectors = 0;
  std::uint64_t iv_offset_sectors = 0;
};
ActiveOffsets active_offsets(const VolumeLayout& l) noexcept;

}  // namespace cryptmap::volume

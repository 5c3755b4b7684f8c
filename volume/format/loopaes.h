// loop-AES volumes as `cryptsetup open --type loopaes IMAGE NAME --key-file FILE` maps them
// (cryptsetup 2.6.1 lib/loopaes/loopaes.c; docs/loopaes.md): no header, the keys come from a
// text key file of 1 (single-key), 64 (multi-key-v2) or 65 (multi-key-v3) lines, the mapping
// from --offset/--skip. Nothing on the image says it is loop-AES, so there is no detection and
// no key check: a wrong key file opens and reads garbage, as with cryptsetup.
// Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"
#include "base/secret.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

struct LoopaesOptions {
  std::string cipher = "aes";        // --cipher: the block cipher alone (aes, twofish, serpent)
  std::uint32_t key_bits = 256;      // --key-size: bits of each key, 128, 192 or 256 (Debian's
                                     // cryptsetup 2.6.1 default: "loop-AES: aes, Key 256 bits")
  std::string hash;                  // --hash: empty = sha256/sha384/sha512 by key size
  std::uint64_t offset_sectors = 0;  // --offset: ciphertext at offset*512
  std::optional<std::uint64_t> skip_sectors;  // --skip: IV offset; nullopt = the offset
};

// The key lines' hash: opts.hash, else the one cryptsetup picks for the key size.
std::string loopaes_hash(const LoopaesOptions& opts);

// Checks the options without a key file. Errors: kInvalid naming the option (key size not
// 128/192/256, a full cipher spec in --cipher), kUnsupported (unknown hash or cipher, a hash
// shorter than the key).
Result<void> loopaes_check_options(const LoopaesOptions& opts);

struct LoopaesKey {
  SecretBytes volume_key;       // key_count keys of key_bits/8 bytes, in file order
  std::uint32_t key_count = 0;  // 1, 64 or 65
};

// Parses a key file and derives the keys exactly as cryptsetup: lines end at '\n', '\r' or NUL
// (blank lines between keys are skipped), every key is terminated, all have the same length;
// each line is hashed with loopaes_hash(), cut to the key size, its first byte XORed with
// 0x55 (64 keys) or 0xF4 (65 keys). Errors: kInvalid "Incompatible loop-AES keyfile detected"
// with the reason in the detail (empty, unterminated or empty key, unequal lengths, count),
// kInvalid "Detected not yet supported GPG encrypted keyfile", the options' errors.
Result<LoopaesKey> loopaes_parse_keyfile(std::span<const std::byte> keyfile,
                                         const LoopaesOptions& opts);

// The mapping: `<cipher>-cbc-plain64` for one key, `<cipher>:64-cbc-lmk` for 64/65 keys,
// 512-byte sectors, data at offset*512, IV sectors from skip (default offset), to the end of
// the image. Errors: kInvalid for a key count other than 1/64/65, kNoSpace when the offset is
// at or past the end of the image (`image_bytes`).
Result<VolumeLayout> loopaes_layout(const LoopaesOptions& opts, std::uint32_t key_count,
                                    std::uint64_t image_bytes);

}  // namespace cryptmap::volume

// cryptsetup plain mode (`cryptsetup open --type plain`): no header, the volume key comes from
// hashing the passphrase (lib/crypt_plain.c) and the mapping from the command line
// (--offset/--skip/--size/--sector-size/--iv-large-sectors). See volume/FORMATS.md §3.
// Stateless functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/secret.h"
#include "volume/volume_layout.h"

namespace cryptmap::volume {

struct PlainOptions {
  // cryptsetup 2.6.1 defaults (2.7 changed them: always pass them explicitly for interop).
  std::string cipher = "aes-cbc-essiv:sha256";  // --cipher
  std::uint32_t key_bits = 256;                 // --key-size
  std::string hash = "ripemd160";               // --hash, "H" or "H:len" or "plain"
  std::uint64_t offset_sectors = 0;             // --offset: ciphertext starts at offset*512
  std::uint64_t skip_sectors = 0;               // --skip: IV offset (dm <iv_offset>)
  std::uint64_t size_sectors = 0;               // --size: 0 = to the end of the image
  std::uint32_t sector_size = 512;              // --sector-size
  bool iv_large_sectors = false;                // --iv-large-sectors
  bool allow_discards = false;                  // --allow-discards
};

// Plain-mode passphrase hashing (crypt_plain_hash): `hash_spec` is "H" (key = H(p) || H("A"p) ||
// H("AA"p) ... truncated), "H:len" (len hashed bytes, rest zero), "plain" / "plain:len" (copy).
Result<SecretBytes> plain_hash(std::string_view hash_spec, std::span<const std::byte> passphrase,
                               std::size_t key_bytes);

// The volume key exactly as `cryptsetup open --type plain` derives it: a --key-file that is not
// stdin (`from_key_file`) is used raw (first key_bytes bytes, zero-filled if shorter; hash
// ignored); otherwise hashed with opts.hash ("plain" copies).
Result<SecretBytes> plain_volume_key(const PlainOptions& opts,
                                     std::span<const std::byte> passphrase, bool from_key_file);

// The mapping. `image_bytes` is the size of the data image. Errors: kInvalid naming the option.
Result<VolumeLayout> plain_layout(const PlainOptions& opts, std::uint64_t image_bytes);

}  // namespace cryptmap::volume

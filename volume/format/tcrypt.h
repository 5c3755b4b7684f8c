// TrueCrypt / VeraCrypt volumes (cryptsetup `--type tcrypt`, `tcryptDump`): the header is
// indistinguishable from random, so it is found by trial decryption: every key derivation
// cryptsetup tries × every cipher chain, in parallel over the cores, stopping at the first hit.
// Formats and rules: docs/tcrypt.md (header §2, password pool §3, KDFs §4, chains §5, mapping §6).
//
//   tcrypt_pool()    passphrase + keyfiles -> the KDF input (VeraCrypt/TrueCrypt keyfile pool)
//   tcrypt_unlock()  image + options + KDF input -> header, chain, volume key, VolumeLayout
//   tcrypt_dump()    cryptsetup's `tcryptDump` text for a match
//
// Stateless functions; thread-safe. Stores are borrowed for the call only.
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

struct TcryptOptions {
  bool veracrypt = true;             // --veracrypt (default on); false = --disable-veracrypt
  std::optional<std::uint32_t> pim;  // --veracrypt-pim: only VeraCrypt KDFs, at this PIM
  bool hidden = false;               // --tcrypt-hidden
  bool backup = false;               // --tcrypt-backup
  bool system = false;               // --tcrypt-system
  bool whole_disk = false;           // --tcrypt-whole-disk (with system): the whole image
  std::string hash;                  // --hash: only KDFs whose hash name contains this
  std::string cipher;                // --cipher: only chains whose name contains this
  bool key_only = false;             // --test-passphrase / dump: do not check the image size
};

// The decrypted header's fields (docs/tcrypt.md §2; big-endian on disk).
struct TcryptHeader {
  bool veracrypt = false;  // magic "VERA" (else "TRUE")
  std::uint16_t version = 0;
  std::uint16_t min_program_version = 0;
  std::uint64_t hidden_volume_size = 0;
  std::uint64_t volume_size = 0;
  std::uint64_t mk_offset = 0;  // data offset in bytes
  std::uint64_t mk_size = 0;
  std::uint32_t flags = 0;
  std::uint32_t sector_size = 512;
  std::uint64_t header_offset = 0;  // where in the image this header was found
};

// One key derivation cryptsetup tries (docs/tcrypt.md §4).
struct TcryptKdf {
  std::string hash;              // "sha512", "ripemd160", ..., or "argon2id"
  std::uint32_t iterations = 0;  // PBKDF2 iterations, Argon2 time cost
  std::uint32_t memory_kib = 0;  // Argon2 only
  bool veracrypt = false;
};

// What the trial found.
struct TcryptMatch {
  TcryptHeader header;
  TcryptKdf kdf;
  std::string chain;       // cryptsetup's name, key order: "serpent-twofish-aes"
  std::string mode;        // "xts-plain64", "lrw-benbi", "cbc-tcw", "cbci-tcrypt", "cbc-tcrypt"
  bool read_only = false;  // legacy TrueCrypt CBC: served read-only (docs/tcrypt.md §6)
  SecretBytes volume_key;  // per cipher in key order: its dm-crypt key (XTS: primary ‖ tweak)
  VolumeLayout layout;
};

// The KDF input: without keyfiles the passphrase itself; with keyfiles the 64-byte pool (128
// bytes for a VeraCrypt passphrase longer than 64) with each keyfile's CRC-32 stream added and
// then the passphrase. `keyfiles` are each file's contents (only the first 1 MiB counts).
// Errors: kInvalid when the passphrase is longer than 64 bytes (TrueCrypt) / 128 (VeraCrypt).
Result<SecretBytes> tcrypt_pool(std::span<const std::byte> passphrase,
                                std::span<const std::span<const std::byte>> keyfiles,
                                bool veracrypt);

// The KDFs cryptsetup would try for `opts`, in its order.
std::vector<TcryptKdf> tcrypt_kdfs(const TcryptOptions& opts);

// Checks and parses a decrypted 512-byte header (salt included). Errors: kBadKey when the magic
// or a CRC does not match (wrong key), kUnsupported for "VERA" without VeraCrypt modes.
Result<TcryptHeader> tcrypt_parse_header(std::span<const std::byte> decrypted, bool veracrypt);

// The mapping of a found header (docs/tcrypt.md §6). `image_bytes` is the image's size.
// Errors: kInvalid / kCorrupt naming the field, kUnsupported for system volumes.
Result<VolumeLayout> tcrypt_layout(const TcryptHeader& header, const std::string& chain,
                                   const std::string& mode, const TcryptOptions& opts,
                                   std::uint64_t image_bytes);

// Reads the header the options select and runs the trial. Errors: kBadKey ("No device header
// detected with this passphrase.") when nothing matches, kNoSpace when the image is smaller than
// the volume (unless opts.key_only), kIo from the store, kInvalid for bad options.
Result<TcryptMatch> tcrypt_unlock(const BackingStore& image, const TcryptOptions& opts,
                                  std::span<const std::byte> kdf_input);

// cryptsetup's `tcryptDump` output for `image` (with --dump-volume-key: its second form).
std::string tcrypt_dump(const TcryptMatch& m, const std::string& image, bool dump_volume_key);

}  // namespace cryptmap::volume

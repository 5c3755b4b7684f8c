// Fuzz entry points for the header parsers. Each takes arbitrary bytes and must return without
// crashing, hanging or allocating hugely, whatever the input. Used by the libFuzzer binaries
// (-DCRYPTMAP_FUZZ=ON with clang) and by fuzz_replay_test (always built).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace cryptmap::fuzz {

// LUKS1 phdr parse + load as an image (header copied from the input, keyslot areas included).
int luks1_header(const std::uint8_t* data, std::size_t size);
// A whole LUKS2 header image: both binary headers, checksums, JSON, load + luksDump text/JSON.
int luks2_image(const std::uint8_t* data, std::size_t size);
// A LUKS2 JSON area alone (text + NUL padding) through the cryptsetup validation.
int luks2_json(const std::uint8_t* data, std::size_t size);
// LUKS2 token import (docs/formats.md §2.7): byte 0 steers (bit 0: --token-id = bits 1-5,
// bit 6: --token-replace, bit 7: --key-slot 0), the rest is the token JSON, imported into a
// fresh copy of a valid LUKS2 header; an accepted token must export, be removed, import back from
// the exported text and export to the same bytes, be listed and removed.
int luks2_token(const std::uint8_t* data, std::size_t size);
// dm-crypt cipher specifications and plain-mode hash specs.
int cipher_spec(const std::uint8_t* data, std::size_t size);
// Image arguments naming network stores: NBD URI recognition and the rbd: spec parser.
int store_uri(const std::uint8_t* data, std::size_t size);
// The daemon's control protocol (fs/control.h): the input as a request body and as a reply
// body; whatever decodes must encode back to the same bytes.
int control_message(const std::uint8_t* data, std::size_t size);
// Valid bodies to start from: an add request with a layout and key (0), a resize request (1), a
// status reply with two volumes (2), a reencrypt request (3), a reencrypt progress reply (4).
std::vector<std::uint8_t> control_seed(int which);

// BitLocker metadata. The input is a compact form: a 512-byte boot sector, then one FVE metadata
// block (at most 64 KiB); bitlk_image() places the block at the three metadata offsets of a
// small image (the boot sector's offsets are forced to them so mutations reach the parser), and
// the target loads, validates, dumps and (clear key only: no KDF) unlocks it.
int bitlk_metadata(const std::uint8_t* data, std::size_t size);
std::vector<std::byte> bitlk_image(const std::uint8_t* data, std::size_t size);
// A valid compact BitLocker volume: AES-XTS-128, 512-byte sectors, a clear-key VMK, FVEK =
// bytes 0x40..0x5f, description "fuzz seed", volume header area 8 KiB at kBitlkSeedVhOffset.
std::vector<std::uint8_t> bitlk_seed();
inline constexpr std::uint64_t kBitlkSeedImageBytes = 512u << 10;
inline constexpr std::uint64_t kBitlkSeedFve[3] = {64u << 10, 192u << 10, 320u << 10};
inline constexpr std::uint64_t kBitlkSeedVhOffset = 128u << 10;
inline constexpr std::uint64_t kBitlkSeedVhBytes = 8192;

// FileVault 2: the input is the start of an image (at most 64 KiB: volume header, disk label,
// volume groups descriptor, encrypted metadata); the target fixes the header's and the disk
// label's CRC-32C so mutations get past them, then loads and dumps.
int fvault2_metadata(const std::uint8_t* data, std::size_t size);
// A Core Storage header (block size 4096, disk label at block 1) whose metadata points at
// empty encrypted blocks: parses up to "necessary metadata blocks not found".
std::vector<std::uint8_t> fvault2_seed();
// TCRYPT: bytes 0..511 are a decrypted header; byte 512 steers (bit 0: fix magic and CRCs so the
// fields are reached, bit 1: VeraCrypt, bit 5: run the trial over the input as an image, bit 6:
// hidden, bit 7: system, bits 2-4: the chain); bytes 513..520 the image size (big-endian).
// Parse, mapping, dump, keyfile pool; the trial is restricted to one cheap KDF.
int tcrypt_header(const std::uint8_t* data, std::size_t size);
// loop-AES key files (docs/loopaes.md §2): byte 0 steers (bits 0-1: key size 128/192/256/128,
// bit 2: --hash sha1), the rest is the key file. An accepted file must give 1, 64 or 65 keys of
// the key size and a mapping onto a 1 MiB image whose key size is theirs (aborts otherwise).
int loopaes_keyfile(const std::uint8_t* data, std::size_t size);
// 65 equal key lines, 128-bit keys.
std::vector<std::uint8_t> loopaes_keyfile_seed();
// dm-integrity superblock (LUKS2 --integrity, docs/integrity.md §1): bytes 0..511 are the
// superblock sector; bytes 512..519 the device size in sectors and 520..527 the superblock's
// sector (little-endian; defaults 524288 and 32768). Parse, LUKS2 checks, geometry, the position
// of the last data sector and its tag, the dump text.
int integrity_superblock(const std::uint8_t* data, std::size_t size);
std::vector<std::uint8_t> integrity_superblock_seed();
// dm-integrity journal replay plan (docs/integrity.md §1.3): a 4-section journal (byte 0 bit 0:
// journal mode, bit 1: 4 KiB blocks; byte 1: the four sections' sequences, 2 bits each; three
// entries in use per section), then edits of 5 bytes (LE32 offset modulo the journal size, the
// byte). Plans the replay and checks every planned write lies inside the journal and the device.
int integrity_journal(const std::uint8_t* data, std::size_t size);
std::vector<std::uint8_t> integrity_journal_seed();

}  // namespace cryptmap::fuzz

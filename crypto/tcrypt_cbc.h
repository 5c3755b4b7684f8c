// TrueCrypt 1.0-4.3 CBC modes over one or more block ciphers (docs/tcrypt.md §5), which dm-crypt
// maps only for single ciphers ("cbc-tcw"): a cascade of ciphers of one block size is "outer
// CBC" (cryptsetup's "cbci-tcrypt": each block goes through every cipher between the CBC XORs),
// a cascade with a 64-bit cipher in it is "inner CBC" (cryptsetup's "cbc-tcrypt": the whole sector
// goes through CBC once per cipher, each with its own block size).
//
// Key, as cryptsetup's TCRYPT volume key: each cipher's key in key order, each of its largest
// size (tcrypt_cbc_key_bytes), then the IV region: the IV seed (the largest block size) and the
// 16-byte whitening key after it (a stage of block size b uses region [0, b) and [b, b + 16)).
//
//   tcrypt_cbc_key_bytes()       one cipher's key size in these modes (0: not a cipher here)
//   make_tcrypt_cbc_cascade()    the data cipher of a cascade (512-byte sectors, tcw IVs)
//   tcrypt_cbc_decrypt_header()  the header's CBC: fixed IV and whitening instead of per sector
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "crypto/sector_cipher.h"

namespace cryptmap::crypto {

std::size_t tcrypt_cbc_key_bytes(std::string_view cipher) noexcept;

// `ciphers` in key order (at least 2); `key` as above. Sector s (iv_offset + run index) has IV
// seed XOR LE64(s) and dm-crypt's tcw whitening, per stage. Errors: kUnsupported for a cipher
// not in the catalog, kInvalid for a wrong key length.
Result<std::unique_ptr<SectorCipher>> make_tcrypt_cbc_cascade(std::span<const std::string> ciphers,
                                                              std::uint64_t iv_offset,
                                                              std::span<const std::byte> key);

// Decrypts a TrueCrypt header's encrypted bytes in place (`buf`, a multiple of 16 bytes): per
// stage (last cipher first for inner CBC; all ciphers at once for one cipher or outer CBC), XOR
// every 8 bytes with iv_region [8, 16), then CBC-decrypt with IV iv_region [0, block size).
// `cipher_keys`: the ciphers' keys in key order, each of tcrypt_cbc_key_bytes.
Result<void> tcrypt_cbc_decrypt_header(std::span<const std::string> ciphers,
                                       std::span<const std::byte> cipher_keys,
                                       std::span<const std::byte> iv_region,
                                       std::span<std::byte> buf);

}  // namespace cryptmap::crypto

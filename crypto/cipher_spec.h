// CipherSpec — a parsed dm-crypt cipher specification.
//
// Grammar (dm-crypt, see volume/FORMATS.md and docs/formats.md §3.2):
//   legacy:  cipher[:keycount]-chainmode-ivmode[:ivopts]      e.g. aes-xts-plain64,
//   aes-cbc-essiv:sha256
//            cipher                       == cipher-cbc-plain
//            cipher-ecb                   (no IV)
//   capi:    capi:<kernel spec>-ivmode[:ivopts]               e.g. capi:xts(aes)-plain64
// Parsing never throws and names the part that failed in the Error detail.
// Value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace cryptmap::crypto {

struct CipherSpec {
  std::string cipher;  // block cipher: "aes", "serpent", "twofish", "camellia", "cast5", "cast6",
                       // "cipher_null"
  std::uint32_t keycount = 1;  // power of two; lmk forces 64
  std::string chain_mode;      // "xts", "cbc", "ecb", "ctr", "lrw" (or an AEAD later)
  std::string iv_mode;  // "plain", "plain64", "plain64be", "essiv", "benbi", "null", "eboiv",
                        // "lmk", "tcw", "" for ecb
  std::string iv_opts;  // essiv hash ("sha256"), empty otherwise
  bool capi = false;    // spelled in crypto-API form

  static Result<CipherSpec> parse(std::string_view spec);
  // Canonical legacy spelling, as cryptsetup stores it ("aes-xts-plain64").
  std::string to_string() const;
  // The "cipher" and "mode" halves as LUKS1 stores them ("aes", "xts-plain64").
  std::string luks_cipher_name() const { return cipher; }
  std::string luks_cipher_mode() const;
};

}  // namespace cryptmap::crypto

// Internal: Kuznyechik, the GOST R 34.12-2015 128-bit block cipher with a 256-bit key (RFC 7801),
// which VeraCrypt offers and no library on Debian 12 implements. Bytes are in the RFC's written
// order (the first byte of a block is the RFC's most significant a15), as VeraCrypt and the
// Linux out-of-tree module use them. Table-driven: one 64 KiB table each for L and L^-1, built
// once; round keys in locked memory. Private to cryptmap_crypto (and its tests).
#pragma once

#include <memory>
#include <span>

#include "base/result.h"
#include "crypto/internal/cipher_catalog.h"

namespace cryptmap::crypto::internal {

// kInvalid unless the key is 32 bytes.
Result<std::unique_ptr<BlockCipher>> make_kuznyechik(std::span<const std::byte> key);

}  // namespace cryptmap::crypto::internal

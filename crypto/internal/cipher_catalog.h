// Internal: what cryptmap knows about block ciphers, chain modes and key blobs, independent of
// which library implements them. Private to cryptmap_crypto (and its tests).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "base/result.h"
#include "crypto/cipher_spec.h"

namespace cryptmap::crypto::internal {

struct BlockCipherInfo {
  std::string_view name;   // dm-crypt / kernel name
  std::size_t block_size;  // bytes
  std::size_t min_key;     // valid key sizes: min_key..max_key in steps of key_step
  std::size_t max_key;
  std::size_t key_step;
};

const BlockCipherInfo* find_block_cipher(std::string_view name) noexcept;
bool valid_cipher_key(const BlockCipherInfo& info, std::size_t key_bytes) noexcept;

// How dm-crypt slices a key blob (crypt_ctr_ivmode, crypt_subkey_size, crypt_setkey):
//   blob = tfm_count subkeys of subkey_bytes, then extra_bytes (lmk seed, tcw IV seed+whitening).
//   Each subkey is the key of one chain-mode transform: XTS halves (data key, tweak key), LRW
//   data key + 16-byte tweak key, or a plain cipher key.
struct KeyLayout {
  const BlockCipherInfo* cipher = nullptr;
  std::size_t tfm_count = 1;
  std::size_t subkey_bytes = 0;
  std::size_t cipher_key_bytes = 0;  // key of the block cipher itself inside a subkey
  std::size_t extra_bytes = 0;
  std::size_t iv_size = 0;  // dm-crypt iv_size: block size, at least 8; 0 for ecb
};

// Validates the spec's internal consistency (mode needs 16-byte blocks, lmk/tcw sector size,
// ...) and the key length. Errors name the spec part and the expected sizes.
Result<KeyLayout> key_layout(const CipherSpec& spec, std::size_t key_bytes);

// A keyed block cipher, both directions, ECB over whole blocks. NOT thread-safe: one per
// thread context. in and out may alias exactly (in place). `len` is a multiple of block_size.
class BlockCipher {
 public:
  virtual ~BlockCipher() = default;
  virtual std::size_t block_size() const noexcept = 0;
  // out = E(in) XOR xor_out (xor_out may be nullptr).
  virtual void encrypt(const std::byte* in, const std::byte* xor_out, std::byte* out,
                       std::size_t len) = 0;
  // out = D(in) XOR xor_out (xor_out may be nullptr).
  virtual void decrypt(const std::byte* in, const std::byte* xor_out, std::byte* out,
                       std::size_t len) = 0;
};

// Crypto++ implementations. Fails with kInvalid for a key length the cipher rejects.
Result<std::unique_ptr<BlockCipher>> make_block_cipher(std::string_view name,
                                                       std::span<const std::byte> key);

}  // namespace cryptmap::crypto::internal

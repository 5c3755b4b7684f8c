// Internal: IvGenerator — dm-crypt's IV operation table (crypt_iv_operations: ctr/init/generator/
// post) as an interface. One instance per key transform per thread context: NOT thread-safe,
// keyed once at creation. The sector cipher calls, for each encryption unit:
//   generate(s, iv, unit, encrypt)   before the chain mode; `unit` is the input (plaintext on
//                                    encrypt, ciphertext on decrypt) and may be modified (tcw
//                                    strips whitening from ciphertext before decryption);
//   <chain mode encrypts/decrypts unit in place with iv>
//   post(s, iv, unit, encrypt)       after it, on the output (lmk fixes plaintext block 0 on
//                                    decrypt, tcw whitens ciphertext on encrypt).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/result.h"
#include "crypto/cipher_spec.h"
#include "crypto/internal/cipher_catalog.h"

namespace cryptmap::crypto::internal {

class IvGenerator {
 public:
  virtual ~IvGenerator() = default;
  virtual void generate(std::uint64_t iv_sector, std::span<std::byte> iv, std::span<std::byte> unit,
                        bool encrypt) = 0;
  virtual void post(std::uint64_t /*iv_sector*/, std::span<std::byte> /*iv*/,
                    std::span<std::byte> /*unit*/, bool /*encrypt*/) {}
};

struct IvGeneratorArgs {
  const CipherSpec* spec;
  const KeyLayout* layout;
  std::span<const std::byte> whole_key;   // the full key blob (lmk seed, tcw seed/whitening)
  std::span<const std::byte> subkey;      // this transform's whole key (essiv hashes all of it,
                                          // XTS halves / LRW tweak key included, as Linux does)
  std::span<const std::byte> cipher_key;  // its block-cipher key (eboiv)
  std::uint32_t sector_size;
};

// nullptr IvGenerator for ecb (no IV). Errors: kUnsupported / kInvalid naming the IV mode.
Result<std::unique_ptr<IvGenerator>> make_iv_generator(const IvGeneratorArgs& args);

}  // namespace cryptmap::crypto::internal

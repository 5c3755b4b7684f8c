// Internal: the table behind crypto/hash.h and crypto/kdf.h. Maps a cryptsetup hash name to the
// library that implements it (OpenSSL for the SHA/RIPEMD/BLAKE2/SM3 family, Crypto++ for
// whirlpool, which OpenSSL 3 only has in its legacy provider, and our own Streebog,
// crypto/internal/streebog.h, which no library here has). Private to cryptmap_crypto.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

#include "base/result.h"

namespace cryptmap::crypto::internal {

enum class HashLib : std::uint8_t { kOpenSsl, kCryptopp, kStreebog };

struct HashInfo {
  std::string_view name;     // cryptsetup spelling ("sha256")
  const char* openssl_name;  // EVP name, or nullptr for Crypto++-only hashes
  std::size_t digest_size;
  std::size_t block_size;
  HashLib lib;
};

// nullptr if the hash is unknown. Lookup is case-sensitive, as cryptsetup's is after lowercasing.
const HashInfo* find_hash(std::string_view name) noexcept;
Result<const HashInfo*> require_hash(std::string_view name, const char* what);

}  // namespace cryptmap::crypto::internal

namespace cryptmap::crypto::internal {

// A reusable digest context for hot loops (AF diffuse, plain-mode key hashing) so the library's
// name lookup and context allocation happen once. Thread-compatible (one per thread).
class Hasher {
 public:
  static Result<Hasher> create(std::string_view name);
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  ~Hasher();

  std::size_t digest_size() const noexcept { return info_->digest_size; }
  // out.size() must be <= digest_size(); a shorter out receives a truncated digest.
  Result<void> digest(std::initializer_list<std::span<const std::byte>> parts,
                      std::span<std::byte> out);

 private:
  Hasher() = default;
  const HashInfo* info_ = nullptr;
  void* impl_ = nullptr;  // EVP_MD_CTX*, CryptoPP::HashTransformation* or Streebog*
};

}  // namespace cryptmap::crypto::internal

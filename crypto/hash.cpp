#include "crypto/hash.h"

#include <crypto++/whrlpool.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include "base/secret.h"
#include "crypto/internal/hash_backend.h"
#include "crypto/internal/streebog.h"

namespace cryptmap::crypto {
namespace internal {
namespace {

// The hashes cryptsetup accepts for LUKS hashes, AF, plain-mode passphrase hashing and ESSIV.
constexpr std::array<HashInfo, 16> kHashes{{
    {"sha1", "SHA1", 20, 64, HashLib::kOpenSsl},
    {"sha224", "SHA224", 28, 64, HashLib::kOpenSsl},
    {"sha256", "SHA256", 32, 64, HashLib::kOpenSsl},
    {"sha384", "SHA384", 48, 128, HashLib::kOpenSsl},
    {"sha512", "SHA512", 64, 128, HashLib::kOpenSsl},
    {"ripemd160", "RIPEMD160", 20, 64, HashLib::kOpenSsl},
    {"whirlpool", nullptr, 64, 64, HashLib::kCryptopp},
    {"sha3-224", "SHA3-224", 28, 144, HashLib::kOpenSsl},
    {"sha3-256", "SHA3-256", 32, 136, HashLib::kOpenSsl},
    {"sha3-384", "SHA3-384", 48, 104, HashLib::kOpenSsl},
    {"sha3-512", "SHA3-512", 64, 72, HashLib::kOpenSsl},
    {"blake2b-512", "BLAKE2B-512", 64, 128, HashLib::kOpenSsl},
    {"blake2s-256", "BLAKE2S-256", 32, 64, HashLib::kOpenSsl},
    {"sm3", "SM3", 32, 64, HashLib::kOpenSsl},
    {"stribog256", nullptr, 32, 64, HashLib::kStreebog},
    {"stribog512", nullptr, 64, 64, HashLib::kStreebog},
}};

EVP_MD_CTX* evp(void* p) { return static_cast<EVP_MD_CTX*>(p); }
CryptoPP::HashTransformation* cpp(void* p) { return static_cast<CryptoPP::HashTransformation*>(p); }
Streebog* gost(void* p) { return static_cast<Streebog*>(p); }

}  // namespace

const HashInfo* find_hash(std::string_view name) noexcept {
  for (const HashInfo& h : kHashes)
    if (h.name == name) return &h;
  return nullptr;
}

Result<const HashInfo*> require_hash(std::string_view name, const char* what) {
  const HashInfo* h = find_hash(name);
  if (h == nullptr) {
    return make_error_fmt(Errc::kUnsupported, what, kNoObject,
                          "hash '%.32s' not supported (try sha256, sha512, sha1, ripemd160, "
                          "whirlpool, stribog512)",
                          std::string(name).c_str());
  }
  return h;
}

Result<Hasher> Hasher::create(std::string_view name) {
  CRYPTMAP_TRY(info, require_hash(name, "hash"));
  Hasher h;
  h.info_ = info;
  if (info->lib == HashLib::kOpenSsl) {
    const EVP_MD* md = EVP_get_digestbyname(info->openssl_name);
    if (md == nullptr)
      return make_error_fmt(Errc::kUnsupported, "hash", kNoObject,
                            "the OpenSSL build here does not provide '%s'", info->openssl_name);
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    if (c == nullptr) return make_error(Errc::kNoSpace, "hash: allocate OpenSSL digest context");
    h.impl_ = c;
    if (EVP_DigestInit_ex(c, md, nullptr) != 1)
      return make_error_fmt(Errc::kUnsupported, "hash", kNoObject, "cannot initialise '%s'",
                            info->openssl_name);
  } else if (info->lib == HashLib::kStreebog) {
    h.impl_ = new (std::nothrow) Streebog(info->digest_size);
    if (h.impl_ == nullptr) return make_error(Errc::kNoSpace, "hash: allocate Streebog state");
  } else {
    try {
      h.impl_ = static_cast<CryptoPP::HashTransformation*>(new CryptoPP::Whirlpool);
    } catch (const std::exception&) {
      return make_error(Errc::kNoSpace, "hash: allocate Crypto++ digest");
    }
  }
  return h;
}

Hasher::Hasher(Hasher&& o) noexcept : info_(o.info_), impl_(std::exchange(o.impl_, nullptr)) {}

Hasher& Hasher::operator=(Hasher&& o) noexcept {
  if (this != &o) {
    this->~Hasher();
    info_ = o.info_;
    impl_ = std::exchange(o.impl_, nullptr);
  }
  return *this;
}

Hasher::~Hasher() {
  if (impl_ == nullptr) return;
  if (info_->lib == HashLib::kOpenSsl)
    EVP_MD_CTX_free(evp(impl_));  // cleanses the state
  else if (info_->lib == HashLib::kStreebog)
    delete gost(impl_);  // wipes its state
  else
    delete cpp(impl_);  // Crypto++ state lives in SecBlocks, zeroed on destruction
  impl_ = nullptr;
}

Result<void> Hasher::digest(std::initializer_list<std::span<const std::byte>> parts,
                            std::span<std::byte> out) {
  if (out.size() > info_->digest_size)
    return make_error_fmt(Errc::kInvalid, "hash: output size", kNoObject,
                          "%zu bytes asked of %.20s, which gives %zu", out.size(),
                          std::string(info_->name).c_str(), info_->digest_size);
  std::array<std::byte, 64> full{};
  if (info_->lib == HashLib::kOpenSsl) {
    EVP_MD_CTX* c = evp(impl_);
    // Re-initialise with the already-fetched digest (cheap; no name lookup).
    if (EVP_DigestInit_ex(c, nullptr, nullptr) != 1)
      return make_error(Errc::kIo, "hash: OpenSSL digest init failed");
    for (auto p : parts)
      if (!p.empty() && EVP_DigestUpdate(c, p.data(), p.size()) != 1)
        return make_error(Errc::kIo, "hash: OpenSSL digest update failed");
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(c, reinterpret_cast<unsigned char*>(full.data()), &len) != 1 ||
        len != info_->digest_size)
      return make_error(Errc::kIo, "hash: OpenSSL digest final failed");
  } else if (info_->lib == HashLib::kStreebog) {
    Streebog* h = gost(impl_);
    h->reset();
    for (auto p : parts) h->update(p);
    h->final(std::span<std::byte>(full.data(), info_->digest_size));
  } else {
    try {
      auto* h = cpp(impl_);
      for (auto p : parts) h->Update(reinterpret_cast<const CryptoPP::byte*>(p.data()), p.size());
      h->Final(reinterpret_cast<CryptoPP::byte*>(full.data()));
    } catch (const std::exception&) {
      return make_error(Errc::kIo, "hash: Crypto++ digest failed");
    }
  }
  std::copy_n(full.begin(), out.size(), out.begin());
  secure_zero(full.data(), full.size());  // digests of key material are key material
  return ok();
}

}  // namespace internal

Result<std::size_t> hash_digest_size(std::string_view hash) {
  CRYPTMAP_TRY(h, internal::require_hash(hash, "hash"));
  return h->digest_size;
}

Result<void> hash_digest(std::string_view hash,
                         std::initializer_list<std::span<const std::byte>> parts,
                         std::span<std::byte> out) {
  CRYPTMAP_TRY(h, internal::Hasher::create(hash));
  if (out.size() != h.digest_size())
    return make_error_fmt(Errc::kInvalid, "hash: output buffer size", kNoObject,
                          "%zu bytes given, %.20s gives %zu", out.size(), std::string(hash).c_str(),
                          h.digest_size());
  return h.digest(parts, out);
}

}  // namespace cryptmap::crypto

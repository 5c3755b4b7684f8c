// Every sector cipher backend of crypto/internal/engines.h, built directly (never through the
// registry's choice), against the SectorCipher contract; and every backend that serves a
// configuration producing the same ciphertext for it.
#include <gtest/gtest.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "crypto/internal/aesni_cbc.h"
#include "crypto/internal/cipher_catalog.h"
#include "crypto/internal/engines.h"
#include "tests/support/data.h"
#include "tests/unit/crypto/sector_cipher_contract.h"

namespace cryptmap::crypto {
namespace backends {

using Create = Result<std::unique_ptr<SectorCipher>> (*)(const SectorCipherConfig&,
                                                         const internal::KeyLayout&,
                                                         std::span<const std::byte>);

Result<std::unique_ptr<SectorCipher>> make_with(Create create, const SectorCipherConfig& config,
                                                std::span<const std::byte> key) {
  CRYPTMAP_TRY(layout, internal::key_layout(config.spec, key.size()));
  return create(config, layout, key);
}

std::string needs_aesni() { return internal::aesni_available() ? "" : "this CPU has no AES-NI"; }

struct AesniXtsBackend {
  static constexpr const char* kSpec = "aes-xts-plain64";
  static constexpr std::size_t kKeyBytes = 64;
  static constexpr const char* kEngine = "aesni-xts";
  static std::string unavailable() { return needs_aesni(); }
  static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& c,
                                                    std::span<const std::byte> key) {
    return make_with(&internal::make_aesni_xts_cipher, c, key);
  }
};

struct OpensslXtsBackend {
  static constexpr const char* kSpec = "aes-xts-plain64";
  static constexpr std::size_t kKeyBytes = 64;
  static constexpr const char* kEngine = "openssl-xts";
  static std::string unavailable() { return ""; }
  static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& c,
                                                    std::span<const std::byte> key) {
    return make_with(&internal::make_openssl_xts_cipher, c, key);
  }
};

// OpenSSL EVP chain modes under the generic IV generators (its XTS, one unit per call).
struct OpensslModesBackend {
  static constexpr const char* kSpec = "aes-xts-plain64";
  static constexpr std::size_t kKeyBytes = 64;
  static constexpr const char* kEngine = "openssl";
  static std::string unavailable() { return ""; }
  static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& c,
                                                    std::span<const std::byte> key) {
    return make_with(&internal::make_openssl_modes_cipher, c, key);
  }
};

// The OpenSSL-modes engine switches to multi-lane AES-NI CBC (aesni_cbc.h) for one-key AES-CBC.
struct AesniCbcBackend {
  static constexpr const char* kSpec = "aes-cbc-essiv:sha256";
  static constexpr std::size_t kKeyBytes = 32;
  static constexpr const char* kEngine = "aesni-cbc";
  static std::string unavailable() { return needs_aesni(); }
  static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& c,
                                                    std::span<const std::byte> key) {
    return make_with(&internal::make_openssl_modes_cipher, c, key);
  }
};

// Crypto++ chain modes and block ciphers: the fallback for everything.
struct CryptoppBackend {
  static constexpr const char* kSpec = "aes-xts-plain64";
  static constexpr std::size_t kKeyBytes = 64;
  static constexpr const char* kEngine = "cryptopp";
  static std::string unavailable() { return ""; }
  static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& c,
                                                    std::span<const std::byte> key) {
    return make_with(&internal::make_generic_cipher, c, key);
  }
};

// A non-AES cipher through the same generic engine (its CBC and ESSIV, not OpenSSL's).
struct CryptoppSerpentCbcBackend {
  static constexpr const char* kSpec = "serpent-cbc-essiv:sha256";
  static constexpr std::size_t kKeyBytes = 32;
  static constexpr const char* kEngine = "cryptopp";
  static std::string unavailable() { return ""; }
  static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& c,
                                                    std::span<const std::byte> key) {
    return make_with(&internal::make_generic_cipher, c, key);
  }
};

}  // namespace backends

namespace contract {
INSTANTIATE_TYPED_TEST_SUITE_P(AesniXts, SectorCipherContract,
                               ::testing::Types<backends::AesniXtsBackend>);
INSTANTIATE_TYPED_TEST_SUITE_P(OpensslXts, SectorCipherContract,
                               ::testing::Types<backends::OpensslXtsBackend>);
INSTANTIATE_TYPED_TEST_SUITE_P(OpensslModes, SectorCipherContract,
                               ::testing::Types<backends::OpensslModesBackend>);
INSTANTIATE_TYPED_TEST_SUITE_P(AesniCbc, SectorCipherContract,
                               ::testing::Types<backends::AesniCbcBackend>);
INSTANTIATE_TYPED_TEST_SUITE_P(Cryptopp, SectorCipherContract,
                               ::testing::Types<backends::CryptoppBackend>);
INSTANTIATE_TYPED_TEST_SUITE_P(CryptoppSerpentCbc, SectorCipherContract,
                               ::testing::Types<backends::CryptoppSerpentCbcBackend>);
}  // namespace contract

namespace {
using backends::Create;

struct Engine {
  const char* name;
  bool (*supports)(const SectorCipherConfig&, const internal::KeyLayout&);
  Create create;
};

// Every engine of the registry (sector_cipher.cpp's kEngines), highest priority first.
const Engine kEngines[] = {
    {"aesni-xts", &internal::aesni_xts_supports, &internal::make_aesni_xts_cipher},
    {"openssl-xts", &internal::openssl_xts_supports, &internal::make_openssl_xts_cipher},
    {"openssl", &internal::openssl_modes_supports, &internal::make_openssl_modes_cipher},
    {"cryptopp", &internal::generic_supports, &internal::make_generic_cipher},
};

// Encrypts one buffer with every engine that supports `config` and expects one ciphertext, and
// each engine to decrypt it back. Returns how many engines took part.
int expect_engines_agree(const SectorCipherConfig& config, std::span<const std::byte> key,
                         std::uint64_t first, const std::string& what) {
  auto layout = internal::key_layout(config.spec, key.size());
  EXPECT_TRUE(layout) << what;
  if (!layout) return 0;
  const auto pt = test::deterministic_bytes(std::size_t{config.sector_size} * 5, key.size() + 1);
  std::vector<std::byte> reference;
  std::string reference_engine;
  int engines = 0;
  for (const Engine& e : kEngines) {
    if (!e.supports(config, *layout)) continue;
    auto c = e.create(config, *layout, key);
    EXPECT_TRUE(c) << e.name << " " << what << ": " << (c ? "" : c.error().message());
    if (!c) continue;
    ++engines;
    auto buf = pt;
    EXPECT_TRUE((*c)->encrypt(SectorRun{buf, {}, SectorIndex{first}})) << e.name << " " << what;
    if (reference.empty()) {
      reference = buf;
      reference_engine = (*c)->engine_name();
    } else {
      EXPECT_TRUE(buf == reference)
          << (*c)->engine_name() << " differs from " << reference_engine << ": " << what;
    }
    EXPECT_TRUE((*c)->decrypt(SectorRun{buf, {}, SectorIndex{first}})) << e.name << " " << what;
    EXPECT_TRUE(buf == pt) << e.name << " does not decrypt back: " << what;
  }
  return engines;
}

// AES-XTS (AES-NI, OpenSSL XTS, OpenSSL modes, Crypto++) on every key size, IV mode, sector size,
// iv_large_sectors, IV offsets and sector numbers above 2^32.
TEST(SectorCipherBackends, AllAesXtsEnginesProduceTheSameCiphertext) {
  const int expected = internal::aesni_available() ? 4 : 3;
  for (std::size_t key_bytes : {32u, 64u}) {
    for (const char* spec :
         {"aes-xts-plain64", "aes-xts-plain", "aes-xts-plain64be", "aes-xts-null"}) {
      for (std::uint32_t ss : {512u, 1024u, 2048u, 4096u}) {
        for (bool large : {false, true}) {
          struct Where {
            std::uint64_t iv_offset, first;
          };
          for (const Where w : {Where{16 * 8, (1ULL << 32) + 12345}, Where{8 * 7, 1ULL << 36}}) {
            SectorCipherConfig cfg;
            cfg.spec = *CipherSpec::parse(spec);
            cfg.sector_size = ss;
            cfg.iv_large_sectors = large;
            cfg.iv_offset = w.iv_offset;
            const auto key = test::deterministic_bytes(key_bytes, key_bytes * 10000 + ss + large);
            const std::string what = std::string(spec) + " key " + std::to_string(key_bytes) +
                                     " ss " + std::to_string(ss) + " large " +
                                     std::to_string(large) + " first " + std::to_string(w.first);
            EXPECT_EQ(expect_engines_agree(cfg, key, w.first, what), expected) << what;
          }
        }
      }
    }
  }
}

// AES-CBC: OpenSSL modes (multi-lane AES-NI CBC when the CPU has it) and Crypto++.
TEST(SectorCipherBackends, AllAesCbcEnginesProduceTheSameCiphertext) {
  for (std::size_t key_bytes : {16u, 24u, 32u}) {
    for (const char* spec : {"aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-cbc-benbi"}) {
      for (std::uint32_t ss : {512u, 4096u}) {
        SectorCipherConfig cfg;
        cfg.spec = *CipherSpec::parse(spec);
        cfg.sector_size = ss;
        cfg.iv_offset = 8;
        const auto key = test::deterministic_bytes(key_bytes, key_bytes * 10000 + ss);
        const std::string what =
            std::string(spec) + " key " + std::to_string(key_bytes) + " ss " + std::to_string(ss);
        EXPECT_EQ(expect_engines_agree(cfg, key, (1ULL << 32) - 3, what), 2) << what;
      }
    }
  }
}

}  // namespace
}  // namespace cryptmap::crypto

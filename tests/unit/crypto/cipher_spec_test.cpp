#include "crypto/cipher_spec.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "tests/support/data.h"

namespace cryptmap::crypto {
namespace {

struct Good {
  const char* in;
  const char* cipher;
  std::uint32_t keycount;
  const char* chain;
  const char* iv;
  const char* opts;
  const char* canonical;
};

TEST(CipherSpec, ParsesWhatUsersMeet) {
  const Good cases[] = {
      {"aes-xts-plain64", "aes", 1, "xts", "plain64", "", "aes-xts-plain64"},
      {"aes-cbc-essiv:sha256", "aes", 1, "cbc", "essiv", "sha256", "aes-cbc-essiv:sha256"},
      {"serpent-xts-plain64", "serpent", 1, "xts", "plain64", "", "serpent-xts-plain64"},
      {"twofish-cbc-plain", "twofish", 1, "cbc", "plain", "", "twofish-cbc-plain"},
      {"aes", "aes", 1, "cbc", "plain", "", "aes-cbc-plain"},
      {"aes-plain", "aes", 1, "cbc", "plain", "", "aes-cbc-plain"},
      {"aes-ecb", "aes", 1, "ecb", "", "", "aes-ecb"},
      {"cipher_null-ecb", "cipher_null", 1, "ecb", "", "", "cipher_null-ecb"},
      {"aes:64-cbc-lmk", "aes", 64, "cbc", "lmk", "", "aes:64-cbc-lmk"},
      {"aes-lrw-benbi", "aes", 1, "lrw", "benbi", "", "aes-lrw-benbi"},
      {"aes-cbc-essiv:sha3-256", "aes", 1, "cbc", "essiv", "sha3-256", "aes-cbc-essiv:sha3-256"},
      {"capi:xts(aes)-plain64", "aes", 1, "xts", "plain64", "", "aes-xts-plain64"},
      {"capi:cbc(aes)-essiv:sha256", "aes", 1, "cbc", "essiv", "sha256", "aes-cbc-essiv:sha256"},
      {"capi:cbc(aes)-lmk", "aes", 64, "cbc", "lmk", "", "aes:64-cbc-lmk"},
      {"camellia-xts-plain64be", "camellia", 1, "xts", "plain64be", "", "camellia-xts-plain64be"},
      {"cast5-cbc-null", "cast5", 1, "cbc", "null", "", "cast5-cbc-null"},
      {"aes:2-cbc-tcw", "aes", 2, "cbc", "tcw", "", "aes:2-cbc-tcw"},
  };
  for (const auto& c : cases) {
    auto r = CipherSpec::parse(c.in);
    ASSERT_TRUE(r) << c.in << ": " << r.error().message();
    EXPECT_EQ(r->cipher, c.cipher) << c.in;
    EXPECT_EQ(r->keycount, c.keycount) << c.in;
    EXPECT_EQ(r->chain_mode, c.chain) << c.in;
    EXPECT_EQ(r->iv_mode, c.iv) << c.in;
    EXPECT_EQ(r->iv_opts, c.opts) << c.in;
    EXPECT_EQ(r->to_string(), c.canonical) << c.in;
    EXPECT_EQ(r->capi, std::string(c.in).rfind("capi:", 0) == 0) << c.in;
    auto again = CipherSpec::parse(r->to_string());  // canonical form round-trips
    ASSERT_TRUE(again) << c.in;
    EXPECT_EQ(again->to_string(), r->to_string());
  }
}

TEST(CipherSpec, LuksHalves) {
  auto r = CipherSpec::parse("aes-cbc-essiv:sha256");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->luks_cipher_name(), "aes");
  EXPECT_EQ(r->luks_cipher_mode(), "cbc-essiv:sha256");
  r = CipherSpec::parse("aes-ecb");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->luks_cipher_mode(), "ecb");
}

struct Bad {
  const char* in;
  Errc code;
  const char* names;  // substring the message must contain
};

TEST(CipherSpec, RejectsWithErrorsNamingThePart) {
  const Bad cases[] = {
      {"", Errc::kInvalid, "empty"},
      {"rot13-xts-plain64", Errc::kUnsupported, "rot13"},
      {"aes-xyz-plain64", Errc::kUnsupported, "xyz"},
      {"aes-xts-plain65", Errc::kUnsupported, "plain65"},
      {"aes-cbc", Errc::kInvalid, "IV mode"},
      {"aes-xts", Errc::kInvalid, "IV mode"},
      {"aes-cbc-essiv", Errc::kInvalid, "ESSIV"},
      {"aes-cbc-essiv:md17", Errc::kUnsupported, "md17"},
      {"aes-xts-plain64:sha256", Errc::kInvalid, "IV options"},
      {"aes:3-xts-plain64", Errc::kInvalid, "key count"},
      {"aes:0-xts-plain64", Errc::kInvalid, "key count"},
      {"aes:x-xts-plain64", Errc::kInvalid, "key count"},
      {"-xts-plain64", Errc::kInvalid, "cipher"},
      {"aes--plain64", Errc::kInvalid, "chain mode"},
      {"aes-xts-", Errc::kInvalid, "IV mode"},
      {"aes xts", Errc::kInvalid, "space"},
      {"capi:gcm(aes)-random", Errc::kUnsupported, "gcm"},
      {"capi:authenc(hmac(sha256),xts(aes))-random", Errc::kUnsupported, "authenc"},
      {"capi:xts-plain64", Errc::kInvalid, "mode(cipher)"},
      {"capi:xts(rot13)-plain64", Errc::kUnsupported, "rot13"},
  };
  for (const auto& c : cases) {
    auto r = CipherSpec::parse(c.in);
    ASSERT_FALSE(r) << "'" << c.in << "' parsed as " << r->to_string();
    EXPECT_EQ(r.error().code, c.code) << c.in << ": " << r.error().message();
    EXPECT_NE(r.error().message().find(c.names), std::string::npos)
        << c.in << ": " << r.error().message();
  }
}

// Robustness: random strings over the grammar's alphabet either parse (and then round-trip
// through the canonical form) or fail with a message; nothing crashes (run under ASan/UBSan).
TEST(CipherSpec, RandomInputsParseOrFailCleanly) {
  static const char* kTokens[] = {"aes",   "serpent",     "xts", "cbc", "ecb",  "plain64",
                                  "essiv", "sha256",      "lmk", "tcw", "capi", "(",
                                  ")",     ":",           "-",   "64",  "2",    "0",
                                  "benbi", "cipher_null", "",    "x",   ",",    "random"};
  int parsed = 0;
  for (std::uint64_t i = 0; i < 20000; ++i) {
    // Eight deterministic bytes per input: its token count, then its tokens.
    const auto choice = test::deterministic_bytes(8, 12345, 8 * i);
    std::string s;
    const unsigned parts = 1 + std::to_integer<unsigned>(choice[0]) % 7;
    for (unsigned p = 0; p < parts; ++p)
      s += kTokens[std::to_integer<unsigned>(choice[1 + p]) % std::size(kTokens)];
    auto r = CipherSpec::parse(s);
    if (r) {
      ++parsed;
      auto again = CipherSpec::parse(r->to_string());
      ASSERT_TRUE(again) << s << " -> " << r->to_string();
      EXPECT_EQ(again->to_string(), r->to_string()) << s;
    } else {
      EXPECT_FALSE(r.error().message().empty()) << s;
    }
  }
  EXPECT_GT(parsed, 0);
}

TEST(CipherSpec, LongInputIsRejectedNotTruncated) {
  std::string s = "aes-xts-plain64" + std::string(200, 'x');
  EXPECT_FALSE(CipherSpec::parse(s));
}

}  // namespace
}  // namespace cryptmap::crypto

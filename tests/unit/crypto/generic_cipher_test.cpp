// The generic (Crypto++) engine: every cipher/mode/IV combination, cross-checked sector by
// sector against reference_cipher.py (python3-cryptography and libgcrypt), plus KATs for what
// no independent implementation here provides (LRW, CAST6).
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "crypto/internal/aesni_cbc.h"
#include "crypto/internal/cipher_catalog.h"
#include "crypto/internal/engines.h"
#include "crypto/internal/iv_generator.h"
#include "crypto/sector_cipher.h"
#include "tests/support/data.h"
#include "tests/unit/crypto/reference_cipher.h"

namespace cryptmap::crypto {
namespace {

using test::hex;
using test::hex_of;

SectorCipherConfig config(std::string_view spec, std::uint32_t ss = 512, std::uint64_t off = 0,
                          bool large = false) {
  SectorCipherConfig c;
  auto s = CipherSpec::parse(spec);
  EXPECT_TRUE(s) << spec << ": " << (s ? "" : s.error().message());
  if (s) c.spec = *s;
  c.sector_size = ss;
  c.iv_offset = off;
  c.iv_large_sectors = large;
  return c;
}

// Forces the generic engine (bypassing the registry), so AES-XTS is covered there too.
std::unique_ptr<SectorCipher> make_generic(const SectorCipherConfig& c,
                                           std::span<const std::byte> key) {
  auto layout = internal::key_layout(c.spec, key.size());
  EXPECT_TRUE(layout) << c.spec.to_string() << ": " << (layout ? "" : layout.error().message());
  if (!layout) return nullptr;
  auto r = internal::make_generic_cipher(c, *layout, key);
  EXPECT_TRUE(r) << c.spec.to_string() << ": " << (r ? "" : r.error().message());
  return r ? std::move(*r) : nullptr;
}

std::vector<std::byte> run_copy(const SectorCipher& c, std::vector<std::byte> d,
                                std::uint64_t first, bool enc) {
  const SectorRun run{d, {}, SectorIndex{first}};
  auto r = enc ? c.encrypt(run) : c.decrypt(run);
  EXPECT_TRUE(r) << (r ? "" : r.error().message());
  return d;
}

struct SpecCase {
  const char* spec;
  std::size_t key_bytes;
  bool only_512;  // lmk, tcw
};

struct Geometry {
  std::uint32_t ss;
  std::uint64_t off;
  bool large;
  std::uint64_t first;
};

const Geometry kGeometries[] = {
    {512, 0, false, 0},
    {512, 0, false, 0xFFFFFFFEULL},
    {512, 64, false, (1ULL << 33) + 3},
    {4096, 0, false, 3},
    {4096, 8, false, (1ULL << 30) - 1},
    {4096, 16, true, (1ULL << 32) + 1},
    {1024, 2, false, 1000},
    {2048, 0, true, 77},
};

// force_generic: bypass the registry (Crypto++ chain modes); otherwise use make_sector_cipher()
// (OpenSSL engines for AES) and check which engine was picked.
void cross_check_all(const std::vector<SpecCase>& specs, bool force_generic = true) {
  std::vector<test::ReferenceJob> jobs;
  std::vector<std::vector<std::byte>> ours;
  std::vector<std::string> labels;
  for (const auto& sc : specs) {
    for (const auto& g : kGeometries) {
      if (sc.only_512 && (g.ss != 512 || g.large)) continue;
      test::ReferenceJob j;
      j.config = config(sc.spec, g.ss, g.off, g.large);
      j.key = test::deterministic_bytes(sc.key_bytes, 2 * jobs.size() + 1);
      j.input = test::deterministic_bytes(std::size_t{g.ss} * 4, 2 * jobs.size() + 2);
      j.first = g.first;
      std::unique_ptr<SectorCipher> c;
      if (force_generic) {
        c = make_generic(j.config, j.key);
        ASSERT_TRUE(c) << sc.spec;
        EXPECT_STREQ(c->engine_name(),
                     j.config.spec.cipher == "camellia" ? "generic+openssl-ecb" : "cryptopp");
      } else {
        auto made = make_sector_cipher(j.config, j.key);
        ASSERT_TRUE(made) << sc.spec << ": " << made.error().message();
        c = std::move(*made);
        if (j.config.spec.cipher == "aes") {
          EXPECT_STRNE(c->engine_name(), "cryptopp") << sc.spec;
        }
      }
      ours.push_back(run_copy(*c, j.input, g.first, true));
      EXPECT_EQ(run_copy(*c, ours.back(), g.first, false), j.input) << sc.spec << " round trip";
      // Out of place (encrypt_from): the same ciphertext, checked against the reference below
      // through `ours`; the source is left as it was.
      std::vector<std::byte> from(j.input.size());
      const std::vector<std::byte> plain = j.input;
      EXPECT_TRUE(c->encrypt_from(plain, SectorRun{from, {}, SectorIndex{g.first}})) << sc.spec;
      EXPECT_TRUE(from == ours.back()) << sc.spec << " out of place, ss " << g.ss;
      EXPECT_TRUE(plain == j.input) << sc.spec << " encrypt_from changed its source";
      labels.push_back(std::string(sc.spec) + " ss=" + std::to_string(g.ss) +
                       " off=" + std::to_string(g.off) + " large=" + std::to_string(g.large) +
                       " first=" + std::to_string(g.first));
      jobs.push_back(j);
      j.encrypt = false;
      j.input = ours.back();
      jobs.push_back(std::move(j));
    }
  }
  test::reference_batch(jobs);
  for (std::size_t i = 0; i < ours.size(); ++i) {
    EXPECT_TRUE(ours[i] == jobs[2 * i].output)
        << labels[i] << ": first 32 bytes ours " << hex_of(std::span(ours[i]).first(32))
        << " reference "
        << hex_of(std::span(jobs[2 * i].output)
                      .first(std::min<std::size_t>(32, jobs[2 * i].output.size())));
    EXPECT_TRUE(jobs[2 * i + 1].output == jobs[2 * i].input) << "reference decrypt: " << labels[i];
  }
}

TEST(GenericCipherCrossCheck, AesModesAndIvs) {
  cross_check_all({
      {"aes-xts-plain64", 64, false},
      {"aes-xts-plain64", 32, false},
      {"aes-xts-plain64be", 64, false},
      {"aes-xts-plain", 64, false},
      {"aes-cbc-essiv:sha256", 32, false},
      {"aes-cbc-essiv:sha256", 16, false},
      {"aes-cbc-plain", 32, false},
      {"aes-cbc-plain64", 24, false},
      {"aes-cbc-plain64be", 32, false},
      {"aes-cbc-null", 16, false},
      {"aes-cbc-benbi", 32, false},
      {"aes-cbc-eboiv", 32, false},
      {"aes-ecb", 32, false},
      {"aes-ctr-plain64", 32, false},
      {"aes-ctr-benbi", 16, false},
  });
}

// The same AES specs through the registry: OpenSSL chain modes under the shared IV generators.
TEST(OpensslModesCrossCheck, AesSpecsThroughRegistry) {
  cross_check_all({{"aes-xts-plain64", 64, false},
                   {"aes-xts-benbi", 64, false},
                   {"aes-xts-essiv:sha256", 32, false},
                   {"aes-cbc-essiv:sha256", 32, false},
                   {"aes-cbc-plain", 32, false},
                   {"aes-cbc-plain64", 24, false},
                   {"aes-cbc-plain64be", 16, false},
                   {"aes-cbc-null", 16, false},
                   {"aes-cbc-benbi", 32, false},
                   {"aes-cbc-eboiv", 32, false},
                   {"aes-ecb", 32, false},
                   {"aes-ctr-plain64", 32, false},
                   {"aes:4-cbc-plain64", 4 * 32, false},
                   {"aes:2-xts-plain64", 2 * 64, false},
                   {"aes:64-cbc-lmk", 65 * 32, true},
                   {"aes-cbc-tcw", 32 + 16 + 16, true}},
                  false);
}

TEST(GenericCipherCrossCheck, OtherCiphers) {
  cross_check_all({
      {"serpent-xts-plain64", 64, false},
      {"serpent-xts-plain64", 32, false},
      {"serpent-cbc-essiv:sha256", 32, false},
      {"serpent-cbc-plain64", 16, false},
      {"serpent-ecb", 24, false},
      {"twofish-xts-plain64", 64, false},
      {"twofish-cbc-essiv:sha256", 32, false},
      {"twofish-cbc-plain", 16, false},
      {"twofish-ctr-plain64", 32, false},
      {"camellia-xts-plain64", 64, false},
      {"camellia-cbc-essiv:sha256", 32, false},
      {"camellia-cbc-plain64", 24, false},
      {"camellia-ctr-plain64be", 16, false},
      {"cast5-cbc-plain64", 16, false},
      {"cast5-cbc-benbi", 16, false},
      {"cast5-ecb", 10, false},
      {"blowfish-cbc-plain64", 56, false},
      {"blowfish-cbc-plain", 16, false},
      {"des3_ede-cbc-plain64", 24, false},
      {"blowfish_le-cbc-plain64", 56, false},
      {"blowfish_le-ecb", 16, false},
  });
}

// TrueCrypt 1.x single 64-bit ciphers in dm-crypt's cbc-tcw (docs/tcrypt.md §5): key = cipher
// key, 8-byte IV seed, 16-byte whitening key.
TEST(GenericCipherCrossCheck, TrueCryptSixtyFourBitCiphersInTcw) {
  cross_check_all({
      {"cast5-cbc-tcw", 16 + 8 + 16, true},
      {"des3_ede-cbc-tcw", 24 + 8 + 16, true},
      {"blowfish_le-cbc-tcw", 56 + 8 + 16, true},
  });
}

TEST(GenericCipherCrossCheck, MultiKeyLmkTcw) {
  cross_check_all({
      {"aes:4-cbc-plain64", 4 * 32, false},
      {"aes:2-xts-plain64", 2 * 64, false},
      {"serpent:8-cbc-essiv:sha256", 8 * 32, false},
      {"aes:64-cbc-lmk", 64 * 32, true},  // loop-AES v2
      {"aes:64-cbc-lmk", 65 * 32, true},  // loop-AES v3 (IV seed key)
      {"aes:64-cbc-lmk", 64 * 16, true},
      {"aes-cbc-lmk", 32, true},
      {"aes-cbc-tcw", 32 + 16 + 16, true},
      {"serpent-cbc-tcw", 32 + 16 + 16, true},
      {"aes:4-cbc-tcw", 4 * 16 + 16 + 16, true},
  });
}

// The registry: AES-XTS-plain64 goes to the dedicated OpenSSL XTS engine, other AES specs to the
// OpenSSL chain modes, everything else to Crypto++; an XTS key with equal halves (which OpenSSL
// refuses) falls back to Crypto++ and still matches IEEE 1619 Vector 1.
TEST(EngineSelection, PrioritiesAndFallback) {
  auto key = test::deterministic_bytes(64, 210);
  auto x = make_sector_cipher(config("aes-xts-plain64"), key);
  ASSERT_TRUE(x);
  const bool ni = internal::aesni_available();
  EXPECT_STREQ((*x)->engine_name(), ni ? "aesni-xts" : "openssl-xts");
  auto s = make_sector_cipher(config("serpent-xts-plain64"), key);
  ASSERT_TRUE(s);
  EXPECT_STREQ((*s)->engine_name(), "cryptopp");
  auto c = make_sector_cipher(config("aes-cbc-essiv:sha256"), std::span(key).first(32));
  ASSERT_TRUE(c);
  EXPECT_STREQ((*c)->engine_name(), ni ? "aesni-cbc" : "openssl");
  auto cbc2 = make_sector_cipher(config("aes:2-cbc-plain64"), key);
  ASSERT_TRUE(cbc2);
  EXPECT_STREQ((*cbc2)->engine_name(), "openssl");  // multi-key: one unit at a time
  auto x192 = make_sector_cipher(config("aes-xts-plain64"), std::span(key).first(48));
  ASSERT_TRUE(x192);  // OpenSSL has no AES-192-XTS: both OpenSSL engines pass
  EXPECT_STREQ((*x192)->engine_name(), "cryptopp");

  // Equal XTS halves: OpenSSL refuses them (FIPS rule), Linux and the AES-NI engine do not; on a
  // CPU without AES-NI the registry falls back from openssl-xts to the generic engine.
  std::vector<std::byte> zero_key(32);
  auto layout = internal::key_layout(config("aes-xts-plain64").spec, 32);
  ASSERT_TRUE(layout);
  auto refused = internal::make_openssl_xts_cipher(config("aes-xts-plain64"), *layout, zero_key);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::kInvalid);
  auto v1 = make_sector_cipher(config("aes-xts-plain64"), zero_key);
  ASSERT_TRUE(v1) << v1.error().message();
  EXPECT_STRNE((*v1)->engine_name(), "openssl-xts");
  auto generic_v1 = make_generic(config("aes-xts-plain64"), zero_key);
  ASSERT_TRUE(generic_v1);
  const auto generic_ct = run_copy(*generic_v1, std::vector<std::byte>(512), 0, true);
  EXPECT_EQ(hex_of(std::span(generic_ct).first(32)),
            "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");
  auto ct = run_copy(**v1, std::vector<std::byte>(512), 0, true);
  EXPECT_EQ(hex_of(std::span(ct).first(32)),
            "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");
}

// The AES-NI XTS code has a VAES path (16 blocks per step) and an 8-block AES-NI path with a
// single-block tail; compare both with each other and with the generic engine on unit lengths
// that exercise every path (the tail only runs for lengths that are not multiples of 128).
TEST(EngineSelection, AesniXtsPathsAgree) {
  if (!internal::aesni_available()) GTEST_SKIP() << "no AES-NI on this CPU";
  for (std::size_t key_bytes : {32u, 64u}) {
    auto key = test::deterministic_bytes(key_bytes, key_bytes);
    internal::AesniXts vaes(key, true), sse(key, false);
    for (std::size_t len : {16u, 144u, 272u, 512u, 528u, 4096u}) {
      auto pt = test::deterministic_bytes(len, len);
      auto iv = test::deterministic_bytes(16, len + 1);
      auto a = pt, b = pt;
      vaes.encrypt(a.data(), a.size(), iv.data());
      sse.encrypt(b.data(), b.size(), iv.data());
      EXPECT_TRUE(a == b) << "len " << len << " vaes=" << vaes.uses_vaes();
      if (len % 512 == 0) {  // a whole sector: also against the Crypto++ XTS
        auto cfg = config("aes-xts-null", static_cast<std::uint32_t>(len));
        auto g = make_generic(cfg, key);
        ASSERT_TRUE(g);
        // aes-xts-null uses an all-zero IV: compare with a zero tweak input.
        auto z = pt;
        std::vector<std::byte> zero_iv(16);
        vaes.encrypt(z.data(), z.size(), zero_iv.data());
        EXPECT_TRUE(z == run_copy(*g, pt, 0, true)) << "len " << len;
      }
      vaes.decrypt(a.data(), a.size(), iv.data());
      sse.decrypt(b.data(), b.size(), iv.data());
      EXPECT_TRUE(a == pt && b == pt) << "len " << len;
    }
  }
}

// AES-NI CBC decryption, including lengths that reach its single-block tail, against AES-NI
// CBC encryption (itself checked against Crypto++, Python and cryptsetup elsewhere).
TEST(EngineSelection, AesniCbcDecryptTail) {
  if (!internal::aesni_available()) GTEST_SKIP() << "no AES-NI on this CPU";
  for (std::size_t key_bytes : {16u, 24u, 32u}) {
    auto key = test::deterministic_bytes(key_bytes, key_bytes);
    internal::AesniCbcEncryptor enc(key);
    internal::AesniCbcDecryptor dec(key);
    for (std::size_t len : {16u, 48u, 144u, 512u, 4096u}) {
      auto pt = test::deterministic_bytes(len, len);
      auto iv = test::deterministic_bytes(16, len + 1);
      auto buf = pt;
      std::byte* units[1] = {buf.data()};
      const std::byte* ivs[1] = {iv.data()};
      enc.encrypt(units, ivs, 1, len);
      EXPECT_FALSE(buf == pt);
      dec.decrypt(buf.data(), len, iv.data());
      EXPECT_TRUE(buf == pt) << "key " << key_bytes << " len " << len;
    }
  }
}

// Multi-lane AES-CBC encryption (8 units in lockstep) against the one-unit-at-a-time Crypto++
// engine: every key size, run lengths that are not multiples of the lane count, both sector
// sizes, a run starting above 2^32; decryption of the result.
TEST(EngineSelection, AesniCbcLanesMatchSingleUnitEngine) {
  for (std::size_t key_bytes : {16u, 24u, 32u}) {
    for (const char* spec : {"aes-cbc-essiv:sha256", "aes-cbc-plain64", "aes-cbc-benbi"}) {
      for (std::uint32_t ss : {512u, 4096u}) {
        for (std::size_t units : {1u, 7u, 8u, 9u, 21u}) {
          auto key = test::deterministic_bytes(key_bytes, key_bytes * 100000 + ss * 100 + units);
          auto cfg = config(spec, ss, 8);
          auto fast = make_sector_cipher(cfg, key);
          ASSERT_TRUE(fast);
          auto slow = make_generic(cfg, key);
          ASSERT_TRUE(slow);
          auto pt =
              test::deterministic_bytes(ss * units, key_bytes * 100000 + ss * 100 + units + 1);
          const std::uint64_t first = (1ULL << 32) - 3;
          auto ct = run_copy(**fast, pt, first, true);
          EXPECT_TRUE(ct == run_copy(*slow, pt, first, true))
              << spec << " key " << key_bytes << " ss " << ss << " units " << units << " "
              << (*fast)->engine_name();
          EXPECT_TRUE(run_copy(**fast, ct, first, false) == pt);
        }
      }
    }
  }
}

// LRW-32-AES vectors (IEEE P1619 drafts, as carried by LibTomCrypt lrw_test.c, with the
// expected tweak T). LibTomCrypt stores field elements bit-reflected (GCM style: x^0 is the MSB
// of byte 0); Linux lrw ("bbe": x^0 is the LSB of byte 15) stores the bit-reversed string. So a
// vector (K2, I, P, T, C) becomes, for Linux: K2' = rev(K2), I' = rev(I), T' = rev(T), and
// with input P' = P ^ T ^ T' the output must be C ^ T ^ T' (the block cipher sees P ^ T either
// way). The IVs I' are injected through plain64be/plain64 sector numbers.
std::vector<std::byte> rev128(const std::vector<std::byte>& v) {
  std::vector<std::byte> out(16);
  for (std::size_t i = 0; i < 16; ++i) {
    unsigned b = std::to_integer<unsigned>(v[15 - i]), r = 0;
    for (int k = 0; k < 8; ++k) r |= ((b >> k) & 1U) << (7 - k);
    out[i] = std::byte(static_cast<unsigned char>(r));
  }
  return out;
}

std::vector<std::byte> xor3(const std::vector<std::byte>& a, const std::vector<std::byte>& b,
                            const std::vector<std::byte>& c) {
  std::vector<std::byte> out(16);
  for (std::size_t i = 0; i < 16; ++i) out[i] = a[i] ^ b[i] ^ c[i];
  return out;
}

TEST(Lrw, P1619Vectors) {
  struct V {
    const char* key;
    const char* tweak_key;
    const char* iv_mode;  // how rev(I) is produced
    std::uint64_t sector;
    const char* t;
    const char* ct;
  } const vs[] = {
      {"4562ac25f828176d4c268414b5680185", "258e2a05e73e9d03ee5a830ccc094c87", "plain64be", 1,
       "258e2a05e73e9d03ee5a830ccc094c87", "f1b273cd65a3df5fe95d489254634eb8"},
      {"59704714f557478cd779e80f54887944", "3523c2dec5694fa872a9aca70b2beebc", "plain64be", 2,
       "1a91e16f62b4a7d43954d6538595f75e", "00c82bae95bbcde5274f0769b260e136"},
      {"59704714f557478cd779e80f54887944", "6753c90cb7d8cde506a047781aad8511", "plain64", 0x40,
       "1a91e16f62b4a7d43954d6538595f75e", "00c82bae95bbcde5274f0769b260e136"},
      {"d82a9134b26a565030fe69e2377f9847", "4eb55d3105973a3f5e23dafb5a45d6c0", "plain64",
       0x4000000000ULL, "18c91f6d601a1a375d0b0ef73ad574c4", "76322183ed8ff182f9596203690e5e01"},
  };
  for (const auto& v : vs) {
    auto key = hex(v.key);
    auto k2 = rev128(hex(v.tweak_key));
    key.insert(key.end(), k2.begin(), k2.end());
    auto c = make_sector_cipher(config(std::string("aes-lrw-") + v.iv_mode), key);
    ASSERT_TRUE(c) << c.error().message();
    const auto t = hex(v.t);
    const auto t_linux = rev128(t);
    const auto p_in = xor3(test::bytes_of("0123456789ABCDEF"), t, t_linux);
    std::vector<std::byte> unit(512);
    std::copy(p_in.begin(), p_in.end(), unit.begin());
    auto ct = run_copy(**c, unit, v.sector, true);
    const auto want = xor3(hex(v.ct), t, t_linux);
    EXPECT_EQ(hex_of(std::span(ct).first(16)), hex_of(want)) << v.key << " " << v.tweak_key;
    EXPECT_EQ(run_copy(**c, ct, v.sector, false), unit);
  }
}

// LRW tweaks across a unit follow T_j = K2 (x) (I + j); check block j against a one-block
// encryption with IV I + j, including a carry across the 64-bit boundary of the index.
TEST(Lrw, TweakIncrementMatchesDirectComputation) {
  auto key = test::deterministic_bytes(48, 437);  // AES-256 + 16-byte tweak key
  auto c = make_sector_cipher(config("aes-lrw-plain64be"), key);
  ASSERT_TRUE(c);
  auto pt = test::deterministic_bytes(512, 440);
  const std::uint64_t start = 0xFFFFFFFFFFFFFFF0ULL;  // index crosses 2^64 at block 16
  auto full = run_copy(**c, pt, start, true);
  // plain64be puts s in the low 64 bits; block j has index s + j (a 128-bit counter). For
  // blocks before the carry, the same block encrypted as block 0 of sector s + j must match.
  for (std::uint64_t j = 0; j < 16; ++j) {
    std::vector<std::byte> one(512);
    std::copy_n(pt.begin() + static_cast<std::ptrdiff_t>(16 * j), 16, one.begin());
    auto ct = run_copy(**c, one, start + j, true);
    EXPECT_EQ(hex_of(std::span(ct).first(16)), hex_of(std::span(full).subspan(16 * j, 16)))
        << "block " << j;
  }
}

// CAST-256 (cast6): RFC 2612 Appendix B; Serpent: NESSIE all-zero key.
TEST(BlockCipherKat, Cast6AndSerpent) {
  struct V {
    const char* spec;
    const char* key;
    const char* ct;
  } const vs[] = {
      {"cast6-ecb", "2342bb9efa38542c0af75647f29f615d", "c842a08972b43d20836c91d1b7530f6b"},
      {"cast6-ecb", "2342bb9efa38542cbed0ac83940ac298bac77a7717942863",
       "1b386c0210dcadcbdd0e41aa08a7a7e8"},
      {"cast6-ecb", "2342bb9efa38542cbed0ac83940ac2988d7c47ce264908461cc1b5137ae6b604",
       "4f6a2038286897b9c9870136553317fa"},
      {"serpent-ecb", "0000000000000000000000000000000000000000000000000000000000000000",
       "49672ba898d98df95019180445491089"},
  };
  for (const auto& v : vs) {
    auto c = make_sector_cipher(config(v.spec), hex(v.key));
    ASSERT_TRUE(c) << v.spec << ": " << c.error().message();
    auto ct = run_copy(**c, std::vector<std::byte>(512), 0, true);
    EXPECT_EQ(hex_of(std::span(ct).first(16)), v.ct) << v.spec << " " << v.key;
    EXPECT_EQ(hex_of(std::span(ct).subspan(496, 16)), v.ct);  // ECB: every block the same
  }
}

// The 64-bit block ciphers of TrueCrypt 1.x: CAST-128 (RFC 2144 B.1), 3DES (NIST SP 800-67
// Rev. 1 Appendix B, "The qufck brown fox jump" with keys 0123456789ABCDEF, 23456789ABCDEF01,
// 456789ABCDEF0123), Blowfish (Schneier's vectors, key 0 / pt 0 and key 3000000000000000 / pt
// 1000000000000001). blowfish_le is Blowfish with each 32-bit half of the block byte-reversed on
// the way in and out (docs/tcrypt.md §5), so its vectors are the published ones, halves reversed.
TEST(BlockCipherKat, TrueCryptSixtyFourBitCiphers) {
  struct V {
    const char* spec;
    const char* key;
    const char* pt;
    const char* ct;
  } const vs[] = {
      {"cast5-ecb", "0123456712345678234567893456789a", "0123456789abcdef", "238b4fe5847e44b2"},
      {"des3_ede-ecb", "0123456789abcdef23456789abcdef01456789abcdef0123", "5468652071756663",
       "a826fd8ce53b855f"},
      {"des3_ede-ecb", "0123456789abcdef23456789abcdef01456789abcdef0123", "6b2062726f776e20",
       "cce21c8112256fe6"},
      {"blowfish-ecb", "0000000000000000", "0000000000000000", "4ef997456198dd78"},
      {"blowfish-ecb", "3000000000000000", "1000000000000001", "7d856f9a613063f2"},
      {"blowfish_le-ecb", "0000000000000000", "0000000000000000", "4597f94e78dd9861"},
      {"blowfish_le-ecb", "3000000000000000", "0000001001000000", "9a6f857df2633061"},
  };
  for (const auto& v : vs) {
    auto c = make_sector_cipher(config(v.spec), hex(v.key));
    ASSERT_TRUE(c) << v.spec << ": " << c.error().message();
    std::vector<std::byte> pt;
    for (int i = 0; i < 64; ++i) {
      const auto b = hex(v.pt);
      pt.insert(pt.end(), b.begin(), b.end());
    }
    auto ct = run_copy(**c, pt, 0, true);
    EXPECT_EQ(hex_of(std::span(ct).first(8)), v.ct) << v.spec << " " << v.key;
    EXPECT_EQ(hex_of(std::span(ct).subspan(504, 8)), v.ct);  // ECB: every block the same
    EXPECT_EQ(run_copy(**c, ct, 0, false), pt);
  }
}

// cipher_null-ecb (cryptsetup's unencrypted keyslot/segment cipher): identity, empty key.
TEST(BlockCipherKat, CipherNullIsIdentity) {
  auto c = make_sector_cipher(config("cipher_null-ecb", 4096), std::span<const std::byte>{});
  ASSERT_TRUE(c) << c.error().message();
  auto pt = test::deterministic_bytes(4096 * 3, 482);
  EXPECT_EQ(run_copy(**c, pt, 5, true), pt);
  EXPECT_EQ(run_copy(**c, pt, 5, false), pt);
  EXPECT_FALSE(make_sector_cipher(config("cipher_null-ecb"), test::deterministic_bytes(16, 485)));
}

std::string iv_hex(const char* spec, std::span<const std::byte> key, std::uint64_t s) {
  auto sp = CipherSpec::parse(spec);
  EXPECT_TRUE(sp);
  auto layout = internal::key_layout(*sp, key.size());
  EXPECT_TRUE(layout);
  internal::IvGeneratorArgs args{
      &*sp, &*layout, key, key.first(layout->subkey_bytes), key.first(layout->cipher_key_bytes),
      512};
  auto g = internal::make_iv_generator(args);
  EXPECT_TRUE(g && *g);
  std::vector<std::byte> iv(layout->iv_size), unit(512);
  (*g)->generate(s, iv, unit, true);
  return hex_of(iv);
}

// docs/formats.md §3.4 / §7.3 IV KATs.
TEST(IvGenerator, FormatsKats) {
  auto key = test::iota_bytes(32);
  EXPECT_EQ(iv_hex("aes-cbc-essiv:sha256", key, 0), "a73d5fb0e4041090ca6dc1b820cdaf51");
  EXPECT_EQ(iv_hex("aes-cbc-essiv:sha256", key, 1), "59a0803f448bdf6d3d3de63feaccd58a");
  EXPECT_EQ(iv_hex("aes-cbc-benbi", key, 1), "00000000000000000000000000000021");
  const std::uint64_t s = (1ULL << 32) + 5;
  EXPECT_EQ(iv_hex("aes-cbc-plain", key, s), "05000000000000000000000000000000");
  EXPECT_EQ(iv_hex("aes-cbc-plain64", key, s), "05000000010000000000000000000000");
  EXPECT_EQ(iv_hex("aes-cbc-plain64be", key, s), "00000000000000000000000100000005");
  EXPECT_EQ(iv_hex("aes-cbc-null", key, s), "00000000000000000000000000000000");
  EXPECT_EQ(iv_hex("cast5-cbc-plain64", std::span(key).first(16), s), "0500000001000000");
  EXPECT_EQ(iv_hex("cast5-cbc-benbi", std::span(key).first(16), 1), "0000000000000041");
}

TEST(GenericCipherErrors, SpecAndKeyMismatches) {
  struct Bad {
    const char* spec;
    std::size_t key;
    std::uint32_t ss;
    Errc code;
    const char* names;
  } const cases[] = {
      {"cast5-xts-plain64", 32, 512, Errc::kUnsupported, "16-byte block"},
      {"blowfish-lrw-benbi", 32, 512, Errc::kUnsupported, "16-byte block"},
      {"cipher_null-cbc-plain", 0, 512, Errc::kUnsupported, "cipher_null"},
      {"aes:64-cbc-lmk", 64 * 32, 4096, Errc::kUnsupported, "512-byte"},
      {"aes-cbc-tcw", 32 + 32, 4096, Errc::kUnsupported, "512-byte"},
      {"aes-cbc-tcw", 20, 512, Errc::kInvalid, "key"},
      {"aes-cbc-essiv:sha512", 32, 512, Errc::kUnsupported, "ESSIV"},
      {"aes-cbc-essiv:sha1", 32, 512, Errc::kUnsupported, "ESSIV"},
      {"aes:4-cbc-plain64", 100, 512, Errc::kInvalid, "key"},
      {"aes-lrw-benbi", 32 + 4, 512, Errc::kInvalid, "LRW"},
      {"cast5-cbc-plain64", 17, 512, Errc::kInvalid, "cast5"},
      {"capi:cbc(aes)-random", 32, 512, Errc::kUnsupported, "random"},
      {"aes-xts-eboiv", 64, 512, Errc::kUnsupported, "eboiv"},
  };
  for (const auto& b : cases) {
    auto key = test::deterministic_bytes(b.key, b.key);
    auto r = make_sector_cipher(config(b.spec, b.ss), key);
    ASSERT_FALSE(r) << b.spec;
    EXPECT_EQ(r.error().code, b.code) << b.spec << ": " << r.error().message();
    EXPECT_NE(r.error().message().find(b.names), std::string::npos)
        << b.spec << ": " << r.error().message();
  }
}

// Generic contexts are per thread too: one cipher from many threads (TSan in CI).
TEST(GenericCipherConcurrency, OneCipherManyThreads) {
  const SpecCase specs[] = {{"serpent-cbc-essiv:sha256", 32, false},
                            {"aes:64-cbc-lmk", 65 * 32, true},
                            {"aes-cbc-tcw", 64, true}};
  for (const auto& sc : specs) {
    auto key = test::deterministic_bytes(sc.key_bytes, sc.key_bytes);
    auto c = make_sector_cipher(config(sc.spec), key);
    ASSERT_TRUE(c);
    auto pt = test::deterministic_bytes(512 * 8, sc.key_bytes + 1);
    std::vector<std::vector<std::byte>> expected;
    for (std::uint64_t i = 0; i < 8; ++i) expected.push_back(run_copy(**c, pt, i * 100, true));
    constexpr int kThreads = 36;
    std::vector<int> failures(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int it = 0; it < 20; ++it) {
          const auto i = static_cast<std::uint64_t>((t + it) % 8);
          auto buf = pt;
          if (!(*c)->encrypt(SectorRun{buf, {}, SectorIndex{i * 100}}) || buf != expected[i])
            ++failures[t];
          if (!(*c)->decrypt(SectorRun{buf, {}, SectorIndex{i * 100}}) || buf != pt) ++failures[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << sc.spec << " thread " << t;
  }
}

}  // namespace
}  // namespace cryptmap::crypto

// The SectorCipher contract (crypto/sector_cipher.h) as a typed test suite that every sector
// cipher backend instantiates: every sector of a multi-sector buffer round-trips; sectors are
// independent; the IV makes equal plaintext at different sectors differ, also above 2^32; one
// call over a run equals one call per sector; one cipher used from many threads gives the bytes
// one thread gets; the caller's key copy may be wiped; a buffer that is not whole sectors (or
// carries metadata the cipher has none of) is refused with kInvalid; encrypting out of place
// (encrypt_from) gives what encrypting in place gives.
//
// A backend's test file instantiates it with a backend type:
//
//   struct MyBackend {
//     static constexpr const char* kSpec = "aes-xts-plain64";  // a spec the backend serves
//     static constexpr std::size_t kKeyBytes = 64;
//     static constexpr const char* kEngine = "my-engine";      // what engine_name() reports
//     // "" when the backend runs here; otherwise why not (the tests skip with it).
//     static std::string unavailable();
//     // The backend itself, keyed for `config` (never the registry's choice).
//     static Result<std::unique_ptr<SectorCipher>> make(const SectorCipherConfig& config,
//                                                       std::span<const std::byte> key);
//   };
//   INSTANTIATE_TYPED_TEST_SUITE_P(My, SectorCipherContract, ::testing::Types<MyBackend>);
//
// Known answers and cross-checks against independent implementations stay in the backend's own
// tests (a round trip through a wrong cipher still round-trips).
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "crypto/sector_cipher.h"
#include "tests/support/data.h"

namespace cryptmap::crypto::contract {

inline std::span<const std::byte> sector_of(const std::vector<std::byte>& buf, std::uint32_t ss,
                                            std::size_t k) {
  return std::span(buf).subspan(k * ss, ss);
}

inline bool same(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

template <class Backend>
class SectorCipherContract : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = Backend::unavailable();
    if (!why.empty()) GTEST_SKIP() << Backend::kEngine << " unavailable: " << why;
  }

  static SectorCipherConfig config(std::uint32_t sector_size, std::uint64_t iv_offset = 0) {
    SectorCipherConfig c;
    auto spec = CipherSpec::parse(Backend::kSpec);
    EXPECT_TRUE(spec) << Backend::kSpec;
    if (spec) c.spec = *spec;
    c.sector_size = sector_size;
    c.iv_offset = iv_offset;
    return c;
  }

  // A keyed cipher that reports this backend's engine name and the sector size; nullptr (after a
  // failure) otherwise.
  static std::unique_ptr<SectorCipher> make(std::uint32_t sector_size,
                                            std::span<const std::byte> key,
                                            std::uint64_t iv_offset = 0) {
    auto r = Backend::make(config(sector_size, iv_offset), key);
    EXPECT_TRUE(r) << Backend::kSpec << ": " << (r ? "" : r.error().message());
    if (!r) return nullptr;
    EXPECT_STREQ((*r)->engine_name(), Backend::kEngine);
    EXPECT_EQ((*r)->sector_size(), sector_size);
    EXPECT_EQ((*r)->meta_bytes_per_sector(), 0u);
    return std::move(*r);
  }

  static std::vector<std::byte> key(std::uint64_t seed = 1) {
    return test::deterministic_bytes(Backend::kKeyBytes, seed);
  }

  static std::vector<std::byte> crypt(const SectorCipher& c, std::vector<std::byte> data,
                                      std::uint64_t first, bool encrypt) {
    const SectorRun run{data, {}, SectorIndex{first}};
    auto r = encrypt ? c.encrypt(run) : c.decrypt(run);
    EXPECT_TRUE(r) << (r ? "" : r.error().message());
    return data;
  }
};

TYPED_TEST_SUITE_P(SectorCipherContract);

TYPED_TEST_P(SectorCipherContract, RoundTripsEverySectorOfAMultiSectorBuffer) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    const auto pt = test::deterministic_bytes(std::size_t{ss} * 9, ss);
    const auto ct = this->crypt(*c, pt, 1000, true);
    for (std::size_t k = 0; k < 9; ++k)
      EXPECT_FALSE(same(sector_of(ct, ss, k), sector_of(pt, ss, k)))
          << "sector " << k << " left in the clear, ss " << ss;
    EXPECT_TRUE(this->crypt(*c, ct, 1000, false) == pt) << "ss " << ss;
  }
}

TYPED_TEST_P(SectorCipherContract, ChangingOneCiphertextSectorChangesOnlyThatSectorsPlaintext) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    const auto pt = test::deterministic_bytes(std::size_t{ss} * 8, ss + 1);
    auto ct = this->crypt(*c, pt, 0, true);
    ct[3 * ss + ss / 2] ^= std::byte{0x01};
    const auto back = this->crypt(*c, ct, 0, false);
    for (std::size_t k = 0; k < 8; ++k) {
      if (k == 3)
        EXPECT_FALSE(same(sector_of(back, ss, k), sector_of(pt, ss, k))) << "ss " << ss;
      else
        EXPECT_TRUE(same(sector_of(back, ss, k), sector_of(pt, ss, k)))
            << "sector " << k << " changed by a change to sector 3, ss " << ss;
    }
  }
}

TYPED_TEST_P(SectorCipherContract, EqualPlaintextAtDifferentSectorsEncryptsDifferently) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    const auto one = test::deterministic_bytes(ss, 7);
    std::vector<std::byte> pt;
    for (int k = 0; k < 6; ++k) pt.insert(pt.end(), one.begin(), one.end());
    const auto ct = this->crypt(*c, pt, 40, true);
    for (std::size_t a = 0; a < 6; ++a)
      for (std::size_t b = a + 1; b < 6; ++b)
        EXPECT_FALSE(same(sector_of(ct, ss, a), sector_of(ct, ss, b)))
            << "sectors " << 40 + a << " and " << 40 + b << ", ss " << ss;
    // The IV offset shifts the IVs: same sector index, different ciphertext.
    auto shifted = this->make(ss, this->key(), 8 * 64);
    ASSERT_TRUE(shifted);
    EXPECT_FALSE(this->crypt(*shifted, one, 40, true) == this->crypt(*c, one, 40, true));
  }
}

TYPED_TEST_P(SectorCipherContract, SectorNumbersAbove2To32KeepTheirHighBits) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    const auto one = test::deterministic_bytes(ss, 9);
    const std::uint64_t high = (1ULL << 32) + 5;
    EXPECT_FALSE(this->crypt(*c, one, high, true) == this->crypt(*c, one, 5, true)) << ss;
    EXPECT_FALSE(this->crypt(*c, one, 1ULL << 40, true) == this->crypt(*c, one, 0, true)) << ss;
    // A run that crosses 2^32 round-trips and equals its sectors one by one.
    const auto pt = test::deterministic_bytes(std::size_t{ss} * 4, 10);
    const std::uint64_t first = (1ULL << 32) - 2;
    const auto ct = this->crypt(*c, pt, first, true);
    for (std::size_t k = 0; k < 4; ++k) {
      const std::vector<std::byte> in(sector_of(pt, ss, k).begin(), sector_of(pt, ss, k).end());
      EXPECT_TRUE(same(this->crypt(*c, in, first + k, true), sector_of(ct, ss, k)))
          << "sector 2^32 " << static_cast<std::int64_t>(k) - 2 << ", ss " << ss;
    }
    EXPECT_TRUE(this->crypt(*c, ct, first, false) == pt) << ss;
  }
}

TYPED_TEST_P(SectorCipherContract, OneCallOverARunEqualsOneCallPerSector) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    constexpr std::size_t kSectors = 21;  // not a multiple of any lane count
    const auto pt = test::deterministic_bytes(std::size_t{ss} * kSectors, ss + 2);
    const std::uint64_t first = 123456;
    const auto whole = this->crypt(*c, pt, first, true);
    std::vector<std::byte> pieces;
    // Runs of 1, 2, 3, 4, 5 and 6 sectors.
    for (std::size_t k = 0, len = 1; k < kSectors; k += len, ++len) {
      const auto part = pt.begin() + static_cast<std::ptrdiff_t>(k * ss);
      const std::vector<std::byte> in(part, part + static_cast<std::ptrdiff_t>(len * ss));
      const auto out = this->crypt(*c, in, first + k, true);
      pieces.insert(pieces.end(), out.begin(), out.end());
    }
    EXPECT_TRUE(pieces == whole) << "encrypt, ss " << ss;
    std::vector<std::byte> back;
    for (std::size_t k = 0; k < kSectors; ++k) {
      const std::vector<std::byte> in(sector_of(whole, ss, k).begin(),
                                      sector_of(whole, ss, k).end());
      const auto out = this->crypt(*c, in, first + k, false);
      back.insert(back.end(), out.begin(), out.end());
    }
    EXPECT_TRUE(back == pt) << "decrypt, ss " << ss;
    EXPECT_TRUE(this->crypt(*c, whole, first, false) == pt) << "ss " << ss;
  }
}

// More threads than the context pool has slots, so the temporary-context path runs too. Each
// thread checks against answers computed on one thread. Run under TSan in CI.
TYPED_TEST_P(SectorCipherContract, OneCipherUsedFromManyThreadsGivesTheSameBytes) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    const auto pt = test::deterministic_bytes(std::size_t{ss} * 8, ss + 3);
    std::vector<std::vector<std::byte>> expected;
    for (std::uint64_t i = 0; i < 16; ++i) expected.push_back(this->crypt(*c, pt, i * 1000, true));
    constexpr int kThreads = 40;
    std::vector<int> failures(kThreads, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int iter = 0; iter < 50; ++iter) {
          const auto idx = static_cast<std::uint64_t>((t + iter) % 16);
          auto buf = pt;
          if (!c->encrypt(SectorRun{buf, {}, SectorIndex{idx * 1000}}) || buf != expected[idx])
            ++failures[t];
          if (!c->decrypt(SectorRun{buf, {}, SectorIndex{idx * 1000}}) || buf != pt) ++failures[t];
        }
      });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << "thread " << t << ", ss " << ss;
  }
}

TYPED_TEST_P(SectorCipherContract, KeepsItsOwnCopyOfTheKey) {
  auto key = this->key(5);
  auto c = this->make(512, key);
  ASSERT_TRUE(c);
  const auto pt = test::deterministic_bytes(512 * 2, 11);
  const auto before = this->crypt(*c, pt, 3, true);
  const auto key_copy = key;
  std::fill(key.begin(), key.end(), std::byte{0});  // the caller wipes its copy
  EXPECT_TRUE(this->crypt(*c, pt, 3, true) == before);
  auto again = this->make(512, key_copy);
  ASSERT_TRUE(again);
  EXPECT_TRUE(this->crypt(*again, pt, 3, true) == before);
}

TYPED_TEST_P(SectorCipherContract, RefusesABufferThatIsNotWholeSectors) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    for (std::size_t len : {std::size_t{ss} * 3 / 2, std::size_t{ss} - 16, std::size_t{1}}) {
      std::vector<std::byte> ragged(len);
      auto e = c->encrypt(SectorRun{ragged, {}, SectorIndex{0}});
      ASSERT_FALSE(e) << len;
      EXPECT_EQ(e.error().code, Errc::kInvalid) << len;
      auto d = c->decrypt(SectorRun{ragged, {}, SectorIndex{0}});
      ASSERT_FALSE(d) << len;
      EXPECT_EQ(d.error().code, Errc::kInvalid) << len;
    }
    std::vector<std::byte> data(ss), meta(16);
    auto m = c->encrypt(SectorRun{data, meta, SectorIndex{0}});  // no metadata in these ciphers
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code, Errc::kInvalid);
    EXPECT_TRUE(c->encrypt(SectorRun{{}, {}, SectorIndex{0}}));  // an empty run is fine
    EXPECT_TRUE(c->decrypt(SectorRun{{}, {}, SectorIndex{0}}));
  }
}

// encrypt_from: the ciphertext encrypt() gives in place, written out of place, over runs of
// several lengths at several alignments of the source, and the source unchanged; a destination
// of another size is refused with kInvalid and the source is still not touched.
TYPED_TEST_P(SectorCipherContract, EncryptFromEqualsEncryptInPlace) {
  for (std::uint32_t ss : {512u, 4096u}) {
    auto c = this->make(ss, this->key());
    ASSERT_TRUE(c);
    for (std::size_t sectors : {std::size_t{1}, std::size_t{3}, std::size_t{17}}) {
      for (std::size_t skew : {std::size_t{0}, std::size_t{1}, std::size_t{16}}) {
        const auto pt = test::deterministic_bytes(ss * sectors + skew, ss + sectors + skew);
        const std::span<const std::byte> plain = std::span(pt).subspan(skew);
        const std::uint64_t first = (std::uint64_t{1} << 32) - 1;
        const std::vector<std::byte> in_place =
            this->crypt(*c, std::vector<std::byte>(plain.begin(), plain.end()), first, true);
        std::vector<std::byte> out(plain.size(), std::byte{0x5a});
        ASSERT_TRUE(c->encrypt_from(plain, SectorRun{out, {}, SectorIndex{first}}));
        EXPECT_TRUE(out == in_place) << "ss " << ss << ", " << sectors << " sectors, skew " << skew;
        EXPECT_TRUE(pt == test::deterministic_bytes(pt.size(), ss + sectors + skew))
            << "the source changed";
      }
    }
    const auto pt = test::deterministic_bytes(2 * ss, 9);
    std::vector<std::byte> small(ss);
    auto e = c->encrypt_from(pt, SectorRun{small, {}, SectorIndex{0}});
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, Errc::kInvalid);
  }
}

REGISTER_TYPED_TEST_SUITE_P(SectorCipherContract, RoundTripsEverySectorOfAMultiSectorBuffer,
                            ChangingOneCiphertextSectorChangesOnlyThatSectorsPlaintext,
                            EqualPlaintextAtDifferentSectorsEncryptsDifferently,
                            SectorNumbersAbove2To32KeepTheirHighBits,
                            OneCallOverARunEqualsOneCallPerSector,
                            OneCipherUsedFromManyThreadsGivesTheSameBytes, KeepsItsOwnCopyOfTheKey,
                            RefusesABufferThatIsNotWholeSectors, EncryptFromEqualsEncryptInPlace);

}  // namespace cryptmap::crypto::contract

// Interop with real cryptsetup (docs/formats.md §7.1): cryptsetup's offline reencryption runs its
// own userspace crypto, so it can encrypt and decrypt real data without device-mapper.
//   cryptsetup -> cryptmap: `reencrypt --encrypt` a known pattern with a detached LUKS2 header,
//     read the volume key with `luksDump --dump-volume-key`, decrypt with make_sector_cipher().
//   cryptmap -> cryptsetup: encrypt another pattern with make_sector_cipher(), then
//     `reencrypt --decrypt` must leave exactly that pattern.
// Every spec cryptsetup 2.6.1 can process in userspace here (OpenSSL backend, no AF_ALG) is
// covered; the others (serpent, twofish, ...) need the kernel crypto API and are cross-checked
// against libgcrypt in crypto_test instead.
#include <gtest/gtest.h>

#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "crypto/sector_cipher.h"
#include "tests/support/data.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"

namespace cryptmap::crypto {
namespace {

struct Case {
  const char* spec;
  unsigned key_bits;
  std::uint32_t sector_size;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.spec << " " << c.key_bits << "-bit key, " << c.sector_size << "-byte sectors";
}

std::string name_of(const testing::TestParamInfo<Case>& info) {
  std::string n = std::string(info.param.spec) + "_" + std::to_string(info.param.key_bits) + "_" +
                  std::to_string(info.param.sector_size);
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

class CryptsetupInteropTest : public testing::TestWithParam<Case> {};

std::vector<std::byte> parse_volume_key(const std::string& dump) {
  const auto pos = dump.find("MK dump:");
  if (pos == std::string::npos) return {};
  std::string hex;
  std::istringstream in(dump.substr(pos + 8));
  std::string tok;
  while (in >> tok) {
    if (tok.size() != 2 || !std::isxdigit(static_cast<unsigned char>(tok[0])) ||
        !std::isxdigit(static_cast<unsigned char>(tok[1])))
      break;
    hex += tok;
  }
  return test::hex(hex);
}

TEST_P(CryptsetupInteropTest, BothDirections) {
  const Case c = GetParam();
  // Not a skip: label "interop" promises real cryptsetup.
  const test::Tool cryptsetup = test::find_tool("cryptsetup", "cryptsetup-bin");
  ASSERT_TRUE(cryptsetup) << "cryptsetup is required for interop tests: " << cryptsetup.missing;
  test::TempDir dir("cryptmap-crypto-interop");
  const std::string img = dir.file("img"), hdr = dir.file("hdr"), key = dir.file("key");
  const auto plain = test::deterministic_bytes(2 << 20, c.key_bits + c.sector_size);
  test::write_file(img, plain);
  test::write_file(key, test::deterministic_bytes(32, c.key_bits + c.sector_size + 1));
  const std::string common = " --batch-mode --key-file '" + key + "' ";
  const std::string enc_cmd =
      "cryptsetup reencrypt --encrypt --type luks2 --header '" + hdr + "' --cipher " + c.spec +
      " --key-size " + std::to_string(c.key_bits) + " --sector-size " +
      std::to_string(c.sector_size) +
      " --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --force-offline-reencrypt" + common + "'" +
      img + "'";
  test::RunResult r = test::run(enc_cmd);
  ASSERT_EQ(r.status, 0) << enc_cmd << "\n" << r.out << r.err;
  r = test::run("cryptsetup luksDump --dump-volume-key" + common + "'" + hdr + "'");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const auto vk = parse_volume_key(r.out);
  ASSERT_EQ(vk.size(), c.key_bits / 8) << r.out;

  SectorCipherConfig cfg;
  auto spec = CipherSpec::parse(c.spec);
  ASSERT_TRUE(spec);
  cfg.spec = *spec;
  cfg.sector_size = c.sector_size;  // LUKS2: iv_tweak 0, IVs in 512-byte units
  auto cipher = make_sector_cipher(cfg, vk);
  ASSERT_TRUE(cipher) << cipher.error().message();

  // cryptsetup -> cryptmap
  auto data = test::read_file(img);
  ASSERT_EQ(data.size(), plain.size());
  ASSERT_NE(data, plain);
  ASSERT_TRUE((*cipher)->decrypt(SectorRun{data, {}, SectorIndex{0}}));
  std::size_t bad = 0;
  for (std::size_t s = 0; s < data.size() / c.sector_size; ++s)
    if (!std::equal(data.begin() + static_cast<std::ptrdiff_t>(s * c.sector_size),
                    data.begin() + static_cast<std::ptrdiff_t>((s + 1) * c.sector_size),
                    plain.begin() + static_cast<std::ptrdiff_t>(s * c.sector_size)))
      ++bad;
  EXPECT_EQ(bad, 0u) << "sectors cryptmap failed to decrypt, of " << data.size() / c.sector_size
                     << " (" << (*cipher)->engine_name() << ")";

  // cryptmap -> cryptsetup
  const auto plain2 = test::deterministic_bytes(2 << 20, 7 * c.key_bits + c.sector_size + 1);
  auto ct = plain2;
  ASSERT_TRUE((*cipher)->encrypt(SectorRun{ct, {}, SectorIndex{0}}));
  test::write_file(img, ct);
  const std::string dec_cmd = "cryptsetup reencrypt --decrypt --header '" + hdr +
                              "' --force-offline-reencrypt" + common + "'" + img + "'";
  r = test::run(dec_cmd);
  ASSERT_EQ(r.status, 0) << dec_cmd << "\n" << r.out << r.err;
  EXPECT_TRUE(test::read_file(img) == plain2)
      << "cryptsetup did not decrypt cryptmap's ciphertext back to the pattern";
}

INSTANTIATE_TEST_SUITE_P(
    Specs, CryptsetupInteropTest,
    testing::Values(Case{"aes-xts-plain64", 512, 512}, Case{"aes-xts-plain64", 512, 4096},
                    Case{"aes-xts-plain64", 256, 4096}, Case{"aes-xts-plain64", 256, 1024},
                    Case{"aes-xts-plain", 512, 512}, Case{"aes-xts-plain64be", 512, 2048},
                    Case{"aes-cbc-essiv:sha256", 256, 4096}, Case{"aes-cbc-essiv:sha256", 128, 512},
                    Case{"aes-xts-essiv:sha256", 512, 4096}, Case{"aes-cbc-plain64", 256, 512},
                    Case{"aes-cbc-plain", 192, 4096}, Case{"aes-cbc-benbi", 256, 512},
                    Case{"aes-cbc-eboiv", 256, 4096}, Case{"aes-cbc-null", 256, 512},
                    Case{"aes-ctr-plain64", 256, 512}, Case{"aes-ecb", 256, 4096}),
    name_of);

}  // namespace
}  // namespace cryptmap::crypto

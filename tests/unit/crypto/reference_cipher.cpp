#include "tests/unit/crypto/reference_cipher.h"

#include <gtest/gtest.h>

#include <string>

#include "base/bytes.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tools.h"

namespace cryptmap::test {
namespace {

// reference_cipher.py's arguments after the spec (the same on its command line and in a batch).
std::string job_args(const crypto::SectorCipherConfig& config, std::span<const std::byte> key,
                     std::uint64_t first, bool encrypt, const std::string& in,
                     const std::string& out) {
  // Appended piece by piece: `" " + std::string(...)` trips GCC 12's false -Wrestrict at -O3.
  std::string a = " ";
  a += to_hex(key);
  a += ' ';
  a += std::to_string(config.sector_size);
  a += config.iv_large_sectors ? " 1 " : " 0 ";
  a += std::to_string(config.iv_offset);
  a += ' ';
  a += std::to_string(first);
  a += encrypt ? " enc " : " dec ";
  a += in;
  a += ' ';
  a += out;
  return a;
}

const std::string kScript =
    std::string("python3 ") + CRYPTMAP_CRYPTO_TEST_DIR + "/reference_cipher.py ";

}  // namespace

std::vector<std::byte> reference_crypt(const crypto::SectorCipherConfig& config,
                                       std::span<const std::byte> key, std::uint64_t first,
                                       std::span<const std::byte> data, bool encrypt) {
  TempDir dir("cryptmap-crypto-test");
  write_file(dir.file("in"), data);
  const std::string cmd = kScript + "'" + config.spec.to_string() + "'" +
                          job_args(config, key, first, encrypt, dir.file("in"), dir.file("out"));
  const RunResult r = run(cmd);
  EXPECT_EQ(r.status, 0) << cmd << "\n" << r.out << r.err;
  if (r.status != 0) return {};
  return read_file(dir.file("out"));
}

void reference_batch(std::vector<ReferenceJob>& jobs) {
  TempDir dir("cryptmap-crypto-test");
  std::string lines;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const auto& j = jobs[i];
    const std::string in = dir.file("in" + std::to_string(i));
    write_file(in, j.input);
    lines +=
        j.config.spec.to_string() +
        job_args(j.config, j.key, j.first, j.encrypt, in, dir.file("out" + std::to_string(i))) +
        "\n";
  }
  const std::string jobs_file = dir.write("jobs", lines);
  const std::string cmd = kScript + "--batch " + jobs_file;
  const RunResult r = run(cmd);
  ASSERT_EQ(r.status, 0) << cmd << "\n" << r.out << r.err;
  for (std::size_t i = 0; i < jobs.size(); ++i)
    jobs[i].output = read_file(dir.file("out" + std::to_string(i)));
}

}  // namespace cryptmap::test

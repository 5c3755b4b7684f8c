#include "test_util.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "base/bytes.h"
#include "crypto/random.h"

namespace cryptmap::crypto::test {

std::vector<std::byte> hex(std::string_view h) {
  auto r = from_hex(h);
  if (!r) {
    ADD_FAILURE() << "bad hex in test: " << h;
    return {};
  }
  return *r;
}

std::string hex_of(std::span<const std::byte> b) { return to_hex(b); }

std::vector<std::byte> bytes_of(std::string_view s) {
  auto b = as_bytes(s);
  return {b.begin(), b.end()};
}

std::vector<std::byte> iota_bytes(std::size_t n, unsigned start) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<unsigned char>(start + i));
  return v;
}

std::vector<std::byte> random_vec(std::size_t n) {
  std::vector<std::byte> v(n);
  EXPECT_TRUE(random_bytes(v));
  return v;
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/cryptmap-crypto-test.XXXXXX";
  const char* d = mkdtemp(tmpl);
  if (d == nullptr) std::abort();
  dir_ = d;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void write_file(const std::string& path, std::span<const std::byte> data) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::vector<std::byte> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  for (std::size_t i = 0; i < c.size(); ++i) out[i] = std::byte(static_cast<unsigned char>(c[i]));
  return out;
}

int run(const std::string& cmd, std::string* out) {
  std::string full = cmd + " 2>&1";
  FILE* p = popen(full.c_str(), "r");
  if (p == nullptr) return -1;
  std::string text;
  char buf[4096];
  std::size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int st = pclose(p);
  if (out != nullptr) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::vector<std::byte> reference_crypt(const SectorCipherConfig& config,
                                       std::span<const std::byte> key, std::uint64_t first,
                                       std::span<const std::byte> data, bool encrypt) {
  TempDir dir;
  write_file(dir.path("in"), data);
  const std::string cmd = std::string("python3 ") + CRYPTMAP_CRYPTO_TEST_DIR +
                          "/reference_cipher.py '" + config.spec.to_string() + "' " +
                          to_hex(key) + " " + std::to_string(config.sector_size) + " " +
                          (config.iv_large_sectors ? "1 " : "0 ") +
                          std::to_string(config.iv_offset) + " " + std::to_string(first) +
                          (encrypt ? " enc " : " dec ") + dir.path("in") + " " + dir.path("out");
  std::string output;
  const int rc = run(cmd, &output);
  EXPECT_EQ(rc, 0) << cmd << "\n" << output;
  return read_file(dir.path("out"));
}

void reference_batch(std::vector<ReferenceJob>& jobs) {
  TempDir dir;
  std::string lines;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const auto& j = jobs[i];
    const std::string in = dir.path("in" + std::to_string(i));
    write_file(in, j.input);
    lines += j.config.spec.to_string() + " " + to_hex(j.key) + " " + std::to_string(j.config.sector_size) + " " +
             (j.config.iv_large_sectors ? "1 " : "0 ") + std::to_string(j.config.iv_offset) +
             " " + std::to_string(j.first) + (j.encrypt ? " enc " : " dec ") + in + " " +
             dir.path("out" + std::to_string(i)) + "\n";
  }
  const std::string jobs_file = dir.path("jobs");
  write_file(jobs_file, as_bytes(lines));
  std::string output;
  const std::string cmd = std::string("python3 ") + CRYPTMAP_CRYPTO_TEST_DIR +
                          "/reference_cipher.py --batch " + jobs_file;
  ASSERT_EQ(run(cmd, &output), 0) << cmd << "\n" << output;
  for (std::size_t i = 0; i < jobs.size(); ++i)
    jobs[i].output = read_file(dir.path("out" + std::to_string(i)));
}

}  // namespace cryptmap::crypto::test

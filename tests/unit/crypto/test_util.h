// Helpers for the crypto unit tests: hex, deterministic bytes, and running the independent
// Python reference (reference_cipher.py, python3-cryptography) on files in a temp directory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/sector_cipher.h"

namespace cryptmap::crypto::test {

std::vector<std::byte> hex(std::string_view h);  // aborts the test on bad hex
std::string hex_of(std::span<const std::byte> b);
std::vector<std::byte> bytes_of(std::string_view s);
std::vector<std::byte> iota_bytes(std::size_t n, unsigned start = 0);  // 00 01 02 ...
std::vector<std::byte> random_vec(std::size_t n);                      // getrandom

// A fresh directory under /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string path(std::string_view name) const { return dir_ + "/" + std::string(name); }

 private:
  std::string dir_;
};

void write_file(const std::string& path, std::span<const std::byte> data);
std::vector<std::byte> read_file(const std::string& path);
// Runs a shell command; returns its exit status (and its combined output in *out if given).
int run(const std::string& cmd, std::string* out = nullptr);

// Encrypts/decrypts `data` with the independent Python implementation.
struct ReferenceJob {
  SectorCipherConfig config;
  std::vector<std::byte> key;
  std::uint64_t first = 0;
  std::vector<std::byte> input;
  bool encrypt = true;
  std::vector<std::byte> output;  // filled by reference_batch
};
// Runs every job in one Python process (start-up dominates otherwise).
void reference_batch(std::vector<ReferenceJob>& jobs);
std::vector<std::byte> reference_crypt(const SectorCipherConfig& config,
                                       std::span<const std::byte> key, std::uint64_t first,
                                       std::span<const std::byte> data, bool encrypt);

}  // namespace cryptmap::crypto::test

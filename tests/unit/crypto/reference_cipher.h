// The independent reference for sector ciphers: reference_cipher.py (python3-cryptography and
// libgcrypt) run on files in a temp directory. Generic helpers live in tests/support/.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "crypto/sector_cipher.h"

namespace cryptmap::test {

// Encrypts/decrypts `input` with the independent Python implementation.
struct ReferenceJob {
  crypto::SectorCipherConfig config;
  std::vector<std::byte> key;
  std::uint64_t first = 0;
  std::vector<std::byte> input;
  bool encrypt = true;
  std::vector<std::byte> output;  // filled by reference_batch
};

// Runs every job in one Python process (start-up dominates otherwise). Failures are test failures.
void reference_batch(std::vector<ReferenceJob>& jobs);
std::vector<std::byte> reference_crypt(const crypto::SectorCipherConfig& config,
                                       std::span<const std::byte> key, std::uint64_t first,
                                       std::span<const std::byte> data, bool encrypt);

}  // namespace cryptmap::test

// Helpers for the zone unit tests: a scratch directory and deterministic data.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryptmap::volume::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at destruction.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/cryptmap-zone-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
    }
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Deterministic bytes: a function of (absolute offset, seed), so any range can be re-derived.
inline std::vector<std::byte> pattern(std::uint64_t offset, std::size_t len, std::uint32_t seed) {
  std::vector<std::byte> v(len);
  for (std::size_t i = 0; i < len; ++i) {
    std::uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull + seed;
    x ^= x >> 29;
    v[i] = std::byte(static_cast<std::uint8_t>(x | 1));  // never zero: zeros mean "unwritten"
  }
  return v;
}

inline bool all_zero(const std::vector<std::byte>& v) {
  for (std::byte b : v) {
    if (b != std::byte{0}) return false;
  }
  return true;
}

// gtest printing of a failed Result.
template <class T>
std::string describe(const Result<T>& r) {
  return r ? std::string("ok")
           : std::string(errc_name(r.error().code)) + ": " + r.error().message();
}

}  // namespace cryptmap::volume::testing

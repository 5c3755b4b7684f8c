// TempDir: a fresh directory under $TMPDIR (or /tmp), removed with everything in it when the
// object is destroyed. Creation failure is a test failure (ADD_FAILURE) and leaves path() empty.
// Plus whole-file read/write for the files tests put there.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace cryptmap::test {

class TempDir {
 public:
  // The directory is named "<prefix>.XXXXXX"; pick a prefix that tells whose leftovers these are.
  explicit TempDir(std::string_view prefix = "cryptmap-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const;  // path() + "/" + name (not created)
  // Writes `content` to file(name), replacing it; returns file(name).
  std::string write(std::string_view name, std::string_view content) const;
  // Creates (or resizes) file(name) as a sparse file of `size` bytes; returns file(name).
  std::string sized_file(std::string_view name, std::uint64_t size) const;

 private:
  std::string path_;
};

// Whole-file I/O; a failure is a test failure (ADD_FAILURE). read_file of a missing file is {}.
std::vector<std::byte> read_file(const std::string& path);
void write_file(const std::string& path, std::span<const std::byte> data);

}  // namespace cryptmap::test

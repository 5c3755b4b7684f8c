// Private to volume/zone: positional I/O helpers shared by the zoned stores. Errors name the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/units.h"

namespace cryptmap::volume::zone_internal {

// An error from a failed syscall with the path in the detail (truncated to fit).
Error path_error(int err, const char* what, std::uint64_t object, const std::string& path);
// pread/pwrite the whole span (retrying EINTR and short transfers). A read hitting end of file is
// kIo naming the path.
Result<void> pread_all(int fd, ByteOffset off, std::span<std::byte> out, const std::string& path);
Result<void> pwrite_all(int fd, ByteOffset off, std::span<const std::byte> in,
                        const std::string& path);
// Makes [off, off + len) read as zeros: punch a hole, else FALLOC_FL_ZERO_RANGE, else (only when
// `must`) write zeros. Returns whether the range now reads as zeros: false only when must == false
// and the file system supports neither fallocate mode (not an error for the caller to report).
Result<bool> zero_file_range(int fd, ByteOffset off, std::uint64_t len_bytes, bool must,
                             const std::string& path);
// Whole small file into memory; kNotFound when absent, kCorrupt naming the file when larger than
// max_bytes.
Result<std::vector<std::byte>> read_small_file(const std::string& path, std::size_t max_bytes);
// Replaces `path` atomically and durably: write path.tmp, fsync, rename over path, fsync the dir.
Result<void> write_file_atomic(const std::string& path, std::span<const std::byte> bytes);

}  // namespace cryptmap::volume::zone_internal

// Private to volume/zone: the sidecar's small-file I/O (the image's I/O is its PosixBackingStore's;
// both loop through base/posix_io.h). Errors name the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace cryptmap::volume::zone_internal {

// Whole small file into memory; kNotFound when absent, kCorrupt naming the file when larger than
// max_bytes.
Result<std::vector<std::byte>> read_small_file(const std::string& path, std::size_t max_bytes);
// Replaces `path` atomically and durably: write path.tmp, fsync, rename over path, fsync the dir.
Result<void> write_file_atomic(const std::string& path, std::span<const std::byte> bytes);

}  // namespace cryptmap::volume::zone_internal

// A Volume that refuses writes into one protected range: TCRYPT hidden-volume protection
// (docs/tcrypt.md §8). The first write or discard that touches the range is refused with
// kReadOnly and, as VeraCrypt does, every later write too, until the volume is closed: the outer
// file system has just tried to overwrite the hidden volume, so nothing it writes can be trusted
// to stay clear of it. Reads and everything else pass through. Thread-safe as the wrapped volume.
#pragma once

#include <cstdint>
#include <memory>

#include "volume/volume.h"

namespace cryptmap::volume {

// Wraps `inner`; [offset, offset + size) is in volume bytes. `logger` may be null.
std::unique_ptr<Volume> guard_writes(std::unique_ptr<Volume> inner, std::uint64_t offset,
                                     std::uint64_t size, std::shared_ptr<spdlog::logger> logger);

}  // namespace cryptmap::volume

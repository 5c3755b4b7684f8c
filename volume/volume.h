// Volume — the plaintext view of one opened volume: the I/O engine's facade.
//
// Data path: request -> sector cache -> TBB task graph issuing crypto requests in parallel
// (through a crypto::CryptoEngine with the backlog protocol) -> BackingStore.
//
// Thread-safety: every method may be called from any number of threads. Completions (`done`)
// run exactly once, on any thread (a FUSE worker, a TBB worker), and must not block for long.
// Buffers passed to read/write are borrowed until `done` runs.
// Offsets and lengths are bytes of plaintext relative to the volume start; any offset/length
// is accepted (partial sectors are read-modify-written); a range past the end is truncated for
// reads (short read, 0 at EOF) and fails with kNoSpace for writes (a block device's ENOSPC).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/inline_function.h"
#include "base/result.h"
#include "base/units.h"
#include "volume/volume_layout.h"

namespace spdlog {
class logger;
}

namespace cryptmap::crypto {
class SectorCipher;
}

namespace cryptmap::volume {

class BackingStore;

// Bytes transferred, or the error for the request.
using Completion = InlineFunction<void(Result<std::size_t>), 64>;

struct VolumeOptions {
  bool read_only = false;
  std::uint64_t cache_bytes = 64ull << 20;     // --cache-size
  std::uint32_t max_inflight_requests = 64;    // bound on crypto requests in flight
  std::uint32_t flush_age_ms = 5000;           // dirty data older than this is written back
  bool force_inline = false;                   // no_read_workqueue/no_write_workqueue equivalent
};

class Volume {
 public:
  virtual ~Volume() = default;

  virtual void read(ByteOffset off, std::span<std::byte> out, Completion done) = 0;
  virtual void write(ByteOffset off, std::span<const std::byte> in, Completion done) = 0;
  // Every write acknowledged before flush() was called is durable in the image when `done` runs.
  virtual void flush(Completion done) = 0;
  // Plaintext size in bytes (a multiple of the sector size).
  virtual std::uint64_t size_bytes() const noexcept = 0;
  virtual const VolumeLayout& layout() const noexcept = 0;
  virtual bool read_only() const noexcept = 0;

  // Blocking conveniences for the CLI and tests (never used by the FUSE hot path).
  Result<std::size_t> read_sync(ByteOffset off, std::span<std::byte> out);
  Result<std::size_t> write_sync(ByteOffset off, std::span<const std::byte> in);
  Result<void> flush_sync();
};

// Assembles a volume: takes ownership of the cipher and the store. `logger` may be null
// (then the default logger is used); it must outlive the volume.
Result<std::unique_ptr<Volume>> open_volume(VolumeLayout layout,
                                            std::unique_ptr<crypto::SectorCipher> cipher,
                                            std::unique_ptr<BackingStore> store,
                                            const VolumeOptions& options,
                                            std::shared_ptr<spdlog::logger> logger);

}  // namespace cryptmap::volume

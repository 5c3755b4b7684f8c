// The I/O engine's assembly point: open_volume() with every engine knob exposed, and with the
// CryptoEngine chosen by the caller (tests pass hostile fakes; a future hardware engine plugs
// in here). open_volume() in volume/volume.h is this with the defaults below and
// crypto::make_sync_engine() (synchronous; CryptoDriver fans it out per core).
//
// Request flow (see volume/engine/README.md):
//   read : admission (range lock slot, shared) -> cache hits copied -> misses in runs of
//          adjacent sectors, one pooled buffer per piece: store.read_at -> decrypt (parallel
//          above the threshold) -> insert clean into the cache -> copy out -> return.
//   write: dirty throttle -> admission (exclusive) -> whole sectors into the cache as dirty
//          blocks (partial head/tail read-modify-written) -> return. Without a cache, or when
//          the cache has no room, sectors are written through (encrypt into a pooled buffer,
//          never the caller's) before the call returns. Requests of at least
//          cache_bypass_bytes in write-back mode are written behind: encrypted into
//          write-behind buffers and queued under their exclusive range, which a worker
//          releases once the store write completed (write_behind.h).
//   flush: wait for the queued write-behinds, write back every dirty block (adjacent blocks
//          coalesced into large writes), then store.sync(), then return. Every call is
//          complete when it returns (README.md, "Why Volume is synchronous"); the parts of the
//          engine: README.md "File map".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "base/result.h"
#include "crypto/crypto_engine.h"
#include "volume/volume.h"

namespace cryptmap::volume {

struct EngineOptions {
  std::size_t buffer_bytes = 256 * 1024;              // one piece of a request; 0 = default
  std::uint32_t buffer_count = 0;                     // 0 = clamp(max_inflight_requests / 4, 4, 64)
  std::size_t batch_bytes = 32 * 1024;                // sectors per CryptoRequest
  std::size_t parallel_threshold_bytes = 128 * 1024;  // smaller conversions run inline
  unsigned threads = 0;                               // crypto threads; 0 = hardware concurrency
  std::uint32_t cache_shards = 16;
  std::uint32_t dirty_percent = 50;  // writers wait above this share of the cache
  // Requests at least this large stream past the cache: reads do not fill it, writes update
  // only blocks already resident and write the rest through (0 = every request is cached).
  // Per-sector cache bookkeeping costs more than it saves on large sequential I/O.
  std::size_t cache_bypass_bytes = 128 * 1024;
  // Write-behind (write_behind.h): requests of at least cache_bypass_bytes in write-back mode
  // are acknowledged once encrypted into these buffers and queued; `write_behind_workers`
  // threads write them to the store. Without a free buffer a request is written through
  // inline. 0 bytes or 0 workers = off.
  std::size_t write_behind_bytes = 8 << 20;
  unsigned write_behind_workers = 2;
  // Read-ahead for sequential streams (read_ahead.h): windows of up to read_ahead_bytes,
  // read_ahead_depth requests ahead (read_ahead_stream_depth once a stream went on for that
  // many reads), loaded by read_ahead_threads (0 windows = off).
  std::uint32_t read_ahead_windows = 8;
  std::size_t read_ahead_bytes = 1 << 20;
  std::uint32_t read_ahead_depth = 2;
  std::uint32_t read_ahead_stream_depth = 4;
  unsigned read_ahead_threads = 2;
};

// Builds the CryptoEngine that drives `cipher` (which outlives the engine).
using EngineFactory =
    std::function<std::unique_ptr<crypto::CryptoEngine>(const crypto::SectorCipher&)>;

Result<std::unique_ptr<Volume>> open_volume_with_engine(
    VolumeLayout layout, std::unique_ptr<crypto::SectorCipher> cipher,
    const EngineFactory& make_engine, std::unique_ptr<BackingStore> store,
    const VolumeOptions& options, const EngineOptions& engine_options,
    std::shared_ptr<spdlog::logger> logger);

}  // namespace cryptmap::volume

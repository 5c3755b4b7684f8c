// EngineContext — what the parts of one open volume's I/O engine share: the geometry, the
// store, the range lock, the crypto driver, the buffer pool, the sector cache, read-ahead and
// zoned admission, and the logger. The parts (ReadPath, WritePath, WriteBack) borrow it; none
// of them owns anything here.
//
// Ownership: the context owns every component; the facade (engine.cpp, VolumeImpl) owns the
// context and tears the components down in the close order of docs/architecture.md §4.7
// (members are declared so that whatever is left is destroyed after what borrows it: the
// zoned path before the store it references).
// Mutability: the geometry, store, range lock and logger are set when the context is built
// (the volume's size changes in resize only, see `geo`);
// everything else is set once while the volume opens (VolumeImpl::init), before the first
// request and before any thread of the volume starts, and not changed again until close.
// Thread-safety: after open, the context itself is read-only; each component is thread-safe
// on its own terms (see its header). fetch() and log_error() may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "base/buffer_pool.h"
#include "base/error.h"
#include "base/result.h"
#include "cache/sector_cache.h"
#include "volume/engine/crypto_driver.h"
#include "volume/engine/range_lock.h"
#include "volume/engine/read_ahead.h"
#include "volume/engine/sector_math.h"
#include "volume/engine/zoned_path.h"
#include "volume/store/backing_store.h"
#include "volume/volume.h"

namespace spdlog {
class logger;
}

namespace cryptmap::volume {

struct EngineContext {
  EngineContext(VolumeLayout layout, std::unique_ptr<BackingStore> store, std::uint64_t size,
                bool read_only, std::size_t range_slots, std::shared_ptr<spdlog::logger> logger);
  EngineContext(const EngineContext&) = delete;
  EngineContext& operator=(const EngineContext&) = delete;

  // Reads the ciphertext of sectors [first, first + b.size() / sector_size) into `b` and
  // decrypts it in place. REQUIRES: b is whole sectors inside the volume.
  Result<void> fetch(std::uint64_t first, std::span<std::byte> b);

  // Logs a failed operation on this volume, rate-limited like dm-crypt's DMERR_LIMIT (the
  // first 16, then one in 1024).
  void log_error(const char* op, const Error& e);

  const VolumeLayout layout;
  // Sector size, data offset, volume size. Only `geo.size` ever changes, in Volume::resize,
  // while no request runs and read-ahead is stopped (the flusher reads only the other fields).
  SectorGeometry geo;
  const std::uint32_t ss;  // geo.sector_size, the name every path uses
  const bool read_only;
  const std::unique_ptr<BackingStore> store;
  RangeLock ranges;  // every request's sectors, shared (reads) or exclusive (writes)
  const std::shared_ptr<spdlog::logger> logger;
  std::atomic<std::uint64_t> errors_logged{0};

  // Set by VolumeImpl::init.
  std::unique_ptr<CryptoDriver> driver;
  std::unique_ptr<BufferPool> buffers;
  std::uint64_t buf_sectors = 1;  // sectors per pool buffer: one piece of a request
  std::uint64_t bypass_bytes = ~std::uint64_t{0};  // requests this large stream past the cache
  std::unique_ptr<ReadAhead> read_ahead;           // null when disabled
  std::unique_ptr<ZonedWritePath> zoned;           // sequential zones present (and ordering on)
  bool allow_discards = false;
  bool write_through = false;  // no_write_workqueue / unordered debug mode
  // store->splits_large_requests(): read-ahead windows and the whole sectors of a streaming
  // read are one store read each, not buffer-sized pieces in a batch (read_path.cpp).
  bool whole_reads = false;
  // Write-back cache (null when cache_bytes < sector size: write-through).
  std::unique_ptr<cache::SectorCache> cache;
};

}  // namespace cryptmap::volume

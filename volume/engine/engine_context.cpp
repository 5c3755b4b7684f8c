#include "volume/engine/engine_context.h"

#include <spdlog/spdlog.h>

namespace cryptmap::volume {

EngineContext::EngineContext(VolumeLayout layout_in, std::unique_ptr<BackingStore> store_in,
                             std::uint64_t size, bool read_only_in, std::size_t range_slots,
                             std::shared_ptr<spdlog::logger> logger_in)
    : layout(std::move(layout_in)),
      geo{layout.sector_size, layout.data_offset_bytes, size},
      ss(layout.sector_size),
      read_only(read_only_in),
      store(std::move(store_in)),
      ranges(range_slots),
      logger(std::move(logger_in)) {}

Result<void> EngineContext::fetch(std::uint64_t first, std::span<std::byte> b) {
  CRYPTMAP_TRY_VOID(store->read_at(ByteOffset{geo.image_offset(first)}, b));
  return driver->convert(crypto::CryptoDir::kDecrypt, b, SectorIndex{first});
}

void EngineContext::log_error(const char* op, const Error& e) {
  // Rate-limited (dm-crypt DMERR_LIMIT): the first 16, then one in 1024.
  const std::uint64_t n = errors_logged.fetch_add(1, std::memory_order_relaxed);
  if (n < 16 || n % 1024 == 0) {
    logger->error("{} on volume {} failed: {}", op, store->name(), e.message());
  }
}

}  // namespace cryptmap::volume

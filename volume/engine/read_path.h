// ReadPath — Volume::read: clamping to the volume, read-ahead windows, cache hits, fetching and
// decrypting misses, and streaming large (or uncached) reads through a two-stage pipeline (a
// request's pieces are read as one store batch and each is decrypted as soon as it is in, while
// the later ones are still in flight). Also the read-ahead loader (a window is loaded the same
// way, decrypted in place).
//
// Locking: read() pins a read-ahead window BEFORE it takes its range (pin() may wait for a
// load, which takes a range itself: read_ahead.h), then holds its sectors shared in the range
// lock for the whole request. A request waits for at most one pool buffer; a second one is only
// tried (the pipeline), so waiting cannot deadlock (README "Backpressure, never failure").
// Staleness: a block that is not resident has its latest data in the store (dirty blocks are
// never evicted); a piece is fetched whole only while nothing in the cache is dirty (see
// stream_read in the .cpp for why an overlay afterwards is not enough, #5).
// Thread-safety: read() and load_ahead() may be called from any number of threads at once.
// Ownership: borrows the EngineContext, which outlives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"
#include "volume/engine/engine_context.h"

namespace cryptmap::volume {

class ReadPath {
 public:
  explicit ReadPath(EngineContext& ctx) : ctx_(ctx) {}
  ReadPath(const ReadPath&) = delete;
  ReadPath& operator=(const ReadPath&) = delete;

  // Volume::read: a short read at the end of the volume, 0 at or past it. With `deliver`,
  // Volume::read_deliver: the bytes go to it once on success, from a loaded read-ahead window
  // when one holds them (pinned, its range held shared, until it returns), else from `out`.
  Result<std::size_t> read(std::uint64_t off, std::span<std::byte> out,
                           Volume::Deliver* deliver = nullptr);

  // ReadAhead's loader (on a prefetch thread): loads sectors [first, ...) into `dst` under the
  // shared range, only while the store is current. False drops the load (the foreground read
  // then does the work and reports any error).
  bool load_ahead(std::uint64_t first, std::span<std::byte> dst, const ReadAhead::LoadTicket& t);

 private:
  Result<std::size_t> read_range(std::uint64_t off, std::span<std::byte> dst, SectorSpan s,
                                 const ReadAhead::Pin& pin, Volume::Deliver* deliver,
                                 bool& delivered);
  Result<void> read_blocks(std::uint64_t off, std::span<std::byte> out, SectorSpan p,
                           bool fill_cache, BufferPool::Buffer& buf);
  // Pieces of one streaming read in flight together (one store read batch).
  static constexpr std::size_t kReadDepth = 4;
  Result<std::size_t> stream_read(std::uint64_t off, std::span<std::byte> out, SectorSpan s,
                                  BufferPool::Buffer& buf);
  Result<void> stream_pieces(std::uint64_t off, std::span<std::byte> out, SectorSpan s,
                             BufferPool::Buffer& buf);
  bool store_is_current() const noexcept;

  EngineContext& ctx_;
};

}  // namespace cryptmap::volume

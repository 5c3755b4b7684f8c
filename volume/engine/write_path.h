// WritePath — Volume::write, the engine half of write_ordered, and Volume::discard.
//
//  * write(): rejects read-only volumes and writes past the end, throttles (cached volumes,
//    before any lock: WriteBack::throttle), then holds its sectors exclusive in the range lock
//    and invalidates overlapping read-ahead windows before changing anything. With a cache,
//    whole sectors become dirty blocks and partial ones are merged into the cached block or
//    read-modify-written from the store; sectors the cache has no room for, and requests of at
//    least `cache_bypass_bytes` that are not resident, are written through. Without a cache
//    (or in write-through mode, which drops the stale clean blocks) every sector is written
//    through.
//  * Write-through goes to the store as batches (the Pipe in the .cpp): up to four pieces of a
//    request, each in its own pool buffer, in flight together, each merged and encrypted just
//    before it is submitted (BackingStore::write_batch_each), so piece k+1 is encrypted while
//    piece k is written. No order among a batch's pieces (conventional storage only: sequential
//    zones take write_zoned). Writes are encrypted into pool buffers, never in the caller's
//    memory: whole sectors straight from it (out of place), partial edge sectors after the
//    merge. A request waits for at most one buffer; the others are only tried.
//  * Write-behind (write-back mode, requests of at least `cache_bypass_bytes`, WriteBehind
//    present: not write-through, FUA, zoned or read-only): the request is merged and encrypted
//    into write-behind buffers (only tried: without them it is written through inline as
//    above), resident blocks take the new bytes, and the job is queued with the request's
//    exclusive range, which stays held until the store write completed; write() returns then.
//  * write_zoned(): a write admitted into a sequential zone (ZonedWritePath), issued in its
//    zone's turn, never cached: resident blocks are dropped under the exclusive range first.
//  * discard(): whole sectors inside the range only; cached blocks are dropped (wiped) and
//    read-ahead windows invalidated under the exclusive range, then the store discards them
//    (zone reset or punch-hole, see zoned_path.h).
//
// Thread-safety: every method may be called from any number of threads at once.
// Ownership: borrows the EngineContext, the WriteBack (null without a cache) and the WriteBehind
// (null when off), which outlive it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/result.h"
#include "volume/engine/engine_context.h"
#include "volume/engine/write_behind.h"
#include "volume/engine/writeback.h"

namespace cryptmap::volume {

class WritePath {
 public:
  WritePath(EngineContext& ctx, WriteBack* writeback, WriteBehind* behind)
      : ctx_(ctx), writeback_(writeback), behind_(behind) {}
  WritePath(const WritePath&) = delete;
  WritePath& operator=(const WritePath&) = delete;

  // With `fua` (Volume::write_fua) the whole request is written through with the store's
  // durable write (BackingStore::write_fua), never into the cache; resident blocks of the range
  // are updated in place (dirty ones stay dirty), so reads and later write-backs see it.
  Result<std::size_t> write(std::uint64_t off, std::span<const std::byte> in, bool fua = false);
  // REQUIRES: `t` admitted [off, off + in.size()) (whole sectors inside the volume).
  Result<std::size_t> write_zoned(const ZoneTicket& t, std::uint64_t off,
                                  std::span<const std::byte> in);
  Result<std::size_t> discard(std::uint64_t off, std::uint64_t len);

 private:
  class Pipe;
  Result<void> merge(std::uint64_t off, std::span<const std::byte> in, std::uint64_t pos,
                     std::span<std::byte> b);
  // `b` <- the ciphertext of sectors [pos, pos + b.size()/ss) with the request merged in: whole
  // sectors encrypted straight from `in` (no copy into `b` first), partial edge ones merged
  // (merge()) and encrypted in place.
  Result<void> seal(std::uint64_t off, std::span<const std::byte> in, std::uint64_t pos,
                    std::span<std::byte> b);
  // seal()'s first half: the partial edge sectors of `b` merged and encrypted; returns what is
  // left to encrypt (the whole sectors: from `in` into `b`; empty when there are none).
  Result<CryptoDriver::FromTo> seal_edges(std::uint64_t off, std::span<const std::byte> in,
                                          std::uint64_t pos, std::span<std::byte> b);
  Result<void> write_cached(std::uint64_t off, std::span<const std::byte> in, SectorSpan s,
                            bool through);
  // Queues the request as a write-behind job, handing it `range` (the request's exclusive range
  // of `s`). false when no job could be reserved (nothing taken: write it through inline).
  Result<bool> write_behind(std::uint64_t off, std::span<const std::byte> in, SectorSpan s,
                            RangeLock::Guard& range);
  // Under the exclusive range of `s`: read-ahead windows and resident (clean) blocks of `s`
  // are dropped, so nothing stale is served once the store changes underneath.
  void drop_cached(SectorSpan s);

  EngineContext& ctx_;
  WriteBack* const writeback_;
  WriteBehind* const behind_;
};

}  // namespace cryptmap::volume
